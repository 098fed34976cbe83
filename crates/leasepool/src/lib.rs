//! Borrow bounded executor capacity from async code.
//!
//! A [`LeasedExecutorManager`] owns a bounded set of executor pools and
//! lends them out as leases: a caller borrows one pool for a bounded time,
//! runs blocking or CPU-heavy work on it, and gives it back. You get
//! backpressure (FIFO waiting, fail-fast, timeouts), soft and hard expiry,
//! draining, broken-pool replacement, adaptive sizing and diagnostics in one
//! place, under tokio, smol, async-std or plain threads, without depending
//! on any of them.
//!
//! ```
//! use leasepool::{LeasedExecutorManager, ThreadBackend};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), leasepool::Error> {
//! futures_lite::future::block_on(async {
//!     let manager = LeasedExecutorManager::builder(ThreadBackend::new())
//!         .max_pools(2)
//!         .workers_per_pool(2)
//!         .default_lease(Duration::from_secs(30))
//!         .build()?;
//!     manager.start().await?;
//!
//!     let lease = manager.acquire().owner("docs").await?;
//!     let shout = lease.run(|| "hello leasepool".to_uppercase()).await?;
//!     assert_eq!(shout, "HELLO LEASEPOOL");
//!     lease.release().await;
//!
//!     manager.stop().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Guarantees in the types
//!
//! A leased executor can submit work and nothing else: there is no way to
//! shut the pool down through it.
//!
//! ```compile_fail
//! fn try_to_shut_down(executor: leasepool::LeasedExecutor) {
//!     executor.shutdown(); // no such method
//! }
//! ```
//!
//! Managers, leases, executors and the futures they return can cross
//! threads, so they work on multi-threaded runtimes:
//!
//! ```
//! use leasepool::{ExecutorLease, JobHandle, LeasedExecutor, LeasedExecutorManager};
//!
//! fn send_sync<T: Send + Sync + 'static>() {}
//! fn send<T: Send>(_: &T) {}
//!
//! send_sync::<LeasedExecutorManager>();
//! send_sync::<ExecutorLease>();
//! send_sync::<LeasedExecutor>();
//! let manager = LeasedExecutorManager::builder(leasepool::ThreadBackend::new())
//!     .max_pools(1)
//!     .build()
//!     .unwrap();
//! send(&manager.start());
//! send(&std::future::IntoFuture::into_future(manager.acquire()));
//! send(&manager.stop());
//! fn handle_is_send(_: JobHandle<String>) {}
//! ```
//!
//! # Features
//!
//! - `thread` (default): [`ThreadBackend`], and `ThreadBackend` as the
//!   default backend parameter of every generic type here.
//! - `rayon`: `RayonBackend`: each pool is a `rayon::ThreadPool`, so
//!   parallel iterators inside a job run on the leased pool.
//! - `process`: [`process::ProcessBackend`]: worker processes running
//!   registered functions (`call`), with crash isolation and log forwarding.
//! - `serde`: `Serialize` for [`ManagerStats`], [`LeaseStats`] and
//!   [`ShutdownReport`]; durations are numbers of seconds.
//! - `tracing`: the library's records go through `tracing` with structured
//!   fields, and every job runs inside the span that was current when it
//!   was submitted (see [`observe`]).
//! - `metrics`: gauges, counters and histograms named `leasepool_*`
//!   through the `metrics` facade, labelled by `name_prefix` (see
//!   [`observe::metric`]).
//! - `conformance`: the backend conformance suite, for authors of custom
//!   backends.
//! - `full`: all of the above but `conformance`.
//!
//! [`BackendKind`] and [`AnyBackend`] choose among the compiled-in backends
//! at run time.
//!
//! # When not to use this
//!
//! For one-off blocking calls where nobody needs a bound, expiry or
//! diagnostics, your runtime's `spawn_blocking` (or the `blocking` crate)
//! is simpler. leasepool is not a distributed task queue: no persistence,
//! no retries, no remote workers.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub use leasepool_core::{
    BackendPool, BrokenFlag, BrokenSignal, CallData, CallFn, Error, ExecutorBackend, GrinderStats,
    JobHandle, LOG_TARGET, LaneStats, LeaseEnd, LeaseId, LeaseStats, LocalBackend, ManagerConfig,
    ManagerCounters, ManagerStats, OwnerLimit, OwnerStats, PoolContext, Priority, RemoteCall, Run,
    ShutdownReport, StopMode, Task, WorkerGuard, drop_panic_payload, function_name, panic_message,
};

/// Validation helpers for custom backends' `check_config`; see
/// [`leasepool_core::validate`].
pub use leasepool_core::validate;

#[cfg(feature = "thread")]
#[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
pub use leasepool_thread::{ThreadBackend, ThreadPool};

#[cfg(feature = "rayon")]
#[cfg_attr(docsrs, doc(cfg(feature = "rayon")))]
pub use leasepool_rayon::{RayonBackend, RayonPool};

