//! A custom backend in about 150 lines: every job runs on a brand-new OS
//! thread, at most `workers_per_pool` at a time per pool. Useful for code
//! that leaves thread-local state behind (legacy C libraries, per-thread
//! caches): no job ever sees another job's thread.
//!
//! Run with `cargo run --example custom_backend`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use leasepool::{
    BackendPool, BrokenFlag, Error, ExecutorBackend, LeasedExecutorManager, LocalBackend,
    PoolContext, Task,
};

/// The backend: stateless; all the state is per pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct FreshThreadBackend;

/// One pool: a queue and a count of running job threads.
#[derive(Debug)]
pub(crate) struct FreshThreadPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ctx: PoolContext,
    state: Mutex<State>,
    broken: BrokenFlag, // reports once; later tasks fail with its error
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Task>,
    running: usize,
    closed: bool,
    spawned: usize,
}

impl ExecutorBackend for FreshThreadBackend {
    type Pool = FreshThreadPool;

    fn name(&self) -> &'static str {
        "fresh-thread"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<FreshThreadPool, Error> {
        // Threads are started per job, so creating a pool cannot fail.
        let (state, broken) = (
            Mutex::new(State::default()),
            BrokenFlag::new(ctx.broken_signal()),
        );
        Ok(FreshThreadPool {
            shared: Arc::new(Shared { ctx, state, broken }),
        })
    }
}

// Jobs are closures run in this process, so leases offer submit and run.
impl LocalBackend for FreshThreadBackend {}

impl BackendPool for FreshThreadPool {
    fn execute(&self, task: Task) {
        if let Some(error) = self.shared.broken.error() {
            return task.fail(error);
        }
        let mut state = self.shared.lock();
        if state.closed {
            return; // dropping the task reports it cancelled
        }
        if state.running < self.shared.ctx.workers() {
            state.running += 1;
            let name = self.shared.ctx.worker_name(state.spawned);
            state.spawned += 1;
            drop(state);
            Shared::spawn(&self.shared, name, task);
        } else {
            state.queue.push_back(task);
        }
    }

    fn shutdown(&self) {
        // Never blocks: queued tasks are dropped (cancelled) outside the
        // lock, running ones finish on their own threads.
        let mut state = self.shared.lock();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        drop(queued);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `task` on a new thread; when it ends, that thread starts the
    /// next queued task on another new thread.
    fn spawn(shared: &Arc<Shared>, name: String, task: Task) {
        let guard = shared.ctx.worker_guard(); // stop() waits for it
        let me = shared.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let _guard = guard;
            task.run(); // catches panics: the caller gets Error::Panicked
            let mut state = me.lock();
            state.running -= 1;
            if state.closed {
                return;
            }
            if let Some(next) = state.queue.pop_front() {
                state.running += 1;
                let name = me.ctx.worker_name(state.spawned);
                state.spawned += 1;
                drop(state);
                Shared::spawn(&me, name, next);
            }
        });
        if let Err(e) = spawned {
            // The task moved into the failed closure and was dropped
            // (cancelled); the pool cannot run work any more.
            shared.lock().running -= 1;
            shared.broken.set(format!("cannot spawn a thread: {e}"));
        }
    }
}

fn main() -> Result<(), Error> {
    let manager = LeasedExecutorManager::builder(FreshThreadBackend)
        .max_pools(1)
        .workers_per_pool(2)
        .name_prefix("fresh")
        .build()?;
    manager.start_blocking()?;
    let lease = manager.acquire().owner("custom-backend-demo").blocking()?;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            lease.submit(move || format!("job {i} ran on {:?}", std::thread::current().name()))
        })
        .collect::<Result<_, _>>()?;
    for handle in handles {
        println!("{}", handle.wait()?);
    }
    drop(lease);
    println!(
        "backend: {}, pools: {}",
        manager.backend_name(),
        manager.total_count()
    );
    manager.stop_blocking();
    Ok(())
}
