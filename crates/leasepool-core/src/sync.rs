//! The primitives of the hand-written wake-up paths (a job's result cell,
//! an acquirer's wake slot), swapped for loom's when the crate is built for
//! model checking:
//!
//! ```sh
//! RUSTFLAGS="--cfg leasepool_loom" cargo test -p leasepool-core --lib --release loom
//! ```
//!
//! A crate-specific cfg rather than the usual `loom`, so that dependencies
//! with loom support of their own are built as usual.

#[cfg(not(leasepool_loom))]
pub(crate) use std::sync::atomic::AtomicU8;
#[cfg(not(leasepool_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(leasepool_loom)]
pub(crate) use loom::sync::atomic::AtomicU8;
#[cfg(leasepool_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Parking the current thread.
pub(crate) mod thread {
    #[cfg(not(leasepool_loom))]
    pub(crate) use std::thread::{Thread, current, park, park_timeout};

    #[cfg(leasepool_loom)]
    pub(crate) use loom::thread::{Thread, current, park};

    /// loom has no timed park; the models never wait with a deadline.
    #[cfg(leasepool_loom)]
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {
        park();
    }
}
