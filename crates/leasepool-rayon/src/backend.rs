//! `RayonBackend`: options, and pool creation.

use std::fmt;
use std::sync::Arc;

use leasepool_core::{
    Error, ExecutorBackend, LocalBackend, ManagerConfig, PoolContext, WorkerInitializer, validate,
};

use crate::pool::RayonPool;

type Handler = Arc<dyn Fn(usize) + Send + Sync>;

/// Runs each pool as a [`rayon_core::ThreadPool`].
///
/// ```
/// use leasepool_rayon::RayonBackend;
///
/// let backend = RayonBackend::new()
///     .stack_size(4 * 1024 * 1024)
///     .start_handler(|index| log::debug!("rayon worker {index} started"))
///     .exit_handler(|index| log::debug!("rayon worker {index} exiting"));
/// # let _ = backend;
/// ```
#[derive(Clone, Default)]
pub struct RayonBackend {
    pub(crate) stack_size: Option<usize>,
    pub(crate) initializer: Option<WorkerInitializer>,
    pub(crate) start_handler: Option<Handler>,
    pub(crate) exit_handler: Option<Handler>,
}

impl fmt::Debug for RayonBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RayonBackend")
            .field("stack_size", &self.stack_size)
            .field("initializer", &self.initializer.is_some())
            .field("start_handler", &self.start_handler.is_some())
            .field("exit_handler", &self.exit_handler.is_some())
            .finish()
    }
}

impl RayonBackend {
    /// A backend with rayon's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stack size of each worker thread, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs `init` on each worker thread when it starts. If it returns an
    /// error or panics, the pool is broken: its jobs fail with
    /// `Error::Broken` and the manager replaces it.
    pub fn initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(WorkerInitializer::new(init));
        self
    }

    /// Called on each worker thread when it starts, with its index in the
    /// pool (rayon's `start_handler`).
    pub fn start_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(usize) + Send + Sync + 'static,
    {
        self.start_handler = Some(Arc::new(handler));
        self
    }

    /// Called on each worker thread just before it exits, with its index
    /// (rayon's `exit_handler`).
    pub fn exit_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(usize) + Send + Sync + 'static,
    {
        self.exit_handler = Some(Arc::new(handler));
        self
    }
}

impl ExecutorBackend for RayonBackend {
    type Pool = RayonPool;

    fn name(&self) -> &'static str {
        "rayon"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<RayonPool, Error> {
        RayonPool::build(self, &ctx)
    }

    /// The observer of leasepool-observe's enabled features (`tracing`,
    /// `metrics`), if any.
    fn observer(
        &self,
        config: &leasepool_core::ManagerConfig,
    ) -> Option<std::sync::Arc<dyn leasepool_core::observe::Observer>> {
        leasepool_observe::observer_for(config)
    }

    fn check_config(&self, _config: &ManagerConfig) -> Result<(), Error> {
        if let Some(bytes) = self.stack_size {
            validate::positive("stack_size", bytes)?;
        }
        Ok(())
    }
}

impl LocalBackend for RayonBackend {}
