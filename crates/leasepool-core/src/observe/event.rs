//! What a manager tells its observer.

use std::sync::Arc;
use std::time::Duration;

use super::Level;
use crate::{Error, LeaseId, ShutdownReport, StopMode};

/// One thing that happened in a manager (or a grinder on it), with its
/// structured fields. Pools are named by their sequence number within the
/// manager (1, 2, ...), as in worker names.
///
/// New variants may be added in minor releases; match with a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A lease was granted (debug).
    Leased {
        /// The new lease.
        id: LeaseId,
        /// Its owner label.
        owner: Option<Arc<str>>,
        /// The leased pool.
        pool: u64,
        /// Time to soft expiry.
        duration: Duration,
        /// Grace from soft to hard expiry.
        grace: Duration,
        /// How long the caller waited in the queue (zero if it did not).
        waited: Duration,
    },
    /// A lease was released with jobs still pending: it drains (debug).
    Draining {
        /// The lease.
        id: LeaseId,
        /// Jobs not finished yet.
        pending: usize,
    },
    /// A lease ended for good and its pool moved on (debug).
    Finalised {
        /// The lease.
        id: LeaseId,
        /// Its pool.
        pool: u64,
        /// Where the pool went.
        outcome: PoolFate,
    },
    /// A lease was renewed (debug).
    Renewed {
        /// The lease.
        id: LeaseId,
        /// Its new time to soft expiry.
        duration: Duration,
    },
    /// A lease passed its soft expiry (warn).
    SoftExpired {
        /// The lease.
        id: LeaseId,
        /// Its owner label.
        owner: Option<Arc<str>>,
    },
    /// A lease was revoked at hard expiry or at a shutdown's deadline, and
    /// its pool shut down (warn).
    Revoked {
        /// The lease.
        id: LeaseId,
        /// Its owner label.
        owner: Option<Arc<str>>,
        /// Its pool.
        pool: u64,
    },
    /// A broken pool was retired (warn).
    Retired {
        /// The pool.
        pool: u64,
        /// The lease that held it, if any.
        lease: Option<LeaseId>,
        /// Why it broke.
        reason: String,
    },
    /// An idle pool above the desired count was shut down (debug).
    Shrunk {
        /// The pool.
        pool: u64,
    },
    /// A pool was created and installed (debug).
    Created {
        /// The pool.
        pool: u64,
    },
    /// A pool could not be created (warn).
    CreateFailed {
        /// What the backend said.
        error: Error,
    },
    /// An acquire timed out in the queue (debug).
    WaiterTimedOut {
        /// How long it waited.
        waited: Duration,
    },
    /// The manager started (info).
    Started {
        /// The backend's name.
        backend: &'static str,
        /// Pools created at start-up.
        pools: usize,
        /// The configured maximum.
        max_pools: usize,
    },
    /// A start failed (warn).
    StartFailed {
        /// Why.
        error: Error,
    },
    /// The size provider did not answer in time at start-up; the manager
    /// starts with `min_pools` (warn).
    SizeProviderSlow {
        /// How long start-up waited for it.
        patience: Duration,
    },
    /// The manager stopped (info).
    Stopped {
        /// The backend's name.
        backend: &'static str,
    },
    /// A graceful shutdown began (info).
    ShutdownBegun {
        /// Its budget.
        deadline: Duration,
        /// Leases held at its start.
        held: usize,
    },
    /// A graceful shutdown finished (info, or warn if workers were left
    /// running).
    ShutdownFinished {
        /// What it did.
        report: ShutdownReport,
    },
    /// A grinder on this manager started (info).
    GrinderStarted {
        /// Its batch size threshold.
        batch_size_threshold: usize,
        /// Its longest wait before a partial batch goes.
        max_wait: Duration,
        /// The lease duration of its batches.
        lease: Duration,
    },
    /// A grinder began to stop (info).
    GrinderStopping {
        /// How.
        mode: StopMode,
    },
    /// A grinder stopped (info).
    GrinderStopped,
    /// A grinder batch was formed and asks for a lease (debug).
    GrinderBatch {
        /// The batch's number within its grinder.
        number: u64,
        /// Its items.
        items: usize,
    },
    /// A grinder batch got no lease; its items failed (debug).
    GrinderBatchUnleased {
        /// The batch's number.
        number: u64,
        /// Why.
        error: Error,
    },
    /// A grinder batch was cancelled by `stop(Cancel)` (debug).
    GrinderBatchCancelled {
        /// The batch's number.
        number: u64,
        /// Items that had not started.
        unstarted: usize,
    },
    /// A grinder batch finished (debug).
    GrinderBatchFinished {
        /// The batch's number.
        number: u64,
    },
}

