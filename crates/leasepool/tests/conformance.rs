//! The backend conformance suite, run against the custom backend of
//! `examples/custom_backend.rs` and against both backends through
//! `AnyBackend`.

#[allow(dead_code)]
#[path = "../../../examples/custom_backend.rs"]
mod example;

mod custom {
    leasepool::backend_conformance_tests!(make: || super::example::FreshThreadBackend);
}

mod any_thread {
    use leasepool::{AnyBackend, BackendKind};

    fn make() -> AnyBackend {
        AnyBackend::from_kind(BackendKind::Thread).expect("thread is compiled in")
    }

    leasepool::backend_conformance_tests!(make: make);
}

mod any_rayon {
    use leasepool::{AnyBackend, BackendKind};

    fn make() -> AnyBackend {
        AnyBackend::from_kind(BackendKind::Rayon).expect("rayon is compiled in")
    }

    leasepool::backend_conformance_tests!(make: make);
}
