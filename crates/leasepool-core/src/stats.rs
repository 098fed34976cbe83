//! Diagnostic snapshots.

use std::time::Duration;

use crate::{LeaseId, Priority};

/// A consistent snapshot of a manager, taken under one lock.
///
/// `available + leased == total` always holds in a snapshot: the counts are
/// derived from the same state, at the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ManagerStats {
    /// The backend's name ("thread", "rayon", "process", or a custom name).
    pub backend: &'static str,
    /// The adaptive target pool count at the last sizing check.
    pub desired: usize,
    /// The configured maximum pool count.
    pub max_pools: usize,
    /// The configured minimum pool count.
    pub min_pools: usize,
    /// Idle pools, ready to lease.
    pub available: usize,
    /// Leased pools (draining leases included).
    pub leased: usize,
    /// `available + leased`.
    pub total: usize,
    /// Workers in each pool.
    pub workers_per_pool: usize,
    /// Waiters queued for a pool.
    pub waiting: usize,
    /// One entry per lease, in lease order.
    pub leases: Vec<LeaseStats>,
    /// One entry per owner that holds a lease or has a waiter queued, by
    /// owner name.
    pub owners: Vec<OwnerStats>,
    /// One entry per priority lane, highest first.
    pub lanes: Vec<LaneStats>,
    /// Counters since the manager was built, read under the same lock.
    pub counters: ManagerCounters,
}

/// Counters that only go up, since the manager was built (across stops and
/// restarts), for dashboards and rates. Each is updated by the same
/// transition that changes the state it counts, under the same lock, so a
/// snapshot is consistent with the rest of [`ManagerStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ManagerCounters {
    /// Leases granted, at once or after waiting.
    pub acquired: u64,
    /// Of `acquired`, leases granted to a caller that had to wait.
    pub acquired_after_wait: u64,
    /// Acquires that failed with [`Error::Timeout`](crate::Error::Timeout).
    pub timed_out: u64,
    /// Acquires that failed with [`Error::Unavailable`](crate::Error::Unavailable).
    pub unavailable: u64,
    /// Time waited by the callers counted in `acquired_after_wait`, in
    /// total.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub wait_time_total: Duration,
    /// The longest of those waits.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub wait_time_max: Duration,
    /// Leases released (or dropped) by their holders.
    pub leases_released: u64,
    /// Leases revoked: at hard expiry, or at a graceful shutdown's deadline.
    pub leases_revoked: u64,
    /// Successful renewals.
    pub leases_renewed: u64,
    /// Pools created and installed (at start-up and later).
    pub pools_created: u64,
    /// Pools retired as broken (including pools that broke while being
    /// created).
    pub pools_broken: u64,
    /// Jobs submitted through leases that ran and returned a value.
    pub jobs_completed: u64,
    /// Jobs that ran and panicked ([`Error::Panicked`](crate::Error::Panicked)).
    pub jobs_panicked: u64,
    /// Jobs that ended without running ([`Error::Cancelled`](crate::Error::Cancelled)).
    pub jobs_cancelled: u64,
    /// Jobs that ended with any other error (their pool broke, a call's
    /// result could not be decoded, ...).
    pub jobs_failed: u64,
    /// Pools handed to a waiter ahead of a waiter of a higher priority
    /// lane, because it had waited past `priority_aging`.
    pub served_by_aging: u64,
    /// Pools handed to a waiter while an older or higher-lane waiter was
    /// passed over because its owner was at its lease limit.
    pub passed_over_by_owner_limit: u64,
}

/// One owner in a [`ManagerStats`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct OwnerStats {
    /// The owner label.
    pub owner: String,
    /// Leases it holds (draining ones included).
    pub leases: usize,
    /// Its acquires waiting in the queue.
    pub waiting: usize,
    /// Its lease limit, if it has one.
    pub limit: Option<usize>,
}

/// One priority lane in a [`ManagerStats`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LaneStats {
    /// The lane.
    pub priority: Priority,
    /// Leases held that were acquired in this lane.
    pub leases: usize,
    /// Acquires waiting in this lane.
    pub waiting: usize,
}

/// One lease in a [`ManagerStats`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LeaseStats {
    /// The lease id.
    pub id: LeaseId,
    /// The owner label given at acquire.
    pub owner: Option<String>,
    /// Time left until soft expiry (zero once passed).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub until_soft_expiry: Duration,
    /// Time left until hard expiry (zero once passed).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub until_hard_expiry: Duration,
    /// True once released while jobs were still pending.
    pub draining: bool,
    /// Jobs submitted through the lease that have not finished.
    pub pending_jobs: usize,
}

/// What a graceful [`shutdown`](crate::LeasedExecutorManager::shutdown)
/// did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ShutdownReport {
    /// Leases held when the shutdown began.
    pub leases_at_start: usize,
    /// Of those, leases that ended before the deadline: released (after
    /// draining), expired, or retired as broken.
    pub ended_on_their_own: usize,
    /// Leases still held at the deadline, revoked by the shutdown.
    pub revoked_at_deadline: usize,
    /// Jobs that ended without running (cancelled) between the start of the
    /// shutdown and its end: queued on revoked or shut-down pools, or
    /// cancelled by their callers.
    pub jobs_cancelled: usize,
    /// Jobs submitted through leases that had not ended when `shutdown`
    /// returned: running on a thread that cannot be killed (a thread or
    /// rayon job that ignores everything), or finishing right then.
    pub jobs_still_running: usize,
    /// Worker threads or processes of the manager still alive when
    /// `shutdown` returned (it waits for them only briefly past the
    /// deadline; `stop()` waits for them all).
    pub workers_still_running: usize,
    /// How long the shutdown took, including waiting for worker threads.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub elapsed: Duration,
}
