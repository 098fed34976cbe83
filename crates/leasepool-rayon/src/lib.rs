//! The rayon backend of [leasepool](https://docs.rs/leasepool): each pool is
//! one [`rayon_core::ThreadPool`] of `workers_per_pool` threads, named
//! `{name_prefix}-{pool}_{worker}`.
//!
//! A job runs *inside* its leased pool, so `par_iter()`, `rayon::join` and
//! `rayon::scope` called from the job use the leased pool's threads, never
//! rayon's global pool. A job that panics fails with `Error::Panicked`; the
//! pool and the process carry on. A pool is broken when a worker initializer
//! fails; its jobs then fail with `Error::Broken` and the manager replaces
//! it.
//!
//! ```
//! use leasepool_core::LeasedExecutorManager;
//! use leasepool_rayon::RayonBackend;
//! use rayon::prelude::*;
//!
//! # fn main() -> Result<(), leasepool_core::Error> {
//! let manager = LeasedExecutorManager::builder(RayonBackend::new())
//!     .max_pools(1)
//!     .workers_per_pool(2)
//!     .name_prefix("crunch")
//!     .build()?;
//! manager.start_blocking()?;
//! let lease = manager.acquire().blocking()?;
//! let sum = lease
//!     .submit(|| (1..=1000u64).into_par_iter().map(|x| x * x).sum::<u64>())?
//!     .wait()?;
//! assert_eq!(sum, 333_833_500);
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

pub use backend::RayonBackend;
pub use pool::RayonPool;
