//! The one error type of leasepool.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::LeaseId;

/// Everything that can go wrong when borrowing a pool or running a job.
///
/// Each variant's message says what happened and what to do about it. The
/// type is `Send + Sync + 'static` and `Clone`, so one failure (a broken pool,
/// say) can be handed to every job it affects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The manager is not running: `start()` was never called, has not
    /// finished, or the manager was stopped.
    #[error("the lease manager is not started: call start() first (it may have been stopped)")]
    NotStarted,

    /// A graceful `shutdown()` or a `stop()` is in progress: the acquire was
    /// refused, or a waiting acquire was woken, because the manager is going
    /// away.
    #[error(
        "the lease manager is shutting down: it hands out no new leases; \
         send the work elsewhere, or start the manager again once shutdown has returned"
    )]
    ShuttingDown,

    /// `wait(false)` was asked for and every pool is leased, or the
    /// acquire's owner already holds (or has queued for) as many leases as
    /// its limit allows (`owner_limit`).
    #[error("{}", unavailable_message(*max_pools, owner_limit.as_ref()))]
    Unavailable {
        /// The manager's `max_pools`.
        max_pools: usize,
        /// Set when the owner's lease limit refused the acquire (pools may
        /// be free for other owners).
        owner_limit: Option<OwnerLimit>,
    },

    /// No pool became free within the acquire timeout.
    #[error(
        "timed out after {0:?} waiting for an executor pool; \
         raise the timeout or max_pools, or hold leases for less time"
    )]
    Timeout(Duration),

    /// The lease can no longer run work.
    #[error("{id} can no longer run work: {reason}; acquire a new lease")]
    LeaseExpired {
        /// The lease that was used.
        id: LeaseId,
        /// Why the lease ended.
        reason: LeaseEnd,
    },

    /// The requested backend is not compiled in, or cannot run this kind of
    /// job.
    #[error("unsupported backend: {0}")]
    UnsupportedBackend(String),

    /// A configuration value broke its rule. Nothing is clamped: fix the value.
    #[error("invalid configuration for `{field}`: {reason}")]
    InvalidConfig {
        /// The option that was wrong.
        field: &'static str,
        /// The rule it broke.
        reason: String,
    },

    /// The pool can no longer run work (a worker initializer failed, a worker
    /// died). The pool has been retired and replaced: run the job again on a
    /// new lease.
    #[error(
        "the executor pool is broken ({0}); it was retired and replaced, run the job again on a new lease"
    )]
    Broken(String),

    /// A `call` ran longer than the process backend's `call_timeout`: its
    /// worker process was killed and replaced, and the pool (and the lease)
    /// keep serving. Running the same call again will likely time out
    /// again, so it is not [retryable](Error::is_retryable).
    #[error(
        "the call of `{function}` ran longer than its time limit of {limit:?} (call_timeout): \
         its worker process was killed and replaced; the pool keeps serving"
    )]
    CallTimedOut {
        /// The function's registered name.
        function: &'static str,
        /// The `call_timeout` it ran over.
        limit: std::time::Duration,
    },

    /// The pool's workers cannot be started as the program is set up: for
    /// the process backend, `process::init` is not the first call in
    /// `main`. The message names the fix; trying again will not help.
    #[error("the pool's workers cannot start: {0}")]
    WorkerSetup(String),

    /// The job panicked. The worker that ran it keeps serving.
    #[error("the job panicked: {0}")]
    Panicked(String),

    /// The job was cancelled before it started: by `JobHandle::cancel`, by
    /// dropping a `run` future, or because its pool was shut down.
    #[error("the job was cancelled before it started")]
    Cancelled,

    /// `call` named a function that the worker's registry does not hold.
    #[error(
        "unknown function {0}: register it with Registry::register in the worker's registry \
         (the registry must be the same in the parent and its workers)"
    )]
    UnknownFunction(String),

    /// An argument or result could not be encoded or decoded.
    #[error("serialisation failed: {0}")]
    Serialization(String),

    /// The result of this job was already taken from its handle.
    #[error("the job's result was already taken from this handle")]
    ResultTaken,
}

/// The owner limit that refused a fail-fast acquire
/// ([`Error::Unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerLimit {
    /// The acquire's owner.
    pub owner: String,
    /// The most leases it may hold at once (`max_leases_per_owner` or its
    /// `owner_limit`).
    pub limit: usize,
}

