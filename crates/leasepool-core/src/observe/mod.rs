//! Watching a manager: structured events, state snapshots and the context
//! a job carries from its submitter to its worker.
//!
//! Every manager has one [`Observer`]. It is told, after the state lock is
//! released,
//!
//! - each [`Event`] at or above its [`max_level`](Observer::max_level)
//!   (lease granted, revoked, pool retired, manager started...), with
//!   structured fields;
//! - if it asks for them, a [`Snapshot`] of the counters and pool counts
//!   after each change of state, read under the same lock as the change;
//! - at every submit, on the submitting thread, a chance to
//!   [`capture`](Observer::capture) a [`JobContext`] (a tracing span, for
//!   instance) that is entered around the job on the thread that runs it.
//!
//! The default, [`LogObserver`], writes events through the `log` crate
//! under target [`LOG_TARGET`](crate::LOG_TARGET) and captures nothing. The
//! `leasepool` crate's `tracing` and `metrics` features install observers
//! that record through `tracing` (and run each job in its submitter's
//! span) and through the `metrics` facade; this crate depends on neither.
//! [`ManagerBuilder::observer`](crate::ManagerBuilder::observer) installs
//! any other.
//!
//! Observers are user code on library threads: a panic in one is caught
//! and the event is lost, nothing else.

mod event;
mod log_observer;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

pub use event::{Event, PoolFate};
pub use log_observer::LogObserver;

use crate::{ManagerCounters, drop_panic_payload};

/// How much an event matters, most severe first (the order of `log` and
/// `tracing` levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something the library could not do (a backend misbehaved).
    Error,
    /// Trouble a service should look at: soft expiry, revocation, broken
    /// pools, failed pool creation.
    Warn,
    /// Start, stop and shutdown: a constant number per run.
    Info,
    /// One per lease or per batch: leases granted, released, renewed.
    Debug,
    /// The finest detail.
    Trace,
}

/// Watches one manager. See the [module docs](self).
///
/// Every method is called outside the manager's lock, on whatever thread
/// made the change (a caller, a worker, the checker): keep them short and
/// never block. A panic is caught and loses only what was being observed.
pub trait Observer: Send + Sync + 'static {
    /// The least severe level of [`Event`] this observer wants, or `None`
    /// for no events at all. Events below it are never built. Read at
    /// every change of state, so it may follow a logger's level.
    fn max_level(&self) -> Option<Level>;

    /// One event at or above [`max_level`](Self::max_level).
    fn event(&self, event: &Event);

    /// True if this observer wants a [`Snapshot`] after each change of
    /// state (metrics exporters do). Read once, when the manager is built.
    fn wants_snapshots(&self) -> bool {
        false
    }

    /// The state after a change, read under the lock that made it.
    /// Snapshots of changes made on different threads may arrive out of
    /// order: see [`Snapshot::seq`].
    fn snapshot(&self, snapshot: &Snapshot) {
        let _ = snapshot;
    }

    /// Called on the submitting thread for every job (`submit`, `run`,
    /// `call`, a grinder item). What it returns is entered around the job
    /// where it runs; `None` (the default) costs nothing.
    fn capture(&self) -> Option<Box<dyn JobContext>> {
        None
    }
}

/// Context captured at submit and entered around the job where it runs
/// (a tracing span, a request id, a timer).
pub trait JobContext: Send + 'static {
    /// Runs `job` inside this context. Must call `job` exactly once.
    fn scope(&self, job: &mut dyn FnMut());
}

/// The state of a manager right after a change, for gauges and counters.
/// Read under the same lock as the change, so it is consistent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Grows by one with every change of state. Snapshots are handed over
    /// after the lock is released, by whichever thread made the change,
    /// so two of them can arrive out of order: keep the one with the
    /// highest `seq` (`MetricsObserver` does).
    pub seq: u64,
    /// The manager's `name_prefix`, to label metrics with.
    pub manager: std::sync::Arc<str>,
    /// Pools owned: `available + leased`.
    pub total: usize,
    /// Idle pools, ready to lease.
    pub available: usize,
    /// Leased pools (draining leases included).
    pub leased: usize,
    /// Waiters queued for a pool.
    pub waiting: usize,
    /// The adaptive target pool count.
    pub desired: usize,
    /// The configured maximum pool count.
    pub max_pools: usize,
    /// Counters since the manager was built.
    pub counters: ManagerCounters,
}

