//! Graceful shutdown with a deadline: `LeasedExecutorManager::shutdown`.
//!
//! 1. At once: the phase becomes `ShuttingDown`, new acquires and queued
//!    waiters fail with `ShuttingDown`, idle pools are shut down. Held leases
//!    keep working; the checker keeps revoking them at hard expiry and keeps
//!    time for the deadline.
//! 2. When every lease has ended, or at the deadline: every lease still held
//!    is revoked exactly as at hard expiry (the backend's `revoke` runs, so
//!    the process backend kills runaway workers), then the manager stops.
//! 3. It waits for the workers to exit, but only for [`JOIN_GRACE`] past
//!    the deadline: a thread stuck in a job that ignores everything cannot
//!    be killed, and a service's termination budget must hold. What is left
//!    is counted in the report (`jobs_still_running`,
//!    `workers_still_running`). `stop()` keeps its own promise instead: it
//!    waits for every worker, however long that takes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Listener;

use crate::backend::LiveWorkers;
use crate::manager::Inner;
use crate::observe::Event;
use crate::state::deadline_after;
use crate::wait::wait_for;
use crate::{ExecutorBackend, LeasedExecutorManager, ShutdownReport};

/// How long `shutdown` waits for workers past its deadline.
pub(crate) const JOIN_GRACE: Duration = Duration::from_millis(500);

impl<B: ExecutorBackend> LeasedExecutorManager<B> {
    /// Shuts down gracefully within `deadline`, for a service with a
    /// termination budget.
    ///
    /// At once: new acquires fail with [`Error::ShuttingDown`](crate::Error::ShuttingDown),
    /// waiters are woken with `ShuttingDown`, idle pools are shut down, and
    /// the checker keeps revoking leases at hard expiry. Held leases keep
    /// working until they are released (and drained) or the deadline
    /// passes; then every lease still held is revoked exactly as at hard
    /// expiry, and the manager stops like [`stop`](Self::stop).
    ///
    /// It returns at most about half a second after the deadline, even if
    /// a job ignores everything: what could not be stopped by then is
    /// reported (`jobs_still_running`, `workers_still_running`), not waited
    /// for. Call [`stop`](Self::stop) afterwards to wait for it.
    ///
    /// On a manager that is not running this is `stop()` with an empty
    /// report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let started = Instant::now();
        let cancelled_before = inner.core().state.counters().jobs_cancelled;
        let at = deadline_after(started, deadline);
        let at_start = inner.begin_shutdown(at, deadline);
        let mut revoked = 0;
        if at_start.is_some() {
            wait_for(&inner.shutdown_ready, || inner.shutdown_due().then_some(())).await;
            revoked = inner.transition(|state, fx| state.revoke_all(Instant::now(), fx));
        }
        let stopped = inner.begin_stop();
        if !inner.called_from_own_job() {
            let bound = at_start.map(|_| deadline_after(at.max(Instant::now()), JOIN_GRACE));
            stopped.ended(bound).await;
        }
        inner.shutdown_report(started, cancelled_before, at_start, revoked, &stopped.live)
    }

    /// [`shutdown`](Self::shutdown) for plain threads.
    pub fn shutdown_blocking(&self, deadline: Duration) -> ShutdownReport {
        futures_lite::future::block_on(self.shutdown(deadline))
    }
}

impl<B: ExecutorBackend> Inner<B> {
    fn begin_shutdown(&self, at: Instant, deadline: Duration) -> Option<usize> {
        let held = self.transition(|state, fx| state.begin_shutdown(at, fx));
        if let Some(held) = held {
            self.observe(|| Event::ShutdownBegun { deadline, held });
        }
        held
    }

    fn shutdown_due(&self) -> bool {
        self.core().state.shutdown_due(Instant::now())
    }

    fn shutdown_report(
        &self,
        started: Instant,
        cancelled_before: u64,
        at_start: Option<usize>,
        revoked: usize,
        live: &LiveWorkers,
    ) -> ShutdownReport {
        let leases_at_start = at_start.unwrap_or(0);
        let core = self.core();
        let report = ShutdownReport {
            leases_at_start,
            ended_on_their_own: leases_at_start.saturating_sub(revoked),
            revoked_at_deadline: revoked,
            jobs_cancelled: (core
                .state
                .counters()
                .jobs_cancelled
                .saturating_sub(cancelled_before)) as usize,
            jobs_still_running: core.state.jobs_in_flight(),
            workers_still_running: live.get(),
            elapsed: started.elapsed(),
        };
        drop(core);
        if at_start.is_some() {
            self.observe(|| Event::ShutdownFinished {
                report: report.clone(),
            });
        }
        report
    }
}

/// Waits until every worker of `live` has exited, or until `bound`.
/// Returns true if they all exited.
///
/// No runtime timer is at hand, so a bounded wait gets a helper thread that
/// sleeps until every worker is gone or the bound passes, then wakes the
/// waiter; it never outlives `bound`.
pub(crate) async fn workers_exited(live: &Arc<LiveWorkers>, bound: Option<Instant>) -> bool {
    let Some(bound) = bound else {
        wait_for(&live.exited, || (live.get() == 0).then_some(())).await;
        return true;
    };
    if live.get() == 0 {
        return true;
    }
    let timer_live = live.clone();
    let timer = std::thread::Builder::new()
        .name("leasepool-shutdown-timer".to_owned())
        .spawn(move || {
            let listener = timer_live.exited.listen();
            if timer_live.get() != 0 {
                listener.wait_deadline(bound);
            }
            timer_live.exited.notify(usize::MAX);
        });
    if timer.is_err() {
        return live.get() == 0;
    }
    wait_for(&live.exited, || {
        (live.get() == 0 || Instant::now() >= bound).then_some(())
    })
    .await;
    live.get() == 0
}
