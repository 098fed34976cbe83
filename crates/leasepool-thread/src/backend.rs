//! `ThreadBackend`: options, and pool creation.

use std::fmt;

use leasepool_core::{
    Error, ExecutorBackend, LocalBackend, PoolContext, WorkerInitializer, validate,
};

use crate::pool::ThreadPool;

/// Runs each pool as a fixed set of OS threads.
///
/// ```
/// use leasepool_thread::ThreadBackend;
///
/// let backend = ThreadBackend::new()
///     .stack_size(512 * 1024)
///     .initializer(|| {
///         // open a connection, warm a cache, ...
///         Ok::<(), std::io::Error>(())
///     });
/// # let _ = backend;
/// ```
#[derive(Clone, Default)]
pub struct ThreadBackend {
    pub(crate) stack_size: Option<usize>,
    pub(crate) initializer: Option<WorkerInitializer>,
}

impl fmt::Debug for ThreadBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBackend")
            .field("stack_size", &self.stack_size)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

impl ThreadBackend {
    /// A backend with default options: the platform's default stack size,
    /// no initializer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stack size of each worker thread, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs `init` on each worker thread before it takes jobs. If it returns
    /// an error or panics, the pool is broken: its jobs fail with
    /// `Error::Broken` and the manager replaces it.
    pub fn initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(WorkerInitializer::new(init));
        self
    }
}

impl ExecutorBackend for ThreadBackend {
    type Pool = ThreadPool;

    fn name(&self) -> &'static str {
        "thread"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<ThreadPool, Error> {
        ThreadPool::spawn(self, &ctx)
    }

    /// The observer of leasepool-observe's enabled features (`tracing`,
    /// `metrics`), if any.
    fn observer(
        &self,
        config: &leasepool_core::ManagerConfig,
    ) -> Option<std::sync::Arc<dyn leasepool_core::observe::Observer>> {
        leasepool_observe::observer_for(config)
    }

    fn check_config(&self, _config: &leasepool_core::ManagerConfig) -> Result<(), Error> {
        if let Some(bytes) = self.stack_size {
            validate::positive("stack_size", bytes)?;
        }
        Ok(())
    }
}

impl LocalBackend for ThreadBackend {}