impl fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("max_level", &self.max_level())
            .finish_non_exhaustive()
    }
}

/// Runs `job` inside `context`, if there is one. The job runs exactly once
/// whatever the context does: if it panics before calling the job, or
/// returns without calling it, the job runs after it, outside it. A panic
/// of the job itself resumes once the context has been left.
pub(crate) fn run_in<R>(context: Option<&dyn JobContext>, job: impl FnOnce() -> R) -> R {
    let Some(context) = context else {
        return job();
    };
    let mut job = Some(job);
    let mut outcome = None;
    let entered = catch_unwind(AssertUnwindSafe(|| {
        context.scope(&mut || {
            if let Some(job) = job.take() {
                outcome = Some(catch_unwind(AssertUnwindSafe(job)));
            }
        });
    }));
    if let Err(payload) = entered {
        // The context's own panic: the job is what matters.
        drop_panic_payload(payload);
    }
    match (outcome, job) {
        (Some(Ok(result)), _) => result,
        (Some(Err(payload)), _) => resume_unwind(payload),
        (None, Some(job)) => job(),
        (None, None) => unreachable!("the job is taken only to run it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Skips;
    impl JobContext for Skips {
        fn scope(&self, _job: &mut dyn FnMut()) {}
    }

    struct Panics;
    impl JobContext for Panics {
        fn scope(&self, _job: &mut dyn FnMut()) {
            panic!("a context that panics on entry");
        }
    }

    struct PanicsOnExit;
    impl JobContext for PanicsOnExit {
        fn scope(&self, job: &mut dyn FnMut()) {
            job();
            panic!("a context that panics on exit");
        }
    }

    struct Twice;
    impl JobContext for Twice {
        fn scope(&self, job: &mut dyn FnMut()) {
            job();
            job();
        }
    }

    #[test]
    fn a_job_runs_exactly_once_whatever_its_context_does() {
        for context in [
            None,
            Some(&Skips as &dyn JobContext),
            Some(&Twice),
            Some(&Panics),
            Some(&PanicsOnExit),
        ] {
            let mut runs = 0;
            let out = run_in(context, || {
                runs += 1;
                7
            });
            assert_eq!((out, runs), (7, 1));
        }
    }

    #[test]
    fn a_panicking_job_unwinds_after_its_context_is_left() {
        let caught = catch_unwind(|| run_in(Some(&Skips), || -> u8 { panic!("the job") }));
        assert_eq!(
            caught.map_err(|payload| crate::panic_message(&*payload)),
            Err("the job".to_owned())
        );
    }

    std::thread_local! {
        static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Marks the thread while the job runs inside it.
    struct Flag;
    impl JobContext for Flag {
        fn scope(&self, job: &mut dyn FnMut()) {
            INSIDE.set(true);
            job();
            INSIDE.set(false);
        }
    }

    /// A result that remembers whether it was decoded inside the context.
    struct Probe(bool);
    impl serde::Serialize for Probe {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bool(self.0)
        }
    }
    impl<'de> serde::Deserialize<'de> for Probe {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let _ = <u8 as serde::Deserialize>::deserialize(d)?;
            Ok(Probe(INSIDE.get()))
        }
    }

    fn probe(_: u8) -> Probe {
        Probe(INSIDE.get())
    }

    #[test]
    fn a_call_runs_in_its_context_in_process_and_out_of_it() {
        use serde::de::IntoDeserializer;
        // In process: the function itself runs inside.
        let (task, handle) = crate::Task::with_call(probe, 1u8, None, Some(Box::new(Flag)));
        task.run();
        assert!(handle.wait().unwrap().0, "the call ran outside its context");
        // Out of process: the backend's dispatch (in_context) and the
        // delivery of the result run inside.
        let (task, handle) = crate::Task::with_call(probe, 1u8, None, Some(Box::new(Flag)));
        let call = task.into_remote().expect("a call travels");
        assert!(call.in_context(|| INSIDE.get()), "dispatch outside");
        assert!(!INSIDE.get());
        assert!(call.start());
        let reply = IntoDeserializer::<serde::de::value::Error>::into_deserializer(7u8);
        call.deliver(&mut <dyn erased_serde::Deserializer<'_>>::erase(reply));
        assert!(handle.wait().unwrap().0, "delivery outside its context");
    }

    #[test]
    fn levels_order_most_severe_first() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info);
        assert!(Level::Info < Level::Debug && Level::Debug < Level::Trace);
    }
}