/// The process backend (feature `process`): worker processes running
/// registered functions, with crash isolation and log forwarding.
///
/// `init(Registry::new().register(f)...)` must be the first call in `main`:
/// in a worker process it serves jobs and exits, in the parent it returns.
/// See [`leasepool_process`] and `docs/backends.md`.
#[cfg(feature = "process")]
#[cfg_attr(docsrs, doc(cfg(feature = "process")))]
pub mod process {
    pub use leasepool_process::{ProcessBackend, ProcessLogging, ProcessPool, Registry, init};
}

/// Watching a manager: events, state snapshots and the context a job
/// carries from its submitter to its worker.
///
/// Every manager reports to one [`Observer`](observe::Observer). The
/// default writes events through `log` (target [`LOG_TARGET`]); with the
/// `tracing` and `metrics` features, leasepool's backends use the
/// observers of those features instead
/// ([`observer_for`](observe::observer_for)). A custom backend can return
/// `observer_for(config)` from `ExecutorBackend::observer`, and
/// `ManagerBuilder::observer` sets any observer.
///
/// Records with no manager to report to (a panic contained in a waker or
/// in a dropped job value, a panicking size provider) and the backends' own
/// records (the process backend's worker recycling and kills) always go
/// through `log`. `docs/observability.md` has the levels, fields and metric names.
///
/// An observer of your own:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use leasepool::observe::{Event, Level, Observer};
/// use leasepool::{LeasedExecutorManager, ThreadBackend};
///
/// #[derive(Default)]
/// struct Names(Mutex<Vec<&'static str>>);
///
/// impl Observer for Names {
///     fn max_level(&self) -> Option<Level> {
///         Some(Level::Debug)
///     }
///     fn event(&self, event: &Event) {
///         self.0.lock().unwrap().push(event.name());
///     }
/// }
///
/// let names = Arc::new(Names::default());
/// let manager = LeasedExecutorManager::builder(ThreadBackend::new())
///     .max_pools(1)
///     .observer(names.clone())
///     .build()?;
/// manager.start_blocking()?;
/// drop(manager.acquire().blocking()?);
/// manager.stop_blocking();
/// assert_eq!(
///     *names.0.lock().unwrap(),
///     ["created", "started", "leased", "finalised", "stopped"]
/// );
/// # Ok::<(), leasepool::Error>(())
/// ```
pub mod observe {
    pub use leasepool_core::observe::*;
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub use leasepool_observe::TracingObserver;
    pub use leasepool_observe::observer_for;
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub use leasepool_observe::{MetricsObserver, metric};
}

mod any;
mod kind;

/// The backend conformance suite (feature `conformance`); see
/// [`leasepool_core::conformance`].
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub use leasepool_core::{backend_conformance_tests, conformance};

pub use any::{AnyBackend, AnyPool};
pub use kind::BackendKind;

#[cfg(feature = "thread")]
#[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
mod defaults {
    use super::ThreadBackend;

    /// Owns a bounded set of executor pools and lends them out as leases.
    /// See [`leasepool_core::LeasedExecutorManager`].
    pub type LeasedExecutorManager<B = ThreadBackend> = leasepool_core::LeasedExecutorManager<B>;
    /// Configures a manager. See [`leasepool_core::ManagerBuilder`].
    pub type ManagerBuilder<B = ThreadBackend> = leasepool_core::ManagerBuilder<B>;
    /// A lease request. See [`leasepool_core::Acquire`].
    pub type Acquire<'a, B = ThreadBackend> = leasepool_core::Acquire<'a, B>;
    /// The future of a lease request. See [`leasepool_core::AcquireFuture`].
    pub type AcquireFuture<B = ThreadBackend> = leasepool_core::AcquireFuture<B>;
    /// A lease on one pool. See [`leasepool_core::ExecutorLease`].
    pub type ExecutorLease<B = ThreadBackend> = leasepool_core::ExecutorLease<B>;
    /// The submit-only proxy of a lease. See [`leasepool_core::LeasedExecutor`].
    pub type LeasedExecutor<B = ThreadBackend> = leasepool_core::LeasedExecutor<B>;
    /// Batches small submissions into leased pools. See [`leasepool_core::WorkGrinder`].
    pub type WorkGrinder<B = ThreadBackend> = leasepool_core::WorkGrinder<B>;
    /// Configures a grinder. See [`leasepool_core::GrinderBuilder`].
    pub type GrinderBuilder<B = ThreadBackend> = leasepool_core::GrinderBuilder<B>;
}

#[cfg(feature = "thread")]
#[cfg_attr(docsrs, doc(cfg(feature = "thread")))]
pub use defaults::*;

#[cfg(not(feature = "thread"))]
pub use leasepool_core::{
    Acquire, AcquireFuture, ExecutorLease, GrinderBuilder, LeasedExecutor, LeasedExecutorManager,
    ManagerBuilder, WorkGrinder,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