fn unavailable_message(max_pools: usize, owner_limit: Option<&OwnerLimit>) -> String {
    match owner_limit {
        Some(OwnerLimit { owner, limit }) => format!(
            "owner `{owner}` is at its lease limit of {limit} (leases held plus acquires \
             queued; max_leases_per_owner or owner_limit): retry when one of its leases \
             is released, wait for it, or raise the limit"
        ),
        None => format!(
            "no executor pool is free: all {max_pools} pools (max_pools) are leased; \
             retry later, wait for a pool, or raise max_pools"
        ),
    }
}

impl Error {
    /// True where trying again later, or on a new lease, can succeed:
    /// [`Unavailable`](Self::Unavailable) and [`Timeout`](Self::Timeout)
    /// (a pool may be free later), [`LeaseExpired`](Self::LeaseExpired) and
    /// [`Broken`](Self::Broken) (on a new lease). False for misuse and
    /// configuration errors, for a manager that is not running or shutting
    /// down (a lease that ended because the manager stopped included), and
    /// for outcomes of the job itself (a panic, a cancellation, a time-out
    /// of a call, a serialisation failure), which the same job would meet
    /// again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use leasepool_core::Error;
    ///
    /// assert!(Error::Timeout(Duration::from_secs(1)).is_retryable());
    /// assert!(!Error::ShuttingDown.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::LeaseExpired { reason, .. } => *reason != LeaseEnd::Stopped,
            Error::Unavailable { .. } | Error::Timeout(_) | Error::Broken(_) => true,
            _ => false,
        }
    }

    /// An [`Error::InvalidConfig`] for `field`, with a reason a person can
    /// act on ("must be greater than 0"). For backends' `check_config`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a lease stopped accepting work (carried by [`Error::LeaseExpired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseEnd {
    /// The lease was released (its pool may still be finishing earlier jobs).
    Released,
    /// The lease passed its hard expiry and was revoked.
    Expired,
    /// The lease's pool broke and was retired.
    Broken,
    /// The manager was stopped.
    Stopped,
}

impl fmt::Display for LeaseEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseEnd::Released => "it was released",
            LeaseEnd::Expired => "it passed its hard expiry and was revoked",
            LeaseEnd::Broken => "its pool broke and was retired",
            LeaseEnd::Stopped => "the manager was stopped",
        })
    }
}

/// Turns a panic payload (from `std::panic::catch_unwind`) into the message
/// carried by [`Error::Panicked`]. For backends that catch panics
/// themselves.
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// assert_eq!(leasepool_core::panic_message(payload.as_ref()), "boom");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// [`panic_message`] for a payload the library owns: the message, with the
/// payload dropped safely (see [`drop_panic_payload`]).
pub(crate) fn take_panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(payload.as_ref());
    drop_panic_payload(payload);
    message
}

/// Drops a panic payload. The payload is user code (`panic_any` takes any
/// type) and its `Drop` may panic in turn: that second panic is caught, and
/// its own payload is forgotten rather than dropped, so dropping never
/// unwinds into the caller however deep the nesting. For backends that
/// catch panics themselves.
///
/// ```
/// struct Bomb;
/// impl Drop for Bomb {
///     fn drop(&mut self) {
///         panic!("the payload's own drop panics");
///     }
/// }
///
/// let payload = std::panic::catch_unwind(|| std::panic::panic_any(Bomb)).unwrap_err();
/// leasepool_core::drop_panic_payload(payload); // does not unwind
/// ```
pub fn drop_panic_payload(payload: Box<dyn Any + Send>) {
    if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(inner);
    }
}

#[cfg(test)]
mod tests {
    use std::panic::panic_any;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Panics when dropped, with a payload that panics when dropped, down
    /// to `depth`.
    struct Nested {
        depth: usize,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Nested {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
            if self.depth > 0 {
                panic_any(Nested {
                    depth: self.depth - 1,
                    drops: self.drops.clone(),
                });
            }
        }
    }

    fn nested(depth: usize) -> (Nested, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        let value = Nested {
            depth,
            drops: drops.clone(),
        };
        (value, drops)
    }

    #[test]
    fn a_payload_whose_drop_panics_is_dropped_once_and_its_own_payload_forgotten() {
        let (value, drops) = nested(3);
        let payload: Box<dyn Any + Send> = Box::new(value);
        assert_eq!(
            take_panic_message(payload),
            "a panic with a non-string payload"
        );
        // The first drop panicked with a second payload, which was
        // forgotten: never dropped, so its own bomb never went off.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_user_value_whose_drop_panics_does_not_unwind() {
        let (value, drops) = nested(3);
        crate::contain::drop_user_value(value);
        // The value, then its payload (which panics again: forgotten).
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        crate::contain::drop_user_value(String::from("harmless"));
    }
}
