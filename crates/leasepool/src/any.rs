//! `AnyBackend`: one backend type whose kind is chosen at run time.

// With no backend feature the enums are empty and the arguments unused.
#![cfg_attr(
    not(any(feature = "thread", feature = "rayon")),
    allow(unused_variables)
)]

use std::fmt;

use leasepool_core::{
    BackendPool, Error, ExecutorBackend, LocalBackend, ManagerConfig, PoolContext, Task,
};

use crate::BackendKind;

/// One backend type for every compiled-in backend, so a service can pick
/// its backend from configuration at run time:
///
/// ```
/// use leasepool::{AnyBackend, BackendKind, LeasedExecutorManager};
///
/// # fn main() -> Result<(), leasepool::Error> {
/// let kind: BackendKind = std::env::var("POOL_BACKEND")
///     .unwrap_or_else(|_| "thread".to_owned())
///     .parse()?;
/// let manager: LeasedExecutorManager<AnyBackend> =
///     LeasedExecutorManager::builder(AnyBackend::from_kind(kind)?)
///         .max_pools(2)
///         .build()?;
/// manager.start_blocking()?;
/// let lease = manager.acquire().blocking()?;
/// assert_eq!(lease.submit(|| 1 + 1)?.wait()?, 2);
/// drop(lease);
/// manager.stop_blocking();
/// # Ok(())
/// # }
/// ```
///
/// Each variant holds the backend with its own options; build one directly
/// (`AnyBackend::Thread(ThreadBackend::new().stack_size(..))`) to set them.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyBackend {
    /// The thread backend.
    #[cfg(feature = "thread")]
    #[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
    Thread(crate::ThreadBackend),
    /// The rayon backend.
    #[cfg(feature = "rayon")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rayon")))]
    Rayon(crate::RayonBackend),
    /// The process backend: `call` works, `submit`/`run` fail with
    /// [`Error::UnsupportedBackend`] (a closure cannot cross a process
    /// boundary).
    #[cfg(feature = "process")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process")))]
    Process(crate::process::ProcessBackend),
}

impl fmt::Debug for AnyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            #[cfg(feature = "thread")]
            AnyBackend::Thread(ref backend) => f.debug_tuple("Thread").field(backend).finish(),
            #[cfg(feature = "rayon")]
            AnyBackend::Rayon(ref backend) => f.debug_tuple("Rayon").field(backend).finish(),
            #[cfg(feature = "process")]
            AnyBackend::Process(ref backend) => f.debug_tuple("Process").field(backend).finish(),
            #[allow(unreachable_patterns)]
            _ => f.write_str("AnyBackend"),
        }
    }
}

impl AnyBackend {
    /// The backend of `kind` with default options, or
    /// [`Error::UnsupportedBackend`] if its feature is off.
    pub fn from_kind(kind: BackendKind) -> Result<Self, Error> {
        match kind.require()? {
            #[cfg(feature = "thread")]
            BackendKind::Thread => Ok(AnyBackend::Thread(crate::ThreadBackend::new())),
            #[cfg(feature = "rayon")]
            BackendKind::Rayon => Ok(AnyBackend::Rayon(crate::RayonBackend::new())),
            #[cfg(feature = "process")]
            BackendKind::Process => Ok(AnyBackend::Process(crate::process::ProcessBackend::new())),
            #[allow(unreachable_patterns)]
            other => Err(Error::UnsupportedBackend(format!(
                "the {other} backend cannot be selected through AnyBackend in this build"
            ))),
        }
    }

