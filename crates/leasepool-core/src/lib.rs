//! The runtime-free core of [leasepool](https://docs.rs/leasepool).
//!
//! Most users depend on the `leasepool` facade crate, which re-exports
//! everything here together with the backends. This crate holds what does
//! not depend on how work runs:
//!
//! - the lease/pool **state machine** (private, in `state/`): idle pools,
//!   lease records, the first-come, first-served wait queue, the desired
//!   size, and every transition as a plain function of the current time;
//! - the [`LeasedExecutorManager`] that wraps it with one lock, a checker
//!   thread and the async surface ([`Acquire`], [`ExecutorLease`],
//!   [`LeasedExecutor`], [`JobHandle`]);
//! - the [`ExecutorBackend`] trait that thread, rayon, process and custom
//!   backends implement, with helpers for their authors ([`BrokenFlag`],
//!   [`validate`], [`drop_panic_payload`], [`LOG_TARGET`]);
//! - [`Error`] and the [`ManagerStats`] snapshot with its counters.
//!
//! No async runtime is a dependency: futures are woken through their own
//! `Waker`s (or `event-listener` where many may wait), and timers are the
//! checker thread's deadline.
//!
//! # Blocking twins
//!
//! Every async operation has a twin for plain threads, spelled with a
//! `_blocking` suffix on the manager and the grinder (`start_blocking`,
//! `stop_blocking`, `shutdown_blocking`, `submit_blocking`) and as a
//! `.blocking()` method on the `acquire()` builder; a `JobHandle` has
//! `wait` and `wait_timeout`. The twins are `block_on` of the async form:
//! one implementation of each wait. Do not call them from async code.
//!
//! # User code
//!
//! Closures, `Drop` impls, serde impls, size providers, initializers and
//! backends are user code. None of it runs under a leasepool lock, and
//! wherever it runs on a thread leasepool relies on (a worker, the checker,
//! the sizer, the grinder's dispatcher), a panic is caught and becomes an
//! outcome or a log record: it never loses a job's outcome or kills the
//! thread.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod acquire;
mod backend;
mod broken;
mod builder;
mod call;
mod checker;
mod config;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod contain;
mod error;
mod grinder;
mod id;
mod initializer;
mod job;
mod job_scope;
mod lease;
mod manager;
pub mod observe;
mod priority;
#[cfg(feature = "serde")]
mod serde_secs;
mod shutdown;
mod state;
mod stats;
mod sync;
mod task;
pub mod validate;
mod wait;

/// The `log` target of every record leasepool and its backends emit;
/// custom backends should log under it too.
pub const LOG_TARGET: &str = "leasepool";

#[cfg(all(test, leasepool_loom))]
mod loom_tests;

pub use acquire::{Acquire, AcquireFuture};
pub use backend::{BackendPool, ExecutorBackend, LocalBackend, PoolContext, WorkerGuard};
pub use broken::{BrokenFlag, BrokenSignal};
pub use builder::ManagerBuilder;
pub use call::{CallData, CallFn, RemoteCall, function_name};
pub use config::ManagerConfig;
pub use error::{Error, LeaseEnd, OwnerLimit, drop_panic_payload, panic_message};
pub use grinder::{GrinderBuilder, GrinderStats, StopMode, WorkGrinder};
pub use id::LeaseId;
pub use initializer::WorkerInitializer;
pub use job::JobHandle;
pub use lease::{ExecutorLease, LeasedExecutor, Run};
pub use manager::LeasedExecutorManager;
pub use priority::Priority;
pub use stats::{LaneStats, LeaseStats, ManagerCounters, ManagerStats, OwnerStats, ShutdownReport};
pub use task::Task;
