//! The thread backend of [leasepool](https://docs.rs/leasepool): each pool
//! is a fixed set of OS threads sharing one job queue.
//!
//! Workers are named `{name_prefix}-{pool}_{worker}`. A job that panics
//! fails with `Error::Panicked` and its worker keeps serving. A pool is
//! *broken* when a worker initializer fails (returns an error or panics) or
//! a worker thread dies outside a job; its queued and later jobs then fail
//! with `Error::Broken` and the manager replaces it.
//!
//! A thread cannot be killed from outside: a job still running when its
//! lease is revoked runs to completion on its (now retired) thread.
//!
//! ```
//! use leasepool_core::LeasedExecutorManager;
//! use leasepool_thread::ThreadBackend;
//!
//! # fn main() -> Result<(), leasepool_core::Error> {
//! let manager = LeasedExecutorManager::builder(ThreadBackend::new())
//!     .max_pools(1)
//!     .workers_per_pool(2)
//!     .build()?;
//! manager.start_blocking()?;
//! let lease = manager.acquire().owner("docs").blocking()?;
//! assert_eq!(lease.submit(|| 21 * 2)?.wait()?, 42);
//! drop(lease);
//! manager.stop_blocking();
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod backend;
mod pool;
mod queue;
mod worker;

pub use backend::ThreadBackend;
pub use pool::ThreadPool;