    /// Sets log forwarding from configuration that does not know the
    /// backend kind in advance: on the process backend this is
    /// [`ProcessBackend::logging`](crate::process::ProcessBackend::logging);
    /// on any other backend, enabled forwarding (records or stderr) is
    /// [`Error::InvalidConfig`] (there are no worker processes to forward
    /// from), and disabled forwarding is accepted.
    ///
    /// ```
    /// use leasepool::process::ProcessLogging;
    /// use leasepool::{AnyBackend, BackendKind, Error};
    ///
    /// let forward = ProcessLogging::new().enabled(true);
    /// let process = AnyBackend::from_kind(BackendKind::Process)?.logging(forward.clone());
    /// assert!(process.is_ok());
    /// if BackendKind::Thread.is_compiled_in() {
    ///     let thread = AnyBackend::from_kind(BackendKind::Thread)?.logging(forward);
    ///     assert!(matches!(thread, Err(Error::InvalidConfig { field: "logging", .. })));
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    #[cfg(feature = "process")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process")))]
    pub fn logging(self, logging: crate::process::ProcessLogging) -> Result<Self, Error> {
        match self {
            AnyBackend::Process(backend) => Ok(AnyBackend::Process(backend.logging(logging))),
            #[allow(unreachable_patterns)]
            other if logging.is_enabled() => Err(Error::InvalidConfig {
                field: "logging",
                reason: format!(
                    "log forwarding needs worker processes: the {} backend has none \
                     (choose the process backend, or leave forwarding off)",
                    other.kind()
                ),
            }),
            #[allow(unreachable_patterns)]
            other => Ok(other),
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> BackendKind {
        match *self {
            #[cfg(feature = "thread")]
            AnyBackend::Thread(_) => BackendKind::Thread,
            #[cfg(feature = "rayon")]
            AnyBackend::Rayon(_) => BackendKind::Rayon,
            #[cfg(feature = "process")]
            AnyBackend::Process(_) => BackendKind::Process,
        }
    }
}

/// A pool of an [`AnyBackend`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyPool {
    /// A thread-backend pool.
    #[cfg(feature = "thread")]
    Thread(crate::ThreadPool),
    /// A rayon-backend pool.
    #[cfg(feature = "rayon")]
    Rayon(crate::RayonPool),
    /// A process-backend pool.
    #[cfg(feature = "process")]
    Process(crate::process::ProcessPool),
}

impl ExecutorBackend for AnyBackend {
    type Pool = AnyPool;

    fn name(&self) -> &'static str {
        match *self {
            #[cfg(feature = "thread")]
            AnyBackend::Thread(ref backend) => backend.name(),
            #[cfg(feature = "rayon")]
            AnyBackend::Rayon(ref backend) => backend.name(),
            #[cfg(feature = "process")]
            AnyBackend::Process(ref backend) => backend.name(),
        }
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<AnyPool, Error> {
        match *self {
            #[cfg(feature = "thread")]
            AnyBackend::Thread(ref backend) => backend.create_pool(ctx).map(AnyPool::Thread),
            #[cfg(feature = "rayon")]
            AnyBackend::Rayon(ref backend) => backend.create_pool(ctx).map(AnyPool::Rayon),
            #[cfg(feature = "process")]
            AnyBackend::Process(ref backend) => backend.create_pool(ctx).map(AnyPool::Process),
        }
    }

    /// The observer of leasepool-observe's enabled features (`tracing`,
    /// `metrics`), if any.
    fn observer(
        &self,
        config: &leasepool_core::ManagerConfig,
    ) -> Option<std::sync::Arc<dyn leasepool_core::observe::Observer>> {
        leasepool_observe::observer_for(config)
    }

    fn check_config(&self, config: &ManagerConfig) -> Result<(), Error> {
        match *self {
            #[cfg(feature = "thread")]
            AnyBackend::Thread(ref backend) => backend.check_config(config),
            #[cfg(feature = "rayon")]
            AnyBackend::Rayon(ref backend) => backend.check_config(config),
            #[cfg(feature = "process")]
            AnyBackend::Process(ref backend) => backend.check_config(config),
        }
    }
}

impl BackendPool for AnyPool {
    fn execute(&self, task: Task) {
        match *self {
            #[cfg(feature = "thread")]
            AnyPool::Thread(ref pool) => pool.execute(task),
            #[cfg(feature = "rayon")]
            AnyPool::Rayon(ref pool) => pool.execute(task),
            #[cfg(feature = "process")]
            AnyPool::Process(ref pool) => pool.execute(task),
        }
    }

    fn shutdown(&self) {
        match *self {
            #[cfg(feature = "thread")]
            AnyPool::Thread(ref pool) => pool.shutdown(),
            #[cfg(feature = "rayon")]
            AnyPool::Rayon(ref pool) => pool.shutdown(),
            #[cfg(feature = "process")]
            AnyPool::Process(ref pool) => pool.shutdown(),
        }
    }

    fn revoke(&self) {
        match *self {
            #[cfg(feature = "thread")]
            AnyPool::Thread(ref pool) => pool.revoke(),
            #[cfg(feature = "rayon")]
            AnyPool::Rayon(ref pool) => pool.revoke(),
            #[cfg(feature = "process")]
            AnyPool::Process(ref pool) => pool.revoke(),
        }
    }
}

impl LocalBackend for AnyBackend {}
