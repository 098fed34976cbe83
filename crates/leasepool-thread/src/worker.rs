//! The loop each worker thread runs.

use std::sync::Arc;

use leasepool_core::{WorkerGuard, WorkerInitializer};

use crate::pool::PoolShared;

pub(crate) struct Worker {
    pub(crate) shared: Arc<PoolShared>,
    pub(crate) initializer: Option<WorkerInitializer>,
    pub(crate) guard: WorkerGuard,
}

/// Breaks the pool if the worker thread unwinds outside a job.
///
/// A job cannot trigger it: `Task::run` and `Task::fail` never unwind
/// (a panic in the job, in its payload's or result's `Drop`, or in its
/// closure's `Drop` when it is cancelled, is caught inside them). Only a
/// failed initializer's unwinding or a bug in the worker itself reaches it.
struct DeathWatch<'a> {
    worker: &'a Worker,
}

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.worker
                .break_pool("a worker thread died outside a job".to_owned());
        }
    }
}

impl Worker {
    pub(crate) fn run(self) {
        {
            let _watch = DeathWatch { worker: &self };
            // A failed initializer breaks the pool; serve() then fails
            // every job instead of running it.
            self.initialize();
            self.serve();
        }
        // The guard drops last: stop() sees this worker gone only after it
        // is done with every task.
        drop(self.guard);
    }

    /// Runs the initializer; breaks the pool if it fails.
    fn initialize(&self) {
        if let Some(Err(reason)) = self.initializer.as_ref().map(WorkerInitializer::run) {
            self.break_pool(reason);
        }
    }

    fn break_pool(&self, reason: String) {
        self.shared.broken.set(reason);
    }

    /// Runs jobs until the queue closes. Once the pool is broken, jobs fail
    /// with `Error::Broken` instead of running. Neither unwinds, whatever
    /// the job does.
    fn serve(&self) {
        while let Some(task) = self.shared.queue.pop() {
            match self.shared.broken.error() {
                Some(error) => task.fail(error),
                None => task.run(),
            }
        }
    }
}
