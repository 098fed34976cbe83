//! `ThreadPool`: the job queue shared by one pool's worker threads.

use std::fmt;
use std::sync::Arc;

use leasepool_core::{BackendPool, BrokenFlag, Error, PoolContext, Task};

use crate::ThreadBackend;
use crate::queue::JobQueue;
use crate::worker;

/// State shared by a pool's handle and its workers.
#[derive(Debug)]
pub(crate) struct PoolShared {
    /// The jobs waiting for a worker.
    pub(crate) queue: JobQueue,
    /// Set once when the pool breaks (reported once); later jobs fail with
    /// its error.
    pub(crate) broken: BrokenFlag,
}

/// One pool of the thread backend.
pub struct ThreadPool {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("broken", &self.shared.broken.reason())
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    pub(crate) fn spawn(backend: &ThreadBackend, ctx: &PoolContext) -> Result<Self, Error> {
        let shared = Arc::new(PoolShared {
            queue: JobQueue::default(),
            broken: BrokenFlag::new(ctx.broken_signal()),
        });
        let pool = ThreadPool {
            shared: shared.clone(),
        };
        for index in 0..ctx.workers() {
            let mut builder = std::thread::Builder::new().name(ctx.worker_name(index));
            if let Some(bytes) = backend.stack_size {
                builder = builder.stack_size(bytes);
            }
            let worker = worker::Worker {
                shared: shared.clone(),
                initializer: backend.initializer.clone(),
                guard: ctx.worker_guard(),
            };
            if let Err(e) = builder.spawn(move || worker.run()) {
                pool.shutdown();
                return Err(Error::Broken(format!(
                    "cannot spawn worker thread {index}: {e}"
                )));
            }
        }
        Ok(pool)
    }
}

impl BackendPool for ThreadPool {
    fn execute(&self, task: Task) {
        if let Some(error) = self.shared.broken.error() {
            task.fail(error);
            return;
        }
        // Once shut down the task comes back: dropping it cancels it.
        let _ = self.shared.queue.push(task);
    }

    fn shutdown(&self) {
        // Cancel what is still queued now (or fail it, if the pool broke),
        // rather than when a busy worker gets to it; idle workers wake and
        // exit, busy ones after their current job.
        for task in self.shared.queue.close() {
            match self.shared.broken.error() {
                Some(error) => task.fail(error),
                None => drop(task),
            }
        }
    }
}
