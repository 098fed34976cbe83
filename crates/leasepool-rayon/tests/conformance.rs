//! The backend conformance suite, run against the rayon backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use leasepool_rayon::RayonBackend;

/// A rayon backend whose first worker initializer fails.
fn breaking() -> RayonBackend {
    let failed = Arc::new(AtomicBool::new(false));
    RayonBackend::new().initializer(move || {
        if failed.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err("the first initializer fails")
        }
    })
}

leasepool_core::backend_conformance_tests!(make: RayonBackend::new, breaking: breaking);
