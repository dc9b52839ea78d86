//! When a shed push should come back: its `Retry-After` is a reservation.
//!
//! The server counts the pushes it admits each second and, for each of the next seconds, the shed
//! pushes it has already told to come back then. A shed push is told the first second, from 1 s on,
//! that has room: fewer pushes sent back to it than the server admits in a second (measured over the
//! last few seconds, never taken below the push slots). A crowd of N shed tills is spread over about
//! N / rate seconds, so they do not come back all at once to be shed again; a lone shed till is back
//! after 1 s, so the server does not sit idle while the last tills of a storm wait out a fixed delay.
//! The till adds its own spread on top (`possync_core::backoff`: `r..=2r`).
//!
//! A device shed again before its reserved second (a client that ignores `Retry-After`) is told the
//! same second again and takes no new one: hammering cannot push the other tills' seconds away.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// Longest `Retry-After` given to a shed push, in seconds.
pub const MAX_COME_BACK_SECS: u32 = 30;

/// Full seconds over which the admission rate is measured.
const RATE_WINDOW_SECS: u64 = 3;

/// Seconds ahead kept in the ledger (more than [`MAX_COME_BACK_SECS`]).
const AHEAD: usize = 64;

/// Most devices whose reserved second is remembered; past it the ones whose second has passed are
/// forgotten, and if none has, all of them.
const MAX_DEVICES: usize = 16_384;

/// A count kept for one second, by its number since the server started.
#[derive(Debug, Clone, Copy, Default)]
struct PerSecond {
    second: u64,
    count: u32,
}

impl PerSecond {
    /// The count for `second` (0 when this entry holds another second).
    fn at(&self, second: u64) -> u32 {
        if self.second == second {
            self.count
        } else {
            0
        }
    }

    /// Adds one for `second`, starting over when this entry held another second.
    fn bump(&mut self, second: u64) {
        if self.second != second {
            *self = PerSecond { second, count: 0 };
        }
        self.count = self.count.saturating_add(1);
    }
}

/// The counts, by second: pushes admitted (the last few seconds) and pushes told to come back (the
/// seconds ahead). Pure data; [`ComeBack`] reads the clock.
#[derive(Debug, Clone)]
pub struct Ledger {
    admitted: [PerSecond; RATE_WINDOW_SECS as usize + 1],
    promised: [PerSecond; AHEAD],
    /// The second reserved for each device shed lately.
    reserved: HashMap<String, u64>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            admitted: [PerSecond::default(); RATE_WINDOW_SECS as usize + 1],
            promised: [PerSecond::default(); AHEAD],
            reserved: HashMap::new(),
        }
    }
}

impl Ledger {
    /// Counts a push admitted during `second`.
    pub fn admitted(&mut self, second: u64) {
        self.admitted[(second % self.admitted.len() as u64) as usize].bump(second);
    }

    /// Pushes the server admits in a second: the mean of the last [`RATE_WINDOW_SECS`] full seconds,
    /// or the current second's count when higher (a server that just started has no history), and
    /// never below `floor`.
    pub fn rate(&self, second: u64, floor: u32) -> u32 {
        let n = self.admitted.len() as u64;
        let full: u32 = (1..=RATE_WINDOW_SECS)
            .filter_map(|back| second.checked_sub(back))
            .map(|s| self.admitted[(s % n) as usize].at(s))
            .sum();
        let mean = full.div_ceil(RATE_WINDOW_SECS as u32);
        let current = self.admitted[(second % n) as usize].at(second);
        mean.max(current).max(floor).max(1)
    }

    /// [`Ledger::reserve`] for a push of `device`: a device that still holds a second later than
    /// `second` is told that one again, and takes no new one.
    pub fn reserve_for(&mut self, device: &str, second: u64, rate: u32) -> u32 {
        if let Some(&at) = self.reserved.get(device) {
            if at > second {
                return u32::try_from(at - second).unwrap_or(MAX_COME_BACK_SECS);
            }
        }
        let ahead = self.reserve(second, rate);
        if self.reserved.len() >= MAX_DEVICES {
            self.reserved.retain(|_, at| *at > second);
            if self.reserved.len() >= MAX_DEVICES {
                self.reserved.clear();
            }
        }
        self.reserved.insert(device.to_owned(), second + u64::from(ahead));
        ahead
    }

