//! Reporting a broken pool: [`BrokenSignal`], and [`BrokenFlag`], the
//! "break once, report once, fail every later task" cell every backend
//! needs.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::Error;

/// Reports that a pool can no longer run work.
///
/// Cheap to clone; safe to call from any thread, any number of times (only
/// the first report counts), including from inside the pool's own workers.
#[derive(Clone)]
pub struct BrokenSignal {
    report: Option<ReportFn>,
}

pub(crate) type ReportFn = Arc<dyn Fn(&str) + Send + Sync>;

impl fmt::Debug for BrokenSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokenSignal")
            .field("attached", &self.report.is_some())
            .finish()
    }
}

impl BrokenSignal {
    pub(crate) fn new(report: ReportFn) -> Self {
        BrokenSignal {
            report: Some(report),
        }
    }

    pub(crate) fn detached() -> Self {
        BrokenSignal { report: None }
    }

    /// Tells the manager the pool is broken, with a reason for the logs and
    /// for [`Error::Broken`]. The manager retires the pool's lease, shuts the
    /// pool down (from its own thread, never from the caller's) and creates
    /// replacement capacity.
    pub fn report(&self, reason: &str) {
        if let Some(report) = &self.report {
            report(reason);
        }
    }
}

/// A pool's broken state, for backend authors: the first reason wins, is
/// reported to the manager exactly once, and from then on
/// [`error`](Self::error) gives the [`Error::Broken`] that queued and later
/// tasks should fail with.
///
/// Safe to share between a pool's handle and its workers (put it in an
/// `Arc` or in the state they share).
///
/// ```
/// use leasepool_core::{BrokenFlag, PoolContext};
///
/// let ctx = PoolContext::detached(1, 2, "docs");
/// let flag = BrokenFlag::new(ctx.broken_signal());
/// assert!(flag.error().is_none());
/// assert!(flag.set("worker 0: initializer failed"));
/// assert!(!flag.set("worker 1: initializer failed"), "only the first counts");
/// assert_eq!(flag.reason(), Some("worker 0: initializer failed"));
/// ```
pub struct BrokenFlag {
    reason: OnceLock<String>,
    signal: BrokenSignal,
}

impl fmt::Debug for BrokenFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokenFlag")
            .field("reason", &self.reason.get())
            .finish_non_exhaustive()
    }
}

impl BrokenFlag {
    /// A healthy pool's flag, reporting through `signal`
    /// ([`PoolContext::broken_signal`](crate::PoolContext::broken_signal)).
    pub fn new(signal: BrokenSignal) -> Self {
        BrokenFlag {
            reason: OnceLock::new(),
            signal,
        }
    }

    /// Marks the pool broken. The first call records `reason`, reports it
    /// to the manager and returns true; later calls change nothing.
    pub fn set(&self, reason: impl Into<String>) -> bool {
        let mut first = false;
        let reason = self.reason.get_or_init(|| {
            first = true;
            reason.into()
        });
        if first {
            self.signal.report(reason);
        }
        first
    }

    /// The reason, once broken.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// True once broken.
    pub fn is_broken(&self) -> bool {
        self.reason.get().is_some()
    }

    /// `Some(Error::Broken(reason))` once broken: what a task that reaches
    /// a broken pool should fail with.
    pub fn error(&self) -> Option<Error> {
        self.reason().map(|reason| Error::Broken(reason.to_owned()))
    }
}
