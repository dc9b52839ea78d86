//! Capped exponential backoff with full jitter, honouring the server's `Retry-After`.
//!
//! The ceiling for attempt `n` (from 1) is `min(cap_ms, base_ms × 2^(n-1))`; the delay is uniform in
//! `0..=ceiling` ("full jitter"), so tills that failed together spread out instead of retrying in step.
//! A `Retry-After` from the server replaces the exponential ceiling: the delay is uniform in
//! `retry_after..=2 × retry_after`, never shorter than what the server asked, and spread so that the
//! tills it turned away together do not all come back in the same millisecond.

use rand::{Rng, RngExt};

/// Backoff parameters, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first retry.
    pub base_ms: u64,
    /// Largest ceiling, whatever the attempt.
    pub cap_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { base_ms: 1_000, cap_ms: 5 * 60 * 1_000 }
    }
}

impl BackoffPolicy {
    /// The jitter ceiling after `attempt` failed tries (attempt 0 is treated as 1).
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.max(1).saturating_sub(1).min(63);
        self.base_ms.saturating_mul(1u64 << exp).min(self.cap_ms)
    }

    /// The delay before the next try: uniform in `0..=ceiling_ms(attempt)`; when the server sent a
    /// `Retry-After` of `r`, uniform in `r..=r + min(r, cap_ms)` instead (the server decides the wait,
    /// the jitter spreads who comes back when).
    pub fn delay_ms<R: Rng + ?Sized>(&self, attempt: u32, retry_after_ms: Option<u64>, rng: &mut R) -> u64 {
        match retry_after_ms {
            Some(r) => r.saturating_add(rng.random_range(0..=r.min(self.cap_ms))),
            None => rng.random_range(0..=self.ceiling_ms(attempt)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn delays_stay_within_jitter_bounds(base in 1u64..10_000, cap in 1u64..10_000_000, attempt in 0u32..200,
                                            seed in any::<u64>(), retry_after in proptest::option::of(0u64..1_000_000)) {
            let policy = BackoffPolicy { base_ms: base, cap_ms: cap };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let ceiling = policy.ceiling_ms(attempt);
            prop_assert!(ceiling <= cap);
            let delay = policy.delay_ms(attempt, retry_after, &mut rng);
            match retry_after {
                None => prop_assert!(delay <= ceiling),
                Some(r) => {
                    prop_assert!(delay >= r, "Retry-After is a floor");
                    prop_assert!(delay <= r + r.min(cap), "spread over at most another Retry-After");
                }
            }
        }

        #[test]
        fn ceilings_grow_until_the_cap(base in 1u64..10_000, cap in 1u64..10_000_000, attempt in 1u32..100) {
            let policy = BackoffPolicy { base_ms: base, cap_ms: cap };
            prop_assert!(policy.ceiling_ms(attempt) <= policy.ceiling_ms(attempt + 1));
            let uncapped = base.saturating_mul(1u64 << (attempt - 1).min(63));
            prop_assert_eq!(policy.ceiling_ms(attempt), uncapped.min(cap));
        }
    }

    #[test]
    fn jitter_covers_the_range() {
        let policy = BackoffPolicy { base_ms: 1_000, cap_ms: 60_000 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<u64> = (0..2_000).map(|_| policy.delay_ms(4, None, &mut rng)).collect();
        let max = *delays.iter().max().unwrap_or(&0);
        let min = *delays.iter().min().unwrap_or(&0);
        assert!(max > 7_000 && max <= 8_000, "max {max}");
        assert!(min < 1_000, "min {min}");
    }

    #[test]
    fn retry_after_is_the_floor_and_the_comebacks_spread_over_a_second_one() {
        let policy = BackoffPolicy { base_ms: 2_000, cap_ms: 300_000 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let delays: Vec<u64> = (0..2_000).map(|_| policy.delay_ms(9, Some(1_000), &mut rng)).collect();
        assert!(delays.iter().all(|d| (1_000..=2_000).contains(d)), "not grown by the 9 failures");
        let early = delays.iter().filter(|d| **d < 1_500).count();
        assert!((700..1_300).contains(&early), "spread evenly, {early} of 2000 in the first half");
    }
}
