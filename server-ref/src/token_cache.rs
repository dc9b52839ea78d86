//! Recently accepted device tokens, so that a till pushing often is not looked up in the database on
//! every request. Only active tokens are kept, each for at most the configured TTL: a token revoked
//! in the database is refused by every server instance within that time (0 turns the cache off).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::Device;

/// Most tokens held; when full, expired entries are dropped, and if none were, all of them.
const MAX_ENTRIES: usize = 4_096;

/// Token hash ⇒ device, with the time each was looked up.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Device, Instant)>>,
}

impl TokenCache {
    /// A cache keeping each active token for `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> Self {
        TokenCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The device of `token_sha256` if it was found active less than the TTL ago.
    pub fn get(&self, token_sha256: &str) -> Option<Device> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock();
        entries.get(token_sha256).filter(|(_, at)| at.elapsed() < self.ttl).map(|(device, _)| device.clone())
    }

    /// Remembers that `token_sha256` was found active for `device` now.
    pub fn put(&self, token_sha256: &str, device: &Device) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token_sha256) {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(token_sha256.to_owned(), (device.clone(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: usize) -> Device {
        Device { store_id: "store-1".into(), device_id: format!("till-{n}") }
    }

    #[test]
    fn keeps_a_token_for_the_ttl_only() {
        let cache = TokenCache::new(Duration::from_millis(50));
        assert_eq!(cache.get("a"), None);
        cache.put("a", &device(1));
        assert_eq!(cache.get("a"), Some(device(1)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None, "expired");
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = TokenCache::new(Duration::ZERO);
        cache.put("a", &device(1));
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60));
        for n in 0..MAX_ENTRIES + 10 {
            cache.put(&format!("t{n}"), &device(n));
        }
        assert!(cache.entries.lock().len() <= MAX_ENTRIES);
        assert_eq!(cache.get(&format!("t{}", MAX_ENTRIES + 9)), Some(device(MAX_ENTRIES + 9)));
    }
}
