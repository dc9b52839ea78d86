//! Why a drain runs. Reasons of coalesced triggers are merged into one set.

use std::fmt;

/// One cause of a drain run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrainReason {
    /// The periodic timer.
    Interval,
    /// The network came back.
    Online,
    /// The app came to the foreground.
    Focus,
    /// The cashier pressed "Sync now".
    Manual,
    /// The engine started.
    Startup,
    /// The outbox recorded a sale (fired by the outbox itself; waits out the engine's backoff).
    SaleRecorded,
}

impl DrainReason {
    /// Every reason, in display order.
    pub const ALL: [DrainReason; 6] = [
        DrainReason::Startup,
        DrainReason::SaleRecorded,
        DrainReason::Interval,
        DrainReason::Online,
        DrainReason::Focus,
        DrainReason::Manual,
    ];

    /// Lower-case name used in logs (`interval`, `online`, `focus`, `manual`, `startup`,
    /// `sale_recorded`).
    pub fn as_str(self) -> &'static str {
        match self {
            DrainReason::Interval => "interval",
            DrainReason::Online => "online",
            DrainReason::Focus => "focus",
            DrainReason::Manual => "manual",
            DrainReason::Startup => "startup",
            DrainReason::SaleRecorded => "sale_recorded",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`DrainReason`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DrainReasons(u8);

impl DrainReasons {
    /// No reason.
    pub const fn empty() -> Self {
        DrainReasons(0)
    }

    /// Adds a reason.
    pub fn insert(&mut self, reason: DrainReason) {
        self.0 |= reason.bit();
    }

    /// Adds every reason of `other`.
    pub fn merge(&mut self, other: DrainReasons) {
        self.0 |= other.0;
    }

    /// Whether `reason` is in the set.
    pub fn contains(self, reason: DrainReason) -> bool {
        self.0 & reason.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reasons in the set.
    pub fn iter(self) -> impl Iterator<Item = DrainReason> {
        DrainReason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<DrainReason> for DrainReasons {
    fn from(reason: DrainReason) -> Self {
        let mut set = DrainReasons::empty();
        set.insert(reason);
        set
    }
}

impl fmt::Display for DrainReasons {
    /// `interval+manual`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(DrainReason::as_str).collect();
        f.write_str(&names.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_merge_and_print() {
        let mut a = DrainReasons::from(DrainReason::Interval);
        a.merge(DrainReason::Manual.into());
        a.insert(DrainReason::Interval);
        assert!(a.contains(DrainReason::Manual) && !a.contains(DrainReason::Online));
        assert_eq!(a.to_string(), "interval+manual");
        assert_eq!(DrainReasons::empty().to_string(), "none");
    }
}
