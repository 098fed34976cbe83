//! `ThreadPool`: the job queue shared by one pool's worker threads.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crossbeam_channel::{Receiver, Sender, unbounded};
use leasepool_core::{BackendPool, Error, PoolContext, Task};

use crate::ThreadBackend;
use crate::worker;

/// State shared by a pool's handle and its workers.
#[derive(Debug, Default)]
pub(crate) struct PoolShared {
    /// Set by `shutdown`: workers drop (cancel) the jobs still queued.
    pub(crate) closed: AtomicBool,
    /// Set once when the pool breaks; later jobs fail with this reason.
    pub(crate) broken: OnceLock<String>,
}

impl PoolShared {
    pub(crate) fn broken_error(&self) -> Option<Error> {
        self.broken
            .get()
            .map(|reason| Error::Broken(reason.clone()))
    }
}

/// One pool of the thread backend.
pub struct ThreadPool {
    /// `None` once shut down: the workers see the queue disconnect.
    sender: Mutex<Option<Sender<Task>>>,
    /// The pool's own end of the queue, to cancel queued jobs at shutdown
    /// without waiting for a worker to reach them.
    receiver: Receiver<Task>,
    shared: Arc<PoolShared>,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .field("broken", &self.shared.broken.get())
            .finish()
    }
}

impl ThreadPool {
    pub(crate) fn spawn(backend: &ThreadBackend, ctx: &PoolContext) -> Result<Self, Error> {
        let (sender, receiver) = unbounded::<Task>();
        let shared = Arc::new(PoolShared::default());
        let pool = ThreadPool {
            sender: Mutex::new(Some(sender)),
            receiver: receiver.clone(),
            shared: shared.clone(),
        };
        for index in 0..ctx.workers() {
            let mut builder = std::thread::Builder::new().name(ctx.worker_name(index));
            if let Some(bytes) = backend.stack_size {
                builder = builder.stack_size(bytes);
            }
            let worker = worker::Worker {
                receiver: receiver.clone(),
                shared: shared.clone(),
                initializer: backend.initializer.clone(),
                broken: ctx.broken_signal(),
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
        if let Some(error) = self.shared.broken_error() {
            task.fail(error);
            return;
        }
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = &*sender {
            // An unbounded send never blocks. It fails only when every
            // worker is gone; the task is then dropped, i.e. cancelled.
            let _ = sender.send(task);
        }
        // Shut down: dropping the task cancels it.
    }

    fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(sender);
        // Cancel what is still queued now (or fail it, if the pool broke),
        // rather than when a busy worker gets to it.
        while let Ok(task) = self.receiver.try_recv() {
            match self.shared.broken_error() {
                Some(error) => task.fail(error),
                None => drop(task),
            }
        }
    }
}
