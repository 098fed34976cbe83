//! Creating pools: at start-up on the checker thread, later on a
//! short-lived thread per planned pool, so the checker never waits on a
//! backend. A `create_pool` that panics is a failed creation.

use std::sync::Arc;
use std::time::Instant;

use crate::BrokenSignal;
use crate::backend::LiveWorkers;
use crate::contain::contain;
use crate::manager::{Inner, PoolRef};
use crate::state::PoolSlot;
use crate::{Error, ExecutorBackend, PoolContext};

/// Creates planned pool `seq` on a thread of its own (a worker of the run:
/// `stop()` waits for it), then installs it or records the failure.
pub(super) fn spawn_creation<B: ExecutorBackend>(
    inner: &Arc<Inner<B>>,
    seq: u64,
    live: &Arc<LiveWorkers>,
) {
    let guard = PoolContext::guard_for(live);
    let name = format!("{}-create-{seq}", inner.config.name_prefix);
    let creator = inner.clone();
    let live = live.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _guard = guard;
        let created = create_pool(&creator, seq, &live);
        creation_done(&creator, seq, created);
    });
    if let Err(e) = spawned {
        let error = Error::Broken(format!("cannot spawn a thread to create pool {seq}: {e}"));
        creation_done(inner, seq, Err(error));
    }
}

/// Installs a planned pool, or fails the oldest waiter it would have served.
fn creation_done<B: ExecutorBackend>(
    inner: &Inner<B>,
    seq: u64,
    created: Result<PoolSlot<PoolRef<B>>, Error>,
) {
    inner.with_core(|core, fx| {
        let now = Instant::now();
        match created {
            Ok(slot) => core.state.pool_created(slot, now, fx),
            Err(error) => {
                core.state.pool_creation_failed(seq, error, fx);
                core.state.record_break(now);
            }
        }
    });
}

/// Builds pool `seq` through the backend. A panic in `create_pool` is a
/// failed creation.
pub(super) fn create_pool<B: ExecutorBackend>(
    inner: &Arc<Inner<B>>,
    seq: u64,
    live: &Arc<LiveWorkers>,
) -> Result<PoolSlot<PoolRef<B>>, Error> {
    let weak = Arc::downgrade(inner);
    let broken = BrokenSignal::new(Arc::new(move |reason: &str| {
        if let Some(inner) = weak.upgrade() {
            inner.pool_broken(seq, reason);
        }
    }));
    let ctx = PoolContext {
        seq,
        workers: inner.config.workers_per_pool,
        name_prefix: inner.config.name_prefix.clone(),
        broken,
        live: live.clone(),
    };
    let pool = contain(|| inner.backend.create_pool(ctx)).unwrap_or_else(|message| {
        Err(Error::Broken(format!(
            "the {} backend panicked while creating pool {seq}: {message}",
            inner.backend.name()
        )))
    })?;
    Ok(PoolSlot {
        seq,
        pool: Arc::new(pool),
    })
}
