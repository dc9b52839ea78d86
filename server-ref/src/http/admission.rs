//! What a push may hold while it is in hand, so that no till, fast or slow, can make another wait.
//!
//! In the push handler's order (see [`super::routes`]):
//! 1. [`Flights`]: one push in flight per device, the protocol's single flight. A device's next
//!    push while one is in hand is answered 429 `push_in_flight` + `Retry-After` at once, before its
//!    body is read. A flight ends when every job of its request is done, or at the request's
//!    deadline, whichever comes first: a till whose earlier request is still being settled after the
//!    till crashed is locked out no longer than that request's deadline.
//! 2. [`BodyBudget`]: bytes of request bodies being read at once, across every connection. A body
//!    with a `Content-Length` takes its whole length before its first byte is read; a chunked body
//!    takes each chunk as it arrives. Past the budget the push is answered 503 `overloaded` at once.
//! 3. Then, with its body read, the push takes a push slot and its share of the sales budget
//!    (`App::admission`, `App::sales_budget`): a slow body costs its connection, its device's flight
//!    and its bytes, never a slot another till's push needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::Device;

/// The pushes in hand, by device.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    open: Mutex<HashMap<Device, Flight>>,
    next_id: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    id: u64,
    /// The request's deadline: past it the flight no longer holds the device.
    until: Instant,
}

/// A device's push in hand; dropping it (when the last job of the request ends) frees the device.
#[derive(Debug)]
pub(crate) struct Boarded {
    flights: Arc<Flights>,
    key: Device,
    id: u64,
}

impl Flights {
    /// Takes `device`'s flight for a request whose deadline is `until`; `Err` with how long the push
    /// in hand may still hold it when the device has one (its deadline not passed at `now`).
    pub(crate) fn board(
        self: &Arc<Self>,
        device: &Device,
        until: Instant,
        now: Instant,
    ) -> Result<Boarded, Duration> {
        let key = device.clone();
        let mut open = self.open.lock();
        if let Some(flight) = open.get(&key) {
            if flight.until > now {
                return Err(flight.until - now);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(key.clone(), Flight { id, until });
        Ok(Boarded { flights: self.clone(), key, id })
    }

    /// Devices with a push in hand (expired flights whose jobs still run included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for Boarded {
    fn drop(&mut self) {
        let mut open = self.flights.open.lock();
        // A later push of the device may have taken over an expired flight: that one stays.
        if open.get(&self.key).is_some_and(|f| f.id == self.id) {
            open.remove(&self.key);
        }
    }
}

/// Bytes of request bodies being read at once.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes of the budget held by one body being read; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct HeldBytes {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at most [`Semaphore::MAX_PERMITS`]).
    pub(crate) fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// Bytes held now by bodies being read.
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// Takes `n` more bytes for `held`, or `false` at once when they do not fit.
    pub(crate) fn take(&self, held: &mut HeldBytes, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(wanted) = u32::try_from(n) else { return false };
        let Ok(permit) = self.bytes.clone().try_acquire_many_owned(wanted) else { return false };
        match held.permit.as_mut() {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        held.bytes += n;
        true
    }
}

impl HeldBytes {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn till(n: u32) -> Device {
        Device { store_id: "store-1".into(), device_id: format!("till-{n}") }
    }

    #[test]
    fn one_flight_per_device_freed_when_its_request_ends() {
        let flights = Arc::new(Flights::default());
        let now = Instant::now();
        let until = now + Duration::from_secs(20);
        let first = flights.board(&till(1), until, now).expect("the device's first push");
        let left = flights.board(&till(1), until, now + Duration::from_secs(5)).expect_err("a second one");
        assert_eq!(left, Duration::from_secs(15), "held until the first one's deadline");
        let other = flights.board(&till(2), until, now).expect("another device is not held up");
        let elsewhere = Device { store_id: "store-2".into(), device_id: "till-1".into() };
        let _elsewhere = flights.board(&elsewhere, until, now).expect("the same name in another store");
        drop(first);
        let _again = flights.board(&till(1), until, now).expect("free once the first one ended");
        drop(other);
        assert_eq!(flights.len(), 2);
    }

    #[test]
    fn a_flight_past_its_deadline_no_longer_holds_the_device() {
        let flights = Arc::new(Flights::default());
        let now = Instant::now();
        let stuck = flights.board(&till(1), now + Duration::from_secs(20), now).expect("first");
        let later = now + Duration::from_secs(20);
        let next = flights.board(&till(1), later + Duration::from_secs(20), later).expect("taken over");
        // The stuck request ends later: it does not free the flight the next push holds.
        drop(stuck);
        assert!(flights.board(&till(1), later, later).is_err(), "the next push still holds the device");
        drop(next);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn the_body_budget_refuses_what_does_not_fit_and_takes_back_what_is_dropped() {
        let budget = BodyBudget::new(100);
        let mut a = HeldBytes::default();
        assert!(budget.take(&mut a, 60));
        assert!(budget.take(&mut a, 30), "grown chunk by chunk");
        let mut b = HeldBytes::default();
        assert!(!budget.take(&mut b, 11), "past the budget");
        assert!(budget.take(&mut b, 10));
        assert_eq!((a.bytes(), b.bytes(), budget.in_use()), (90, 10, 100));
        drop(a);
        assert_eq!(budget.in_use(), 10);
        assert!(!budget.take(&mut b, usize::MAX), "more than a permit count holds");
    }
}
