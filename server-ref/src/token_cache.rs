//! Recently accepted device tokens, so that a till pushing often is not looked up in the database on
//! every request. Only active tokens are kept, each for at most the configured TTL (0 turns the cache
//! off).
//!
//! A revocation must not wait for the TTL: the cache is a [`RevocationSink`]. The store announces
//! every revocation (PostgreSQL `LISTEN`/`NOTIFY`, to every instance) and the cache empties at once.
//! While the store cannot announce (its listening connection is down, or a store without a channel),
//! the cache stays off, so a revocation is never missed. A lookup that was already running when a
//! revocation arrived cannot put its (now stale) answer back: every revocation starts a new
//! generation, and [`TokenCache::put`] keeps an answer only if it was looked up in the current one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use possync_core::clock::{Clock, SystemClock};

use crate::store::{Device, RevocationSink};

/// Most tokens held; when full, expired entries are dropped, and if none were, all of them.
const MAX_ENTRIES: usize = 4_096;

/// Token hash ⇒ device, with the time each was looked up (the clock's monotonic reading, in ms).
pub struct TokenCache {
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, (Device, i64)>>,
    /// Whether revocations are being announced; off until the store says so.
    announced: AtomicBool,
    /// Bumped (under the `entries` lock) by every revocation and change of the channel.
    generation: AtomicU64,
}

impl TokenCache {
    /// A cache keeping each active token for `ttl` (zero: nothing is kept). It keeps nothing until
    /// [`RevocationSink::announcing`] is called with `true`.
    pub fn new(ttl: Duration) -> Self {
        Self::with_clock(ttl, Arc::new(SystemClock))
    }

    /// [`TokenCache::new`] on another clock (tests).
    pub fn with_clock(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        TokenCache {
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
            entries: Mutex::new(HashMap::new()),
            announced: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    fn fresh(&self, at: i64, now: i64) -> bool {
        now.saturating_sub(at) < self.ttl_ms
    }

    /// The device of `token_sha256` if it was found active less than the TTL ago.
    pub fn get(&self, token_sha256: &str) -> Option<Device> {
        if self.ttl_ms == 0 || !self.announced.load(Ordering::SeqCst) {
            return None;
        }
        let now = self.clock.monotonic_ms();
        let entries = self.entries.lock();
        entries.get(token_sha256).filter(|(_, at)| self.fresh(*at, now)).map(|(device, _)| device.clone())
    }

    /// The current generation: read it before looking a token up, and give it to [`TokenCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remembers that `token_sha256` was found active for `device`, by a lookup that started in
    /// `generation`; nothing is kept if a revocation arrived since (the lookup may predate it).
    pub fn put(&self, token_sha256: &str, device: &Device, generation: u64) {
        if self.ttl_ms == 0 || !self.announced.load(Ordering::SeqCst) {
            return;
        }
        let now = self.clock.monotonic_ms();
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token_sha256) {
            entries.retain(|_, (_, at)| self.fresh(*at, now));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(token_sha256.to_owned(), (device.clone(), now));
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("ttl_ms", &self.ttl_ms).finish_non_exhaustive()
    }
}

impl RevocationSink for TokenCache {
    /// Empties the cache and starts a new generation, so that lookups already running are not kept.
    fn revoked(&self) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn announcing(&self, on: bool) {
        if !on {
            self.announced.store(false, Ordering::SeqCst);
        }
        // Whatever was cached before the channel (re)opened may predate a revocation it missed.
        self.revoked();
        if on {
            self.announced.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(ttl: Duration) -> TokenCache {
        let cache = TokenCache::new(ttl);
        cache.announcing(true);
        cache
    }

    #[test]
    fn a_revocation_empties_the_cache_and_a_silent_store_turns_it_off() {
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.put("a", &device(1), cache.generation());
        assert_eq!(cache.get("a"), None, "nothing is cached before revocations are announced");
        cache.announcing(true);
        cache.put("a", &device(1), cache.generation());
        assert_eq!(cache.get("a"), Some(device(1)));
        cache.revoked();
        assert_eq!(cache.get("a"), None, "a revocation empties the cache");
        cache.put("a", &device(1), cache.generation());
        cache.announcing(false);
        assert_eq!(cache.get("a"), None, "the channel is down: no cache");
        cache.put("a", &device(1), cache.generation());
        assert_eq!(cache.get("a"), None);
    }

    fn device(n: usize) -> Device {
        Device { store_id: "store-1".into(), device_id: format!("till-{n}") }
    }

    #[test]
    fn keeps_a_token_for_the_ttl_only() {
        let clock = Arc::new(possync_core::clock::ManualClock::new(0));
        let cache = TokenCache::with_clock(Duration::from_millis(50), clock.clone());
        cache.announcing(true);
        assert_eq!(cache.get("a"), None);
        cache.put("a", &device(1), cache.generation());
        clock.advance(49);
        assert_eq!(cache.get("a"), Some(device(1)));
        clock.advance(1);
        assert_eq!(cache.get("a"), None, "expired");
    }

    /// A lookup that started before a revocation arrived answers with what the database said then:
    /// its answer is not kept.
    #[test]
    fn a_lookup_older_than_a_revocation_is_not_kept() {
        let cache = announced(Duration::from_secs(60));
        let started = cache.generation();
        cache.revoked();
        cache.put("a", &device(1), started);
        assert_eq!(cache.get("a"), None, "the answer predates the revocation");
        cache.put("a", &device(1), cache.generation());
        assert_eq!(cache.get("a"), Some(device(1)), "a lookup after it is kept");
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = announced(Duration::ZERO);
        cache.put("a", &device(1), cache.generation());
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = announced(Duration::from_secs(60));
        for n in 0..MAX_ENTRIES + 10 {
            cache.put(&format!("t{n}"), &device(n), cache.generation());
        }
        assert!(cache.entries.lock().len() <= MAX_ENTRIES);
        assert_eq!(cache.get(&format!("t{}", MAX_ENTRIES + 9)), Some(device(MAX_ENTRIES + 9)));
    }
}
