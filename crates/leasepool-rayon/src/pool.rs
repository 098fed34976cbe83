//! `RayonPool`: one `rayon_core::ThreadPool` and its shutdown state.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use leasepool_core::{
    BackendPool, BrokenFlag, Error, LOG_TARGET, PoolContext, Task, WorkerGuard, WorkerInitializer,
    drop_panic_payload, panic_message,
};
use rayon_core::{ThreadPool, ThreadPoolBuilder};

use crate::RayonBackend;

#[derive(Debug)]
struct Shared {
    /// Set by `shutdown`: jobs still queued are dropped (cancelled).
    closed: AtomicBool,
    /// Set once when the pool breaks; reported once.
    broken: BrokenFlag,
    /// Tasks wait here, in order; each `spawn`ed rayon job takes the oldest.
    /// Shutdown empties it at once, so queued jobs are cancelled promptly
    /// even while every rayon thread is busy. (A plain locked deque: two
    /// uncontended lock round trips per task, where a channel cost several
    /// times that.)
    tasks: Mutex<VecDeque<Task>>,
}

impl Shared {
    fn tasks(&self) -> std::sync::MutexGuard<'_, VecDeque<Task>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One pool of the rayon backend.
pub struct RayonPool {
    /// `None` once shut down; dropping the `ThreadPool` lets its threads
    /// exit after the queued (now cancelled) jobs are drained.
    pool: Mutex<Option<ThreadPool>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for RayonPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RayonPool")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .field("broken", &self.shared.broken.reason())
            .finish()
    }
}

impl RayonPool {
    pub(crate) fn build(backend: &RayonBackend, ctx: &PoolContext) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            broken: BrokenFlag::new(ctx.broken_signal()),
            tasks: Mutex::new(VecDeque::new()),
        });
        // One guard per worker thread, dropped by the exit handler: stop()
        // waits until every thread has run its exit handler.
        let guards: Arc<Mutex<Vec<WorkerGuard>>> = Arc::new(Mutex::new(
            (0..ctx.workers()).map(|_| ctx.worker_guard()).collect(),
        ));
        let names: Vec<String> = (0..ctx.workers()).map(|i| ctx.worker_name(i)).collect();

        let mut builder = ThreadPoolBuilder::new()
            .num_threads(ctx.workers())
            .thread_name(move |i| {
                names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("rayon-{i}"))
            })
            // Task::run and Task::fail never unwind (a job's panics, even
            // from a Drop, end in its outcome), so no job reaches this; a
            // panicking start or exit handler can. It logs rather than
            // abort, and the pool carries on.
            .panic_handler(|payload| {
                log::error!(
                    target: LOG_TARGET,
                    "a panic escaped a rayon job: {}",
                    panic_message(payload.as_ref())
                );
                // rayon aborts the process if its panic handler unwinds.
                drop_panic_payload(payload);
            });
        if let Some(bytes) = backend.stack_size {
            builder = builder.stack_size(bytes);
        }
        let start = backend.start_handler.clone();
        let init = backend.initializer.clone();
        let start_shared = shared.clone();
        builder = builder.start_handler(move |index| {
            if let Some(handler) = &start {
                handler(index);
            }
            if let Some(init) = &init {
                initialize(init, &start_shared);
            }
        });
        let exit = backend.exit_handler.clone();
        let exit_guards = guards.clone();
        builder = builder.exit_handler(move |index| {
            if let Some(handler) = &exit {
                handler(index);
            }
            exit_guards
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
        });
        let pool = builder
            .build()
            .map_err(|e| Error::Broken(format!("cannot build the rayon thread pool: {e}")))?;
        Ok(RayonPool {
            pool: Mutex::new(Some(pool)),
            shared,
        })
    }
}

fn initialize(init: &WorkerInitializer, shared: &Shared) {
    if let Err(reason) = init.run() {
        shared.broken.set(reason);
    }
}

impl BackendPool for RayonPool {
    fn execute(&self, task: Task) {
        let guard = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pool) = &*guard else {
            return; // shut down: dropping the task cancels it
        };
        // Queued under the pool's lock: `shutdown`, which takes the pool
        // first, then finds every task queued before it.
        self.shared.tasks().push_back(task);
        let shared = self.shared.clone();
        // This closure runs on a library thread; nothing in it unwinds:
        // running, failing or dropping a task is guarded against the job.
        pool.spawn(move || {
            let Some(task) = shared.tasks().pop_front() else {
                return; // taken by shutdown
            };
            if let Some(error) = shared.broken.error() {
                task.fail(error);
            } else if shared.closed.load(Ordering::Acquire) {
                drop(task);
            } else {
                task.run();
            }
        });
    }

    fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        // Dropping a rayon ThreadPool never blocks: its threads finish the
        // running jobs and exit.
        let pool = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(pool);
        let queued = std::mem::take(&mut *self.shared.tasks());
        // Outside the lock: failing or dropping a task tells its caller.
        for task in queued {
            match self.shared.broken.error() {
                Some(error) => task.fail(error),
                None => drop(task),
            }
        }
    }
}
