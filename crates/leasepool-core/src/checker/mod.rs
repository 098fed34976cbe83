//! The checker: one plain OS thread per running manager, and the pools it
//! has created.
//!
//! The checker is the manager's clock. Each pass revokes leases at hard
//! expiry, plans the pool creations the desired size and the waiters need,
//! times out waiters, warns at soft expiry, shrinks idle pools above the
//! desired count and shuts down pools reported broken. It then sleeps on an
//! [`Alarm`] until the earliest of: the check interval, the next soft or
//! hard expiry, the next waiter deadline, the end of a creation back-off or
//! of a graceful shutdown. Whoever changes what that deadline should be (a
//! new short lease, a waiter that needs a pool, a broken pool, a new size
//! reading, `stop`) kicks it. No async runtime, no polling loop.
//!
//! The checker never waits on user code. The size provider runs on the
//! sizer thread (`sizer.rs`), which sets the desired count itself; each planned pool is created on a short-lived
//! thread of its own, so a backend that is slow to create a pool delays
//! only the waiters that pool will serve; a backend that panics in
//! `create_pool` counts as a failed creation. Only the pools of start-up are
//! created on the checker thread itself, before it starts keeping time.
//!
//! The thread holds only a weak reference to the manager between passes, so
//! a manager dropped without `stop()` still lets it exit.
//!
//! `README.md` beside this file explains the timing: what the checker sleeps
//! until, who kicks it, and why no kick or deadline is lost.

mod create;
pub(crate) mod sizer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::backend::LiveWorkers;
use crate::manager::Inner;
use crate::observe::Event;
use crate::state::Lifecycle;
use crate::wait::{Alarm, StartGate};
use crate::{Error, ExecutorBackend, PoolContext};
use create::{create_pool, spawn_creation};

/// How long start-up waits for the size provider's first answer before it
/// creates `min_pools` and lets the sizer catch up.
const SIZE_PATIENCE: Duration = Duration::from_secs(1);

/// How the manager wakes and retires its checker thread.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    alarm: Alarm,
    generation: AtomicU64,
}

impl Checker {
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

/// Spawns the checker thread for one run of the manager. It creates the
/// first pools, publishes the outcome through `gate`, then keeps time.
pub(crate) fn spawn<B: ExecutorBackend>(
    inner: &Arc<Inner<B>>,
    generation: u64,
    gate: Arc<StartGate>,
    live: Arc<LiveWorkers>,
) -> Result<(), Error> {
    let weak = Arc::downgrade(inner);
    let checker = inner.checker.clone();
    // The checker counts as a worker: stop() waits for it to exit too.
    let guard = PoolContext::guard_for(&live);
    let name = format!("{}-checker", inner.config.name_prefix);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _guard = guard;
            let started = match weak.upgrade() {
                Some(inner) => start_up(&inner, generation),
                None => Err(Error::NotStarted),
            };
            let ok = started.is_ok();
            gate.open(started);
            if !ok {
                return;
            }
            loop {
                if !checker.is_current(generation) {
                    return;
                }
                let deadline = match weak.upgrade() {
                    Some(inner) => match pass(&inner) {
                        Some(deadline) => deadline,
                        None => return,
                    },
                    None => return,
                };
                checker.alarm.sleep(Some(deadline));
            }
        })
        .map(drop)
        .map_err(|e| Error::Broken(format!("cannot spawn the checker thread: {e}")))
}

/// Creates the first pools, on the checker thread.
fn start_up<B: ExecutorBackend>(inner: &Arc<Inner<B>>, generation: u64) -> Result<(), Error> {
    let units = match inner.sizer() {
        None => 0,
        Some(sizer) => {
            let patience = SIZE_PATIENCE.min(inner.config.check_interval);
            if !sizer.wait_first(crate::state::deadline_after(Instant::now(), patience)) {
                inner.observe(|| Event::SizeProviderSlow { patience });
            }
            sizer.units()
        }
    };
    let desired = inner.config.desired_for(units);
    let (seqs, live) = inner.with_core(|core, _| {
        core.state.set_desired(desired);
        (core.state.reserve_pool_seqs(desired), core.live.clone())
    });
    let mut pools = Vec::with_capacity(seqs.len());
    for seq in seqs {
        match create_pool(inner, seq, &live) {
            Ok(slot) => pools.push(slot),
            Err(error) => {
                for slot in pools {
                    inner.shut_down_pool(&slot.pool);
                }
                inner.with_core(|core, _| {
                    if inner.checker.is_current(generation) {
                        core.state.abort_start();
                    }
                });
                inner.observe(|| Event::StartFailed {
                    error: error.clone(),
                });
                return Err(error);
            }
        }
    }
    let created: Vec<u64> = pools.iter().map(|slot| slot.seq).collect();
    let installed = inner.with_core(|core, fx| {
        if inner.checker.is_current(generation) {
            core.state.finish_start(pools, Instant::now(), fx)
        } else {
            Err(pools)
        }
    });
    match installed {
        Ok(()) => {
            for pool in &created {
                inner.observe(|| Event::Created { pool: *pool });
            }
            inner.observe(|| Event::Started {
                backend: inner.backend.name(),
                pools: created.len(),
                max_pools: inner.config.max_pools,
            });
            Ok(())
        }
        Err(pools) => {
            for slot in pools {
                inner.shut_down_pool(&slot.pool);
            }
            Err(Error::NotStarted)
        }
    }
}

/// One checker pass. Returns when the next pass is due, or `None` once the
/// manager is not running.
pub(crate) fn pass<B: ExecutorBackend>(inner: &Arc<Inner<B>>) -> Option<Instant> {
    let now = Instant::now();
    let interval = inner.config.check_interval;
    let planned = inner.with_core(|core, fx| {
        if !matches!(
            core.state.phase(),
            Lifecycle::Running | Lifecycle::ShuttingDown
        ) {
            return None;
        }
        // Revoke, then plan, then tick: the room an expired lease frees
        // counts, and a waiter a new pool will serve is not timed out in
        // the very pass that creates its pool.
        core.state.revoke_expired(now, fx);
        let creations = match core.state.creation_held_until(now) {
            Some(_) => Vec::new(), // the tick's deadline wakes us when it ends
            None => core.state.plan_creations(),
        };
        let deadline = core.state.tick(now, interval, fx);
        if core.state.shutdown_due(now) {
            fx.shutdown_ready = true;
        }
        Some((deadline, creations, core.live.clone()))
    });
    let (deadline, creations, live) = planned?;
    for seq in creations {
        spawn_creation(inner, seq, &live);
    }
    Some(deadline)
}
