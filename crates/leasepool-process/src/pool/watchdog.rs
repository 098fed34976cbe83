//! The watchdog thread of a pool: kills workers that overrun a deadline.
//!
//! - A call that has run longer than the backend's `call_timeout`: its
//!   worker is killed, the call fails with `Error::CallTimedOut` naming
//!   the function and the limit, and the pool replaces the worker (the
//!   pool is not broken).
//! - After `shutdown`, a worker that has not exited within the backend's
//!   `shutdown_grace` (a long call, a frozen or stuck process): it is
//!   killed, and its call fails with `Error::Broken` naming the grace.
//!
//! The thread sleeps on the pool's condition variable until the next
//! deadline or a change, holds a `WorkerGuard` (so `stop()` waits for it)
//! and ends once the pool is shut down and every worker is gone.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use leasepool_core::{Error, WorkerGuard};

use super::group::kill;
use super::{Kill, Shared, State};

/// Starts the watchdog of a new pool.
pub(super) fn start(shared: &Arc<Shared>) -> io::Result<()> {
    let guard = shared.ctx.worker_guard();
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!(
            "{}-{}-watch",
            shared.ctx.name_prefix(),
            shared.ctx.pool_seq()
        ))
        .spawn(move || watch(&shared, guard))
        .map(drop)
}

fn watch(shared: &Shared, guard: WorkerGuard) {
    let mut state = shared.lock();
    loop {
        if state.closed && state.workers.is_empty() {
            break;
        }
        let now = Instant::now();
        let (victims, next) = overdue(shared, &mut state, now);
        if !victims.is_empty() {
            drop(state);
            for (pid, child, reason) in victims {
                log::warn!(target: leasepool_core::LOG_TARGET, "killing worker process {pid}: {reason}");
                kill(&child);
            }
            state = shared.lock();
            continue;
        }
        state = match next {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                shared
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
    }
    drop(state);
    drop(guard);
}

type Victim = (
    u32,
    Arc<std::sync::Mutex<Option<std::process::Child>>>,
    String,
);

/// Marks the workers past a deadline as killed and returns them, with the
/// next deadline to wake up for.
fn overdue(shared: &Shared, state: &mut State, now: Instant) -> (Vec<Victim>, Option<Instant>) {
    let backend = &shared.config.backend;
    let mut victims = Vec::new();
    let mut next: Option<Instant> = None;
    let mut wake_at = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
    let grace_deadline = state.closed_at.map(|at| at + backend.shutdown_grace);
    for worker in &mut state.workers {
        if worker.killed.is_some() {
            continue;
        }
        if let Some(deadline) = grace_deadline {
            if now >= deadline {
                let reason = format!(
                    "worker process {} was killed: it had not exited {:?} after its pool \
                     shut down (shutdown_grace)",
                    worker.pid, backend.shutdown_grace
                );
                worker.killed = Some(Kill {
                    error: Error::Broken(reason.clone()),
                    replace: false,
                });
                victims.push((worker.pid, worker.child.clone(), reason));
                continue;
            }
            wake_at(deadline);
        }
        if let (Some(limit), Some(call)) = (backend.call_timeout, &worker.in_flight) {
            let deadline = call.sent + limit;
            if now >= deadline {
                let reason = format!(
                    "worker process {} was killed: the call of {} ran longer than the \
                     time limit of {limit:?} (call_timeout); the pool replaces the worker",
                    worker.pid,
                    call.call.function()
                );
                worker.killed = Some(Kill {
                    error: Error::CallTimedOut {
                        function: call.call.function(),
                        limit,
                    },
                    replace: true,
                });
                worker.retiring = true;
                worker.stdin = None;
                victims.push((worker.pid, worker.child.clone(), reason));
                continue;
            }
            wake_at(deadline);
        }
    }
    (victims, next)
}
