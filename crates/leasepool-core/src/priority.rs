//! Priority lanes for waiting acquires.

use std::fmt;

/// The lane an acquire waits in when no pool is free
/// ([`Acquire::priority`](crate::Acquire::priority)).
///
/// A pool that becomes free goes to the **oldest waiter of the highest
/// non-empty lane**; within a lane, waiters are served first come, first
/// served. With [`ManagerBuilder::priority_aging(d)`](crate::ManagerBuilder::priority_aging),
/// a waiter that has waited `d` or longer is served as if it were in
/// `High`: among such waiters and the `High` lane, the one that arrived
/// first goes first. So a `Low` waiter waits at most `d` plus the time the
/// waiters ahead of it then need, however much `High` work keeps arriving.
///
/// Priorities order waiters only: an acquire that finds a free pool takes
/// it whatever its lane (nobody is waiting then, or everybody waiting is
/// held back by an owner limit), and a lease once granted is not affected
/// by its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Priority {
    /// Batch work: served when no `Normal` or `High` waiter is left (or
    /// once aged).
    Low,
    /// The default.
    #[default]
    Normal,
    /// Interactive work: served first.
    High,
}

impl Priority {
    /// Every lane, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lane's index in [`ALL`](Self::ALL): 0 is the highest.
    pub(crate) fn lane(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        })
    }
}