/// Where a finalised lease's pool went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolFate {
    /// Straight to the oldest waiter.
    HandedOff,
    /// Back to the idle set.
    Idle,
    /// Shut down (expired, stopping, or above the desired count).
    ShutDown,
}

impl Event {
    /// How much this event matters. Per-lease and per-batch events are
    /// `Debug`, so a busy service logs a constant number of lines at
    /// `Info` (start, stop, shutdown); `Warn` is for soft expiry,
    /// revocation, broken pools and failed creations.
    pub fn level(&self) -> Level {
        match self {
            Event::SoftExpired { .. }
            | Event::Revoked { .. }
            | Event::Retired { .. }
            | Event::CreateFailed { .. }
            | Event::StartFailed { .. }
            | Event::SizeProviderSlow { .. } => Level::Warn,
            Event::ShutdownFinished { report } if report.workers_still_running > 0 => Level::Warn,
            Event::Started { .. }
            | Event::Stopped { .. }
            | Event::ShutdownBegun { .. }
            | Event::ShutdownFinished { .. }
            | Event::GrinderStarted { .. }
            | Event::GrinderStopping { .. }
            | Event::GrinderStopped => Level::Info,
            Event::Leased { .. }
            | Event::Draining { .. }
            | Event::Finalised { .. }
            | Event::Renewed { .. }
            | Event::Shrunk { .. }
            | Event::Created { .. }
            | Event::WaiterTimedOut { .. }
            | Event::GrinderBatch { .. }
            | Event::GrinderBatchUnleased { .. }
            | Event::GrinderBatchCancelled { .. }
            | Event::GrinderBatchFinished { .. } => Level::Debug,
        }
    }

    /// A short, stable name for the event ("leased", "revoked", ...), for
    /// structured records and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Leased { .. } => "leased",
            Event::Draining { .. } => "draining",
            Event::Finalised { .. } => "finalised",
            Event::Renewed { .. } => "renewed",
            Event::SoftExpired { .. } => "soft_expired",
            Event::Revoked { .. } => "revoked",
            Event::Retired { .. } => "retired",
            Event::Shrunk { .. } => "shrunk",
            Event::Created { .. } => "created",
            Event::CreateFailed { .. } => "create_failed",
            Event::WaiterTimedOut { .. } => "waiter_timed_out",
            Event::Started { .. } => "started",
            Event::StartFailed { .. } => "start_failed",
            Event::SizeProviderSlow { .. } => "size_provider_slow",
            Event::Stopped { .. } => "stopped",
            Event::ShutdownBegun { .. } => "shutdown_begun",
            Event::ShutdownFinished { .. } => "shutdown_finished",
            Event::GrinderStarted { .. } => "grinder_started",
            Event::GrinderStopping { .. } => "grinder_stopping",
            Event::GrinderStopped => "grinder_stopped",
            Event::GrinderBatch { .. } => "grinder_batch",
            Event::GrinderBatchUnleased { .. } => "grinder_batch_unleased",
            Event::GrinderBatchCancelled { .. } => "grinder_batch_cancelled",
            Event::GrinderBatchFinished { .. } => "grinder_batch_finished",
        }
    }
}