    /// Reserves a second to come back in for a push shed during `second`, and returns how many seconds
    /// ahead it is: the first from 1 on with fewer reservations than `rate`; [`MAX_COME_BACK_SECS`]
    /// when every one up to it is full (that second takes the extra).
    pub fn reserve(&mut self, second: u64, rate: u32) -> u32 {
        let n = self.promised.len() as u64;
        for ahead in 1..=MAX_COME_BACK_SECS {
            let at = second + u64::from(ahead);
            let slot = &mut self.promised[(at % n) as usize];
            if slot.at(at) < rate {
                slot.bump(at);
                return ahead;
            }
        }
        let at = second + u64::from(MAX_COME_BACK_SECS);
        self.promised[(at % n) as usize].bump(at);
        MAX_COME_BACK_SECS
    }
}

/// The server's ledger of shed pushes' return times, on its own clock.
pub(crate) struct ComeBack {
    started: Instant,
    /// The rate assumed when fewer pushes were admitted: the push slots.
    floor: u32,
    ledger: Mutex<Ledger>,
}

impl ComeBack {
    /// A ledger for a server with `push_slots` pushes admitted at once.
    pub(crate) fn new(push_slots: usize) -> ComeBack {
        ComeBack {
            started: Instant::now(),
            floor: u32::try_from(push_slots).unwrap_or(u32::MAX),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts a push admitted now.
    pub(crate) fn admitted(&self) {
        let second = self.second();
        self.ledger.lock().admitted(second);
    }

    /// The `Retry-After` of a push of `device` shed now, in seconds (reserved: see the module's
    /// comment).
    pub(crate) fn retry_after_secs(&self, device: &crate::store::Device) -> u32 {
        let second = self.second();
        let key = format!("{}\u{0}{}", device.store_id, device.device_id);
        let mut ledger = self.ledger.lock();
        let rate = ledger.rate(second, self.floor);
        ledger.reserve_for(&key, second, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_shed_push_comes_back_after_one_second() {
        let mut ledger = Ledger::default();
        let rate = ledger.rate(100, 4);
        assert_eq!(ledger.reserve(100, rate), 1);
    }

    #[test]
    fn a_crowd_is_spread_at_the_rate_the_server_admits() {
        let mut ledger = Ledger::default();
        // 30 pushes admitted in each of the last three seconds.
        for second in 7..10 {
            for _ in 0..30 {
                ledger.admitted(second);
            }
        }
        let rate = ledger.rate(10, 4);
        assert_eq!(rate, 30);
        let mut per_second = std::collections::BTreeMap::new();
        for _ in 0..100 {
            *per_second.entry(ledger.reserve(10, rate)).or_insert(0) += 1;
        }
        let expected: std::collections::BTreeMap<u32, i32> = [(1, 30), (2, 30), (3, 30), (4, 10)].into();
        assert_eq!(per_second, expected);
        // A second later, the seconds already promised stay promised.
        assert_eq!(ledger.reserve(11, rate), 3);
    }

    #[test]
    fn the_rate_is_never_below_the_floor_nor_below_the_current_second() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.rate(5, 16), 16);
        for _ in 0..40 {
            ledger.admitted(5);
        }
        assert_eq!(ledger.rate(5, 16), 40, "a server without history counts the current second");
        assert_eq!(ledger.rate(6, 16), 16, "40 over three seconds, rounded up, is 14: the floor");
        assert_eq!(ledger.rate(9, 0), 1, "old seconds are forgotten; never zero");
    }

    #[test]
    fn come_back_is_capped_and_the_last_second_takes_the_extra() {
        let mut ledger = Ledger::default();
        let answers: Vec<u32> = (0..(MAX_COME_BACK_SECS + 5)).map(|_| ledger.reserve(0, 1)).collect();
        assert_eq!(answers[..MAX_COME_BACK_SECS as usize], (1..=MAX_COME_BACK_SECS).collect::<Vec<_>>()[..]);
        assert!(answers[MAX_COME_BACK_SECS as usize..].iter().all(|&a| a == MAX_COME_BACK_SECS));
    }

    #[test]
    fn a_device_shed_again_before_its_second_keeps_it_and_takes_no_other() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.reserve_for("hammer", 10, 1), 1);
        // Back at once, a thousand times: told the same second, which stays its only one.
        for _ in 0..1_000 {
            assert_eq!(ledger.reserve_for("hammer", 10, 1), 1);
        }
        assert_eq!(ledger.reserve_for("till-2", 10, 1), 2, "the next till gets the next second");
        // Once its second has come, a device shed again takes a new one.
        assert_eq!(ledger.reserve_for("hammer", 11, 1), 2);
    }

    #[test]
    fn a_slot_of_the_ring_is_reused_for_a_later_second() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.reserve(0, 1), 1);
        // Second 1 + AHEAD falls on the same entry as second 1: it starts empty.
        assert_eq!(ledger.reserve(AHEAD as u64, 1), 1);
    }
}
