//! The backend conformance suite, run against the thread backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use leasepool_thread::ThreadBackend;

/// A thread backend whose first worker initializer fails.
fn breaking() -> ThreadBackend {
    let failed = Arc::new(AtomicBool::new(false));
    ThreadBackend::new().initializer(move || {
        if failed.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err("the first initializer fails")
        }
    })
}

leasepool_core::backend_conformance_tests!(make: ThreadBackend::new, breaking: breaking);
