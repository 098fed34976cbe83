//! The checker: one plain OS thread per running manager.
//!
//! It creates pools (so async callers never block on pool start-up), revokes
//! leases at hard expiry, times out waiters, warns at soft expiry, applies
//! the adaptive size, and shuts down pools reported broken. It sleeps on an
//! `event_listener::Event` with a deadline, the earliest of: the check
//! interval, the next soft or hard expiry, the next waiter deadline. Anyone
//! who changes what that deadline should be (a new short lease, a waiter that
//! needs a pool created, a broken pool, `notify_scale_changed`, `stop`)
//! "kicks" it. No async runtime, no polling loop.
//!
//! The thread holds only a weak reference to the manager between passes, so
//! a manager dropped without `stop()` still lets it exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::LiveWorkers;
use crate::manager::{Inner, downgrade};
use crate::signal::{Alarm, StartGate};
use crate::{Error, ExecutorBackend, PoolContext};

/// How the manager wakes and retires its checker thread.
#[derive(Debug, Default)]
pub(crate) struct CheckerSignal {
    alarm: Alarm,
    generation: AtomicU64,
}

impl CheckerSignal {
    /// Asks for a pass as soon as possible.
    pub(crate) fn kick(&self) {
        self.alarm.kick();
    }

    /// Retires the running checker (it exits at its next wake; callers kick
    /// it right after) and returns the generation for a new one.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }
}

/// Spawns the checker thread for one run of the manager.
pub(crate) fn spawn<B: ExecutorBackend>(
    inner: &Arc<Inner<B>>,
    generation: u64,
    gate: Arc<StartGate>,
    live: Arc<LiveWorkers>,
) -> Result<(), Error> {
    let weak = downgrade(inner);
    let signal = inner.checker.clone();
    // The checker counts as a worker: stop() waits for it to exit too.
    let guard = PoolContext::guard_for(&live);
    let name = format!("{}-checker", inner.config.name_prefix);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _guard = guard;
            let started = match weak.upgrade() {
                Some(inner) => inner.create_initial_pools(generation),
                None => Err(Error::NotStarted),
            };
            let ok = started.is_ok();
            gate.open(started);
            if !ok {
                return;
            }
            loop {
                if !signal.is_current(generation) {
                    return;
                }
                let deadline = match weak.upgrade() {
                    Some(inner) => match inner.checker_pass() {
                        Some(deadline) => deadline,
                        None => return,
                    },
                    None => return,
                };
                signal.alarm.sleep(Some(deadline));
            }
        })
        .map(drop)
        .map_err(|e| Error::Broken(format!("cannot spawn the checker thread: {e}")))
}