impl std::fmt::Display for PoolFate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolFate::HandedOff => "handed to the oldest waiter",
            PoolFate::Idle => "returned to the idle set",
            PoolFate::ShutDown => "shut down",
        })
    }
}

impl std::fmt::Display for Event {
    /// The human-readable line `LogObserver` writes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = |o: &Option<Arc<str>>| o.as_deref().unwrap_or("-").to_owned();
        match self {
            Event::Leased {
                id,
                owner: o,
                pool,
                duration,
                grace,
                waited,
            } => write!(
                f,
                "leased pool {pool} as {id} (owner {}, lease {duration:?}, grace {grace:?}, waited {waited:?})",
                owner(o)
            ),
            Event::Draining { id, pending } => {
                write!(f, "released {id} with {pending} jobs pending: draining")
            }
            Event::Finalised { id, pool, outcome } => {
                write!(f, "finalised {id}: pool {pool} {outcome}")
            }
            Event::Renewed { id, duration } => write!(f, "renewed {id} for {duration:?}"),
            Event::SoftExpired { id, owner: o } => write!(
                f,
                "{id} (owner {}) passed its soft expiry; it will be revoked at hard expiry",
                owner(o)
            ),
            Event::Revoked { id, owner: o, pool } => write!(
                f,
                "revoked {id} (owner {}); pool {pool} shut down",
                owner(o)
            ),
            Event::Retired {
                pool,
                lease: Some(id),
                reason,
            } => write!(f, "retired broken pool {pool} held by {id}: {reason}"),
            Event::Retired {
                pool,
                lease: None,
                reason,
            } => write!(f, "retired broken idle pool {pool}: {reason}"),
            Event::Shrunk { pool } => {
                write!(f, "shut down idle pool {pool}: above the desired count")
            }
            Event::Created { pool } => write!(f, "created executor pool {pool}"),
            Event::CreateFailed { error } => {
                write!(f, "could not create an executor pool: {error}")
            }
            Event::WaiterTimedOut { waited } => write!(f, "an acquire timed out after {waited:?}"),
            Event::Started {
                backend,
                pools,
                max_pools,
            } => write!(
                f,
                "started lease manager: backend {backend}, {pools} pools, max_pools {max_pools}"
            ),
            Event::StartFailed { error } => write!(f, "start failed: {error}"),
            Event::SizeProviderSlow { patience } => write!(
                f,
                "size_provider has not answered within {patience:?}: starting with min_pools"
            ),
            Event::Stopped { backend } => write!(f, "stopped lease manager (backend {backend})"),
            Event::ShutdownBegun { deadline, held } => write!(
                f,
                "shutting down within {deadline:?}: {held} leases held, no new leases"
            ),
            Event::ShutdownFinished { report } if report.workers_still_running > 0 => {
                write!(f, "shutdown finished with work left behind: {report:?}")
            }
            Event::ShutdownFinished { report } => write!(f, "shutdown finished: {report:?}"),
            Event::GrinderStarted {
                batch_size_threshold,
                max_wait,
                lease,
            } => write!(
                f,
                "work grinder started: batch_size_threshold {batch_size_threshold}, max_wait {max_wait:?}, lease {lease:?}"
            ),
            Event::GrinderStopping { mode } => write!(f, "work grinder stopping ({mode:?})"),
            Event::GrinderStopped => write!(f, "work grinder stopped"),
            Event::GrinderBatch { number, items } => {
                write!(
                    f,
                    "grinder batch {number}: {items} items, asking for a lease"
                )
            }
            Event::GrinderBatchUnleased { number, error } => {
                write!(f, "grinder batch {number} got no lease: {error}")
            }
            Event::GrinderBatchCancelled { number, unstarted } => write!(
                f,
                "grinder batch {number} cancelled: {unstarted} items not started"
            ),
            Event::GrinderBatchFinished { number } => write!(f, "grinder batch {number} finished"),
        }
    }
}
