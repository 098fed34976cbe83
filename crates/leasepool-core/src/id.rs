//! Lease identifiers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The identifier of one lease, unique across every manager in the process.
///
/// Displayed as `lease-{manager}-{n}`.
///
/// # Examples
///
/// ```
/// # use leasepool_core::LeaseId;
/// # fn show(id: &LeaseId) {
/// println!("holding {id}");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId {
    manager: u64,
    seq: u64,
}

impl LeaseId {
    pub(crate) fn new(manager: u64, seq: u64) -> Self {
        LeaseId { manager, seq }
    }

    pub(crate) fn manager(&self) -> u64 {
        self.manager
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease-{}-{}", self.manager, self.seq)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for LeaseId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Hands out the per-process manager numbers used in lease ids.
pub(crate) fn next_manager_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
