//! Backend selection: `BackendKind` parsing and `AnyBackend`, in whatever
//! feature combination this test is built with (CI runs it with the default
//! features, with `--no-default-features --features rayon`, and with
//! `--all-features`).

use leasepool::{AnyBackend, BackendKind, Error, LeasedExecutorManager};

fn compiled_in(kind: BackendKind) -> bool {
    (kind == BackendKind::Thread && cfg!(feature = "thread"))
        || (kind == BackendKind::Rayon && cfg!(feature = "rayon"))
        || (kind == BackendKind::Process && cfg!(feature = "process"))
}

#[test]
fn parsing_is_case_insensitive_and_respects_features() {
    for (text, kind) in [
        ("thread", BackendKind::Thread),
        ("THREAD", BackendKind::Thread),
        (" Rayon ", BackendKind::Rayon),
        ("rAyOn", BackendKind::Rayon),
        ("process", BackendKind::Process),
        ("Process", BackendKind::Process),
    ] {
        let parsed = text.parse::<BackendKind>();
        if compiled_in(kind) {
            assert_eq!(parsed, Ok(kind), "{text:?}");
            assert_eq!(kind.to_string(), text.trim().to_lowercase());
        } else {
            match parsed {
                Err(Error::UnsupportedBackend(message)) => {
                    let feature = format!("`{}` feature", kind.name());
                    assert!(
                        message.contains(&feature),
                        "{message:?} should name {feature}"
                    );
                }
                other => panic!("{text:?}: expected UnsupportedBackend, got {other:?}"),
            }
        }
    }
}

#[test]
fn unknown_names_are_invalid_config_listing_the_supported_names() {
    for text in ["", "threads", "fiber", "tokio"] {
        match text.parse::<BackendKind>() {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "backend");
                for name in ["thread", "rayon", "process"] {
                    assert!(reason.contains(name), "{reason:?} should list {name}");
                }
            }
            other => panic!("{text:?}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn any_backend_runs_every_compiled_in_kind() {
    for kind in BackendKind::ALL {
        let backend = AnyBackend::from_kind(kind);
        if !compiled_in(kind) {
            assert!(
                matches!(backend, Err(Error::UnsupportedBackend(_))),
                "{kind}: {backend:?}"
            );
            continue;
        }
        let backend = backend.expect("compiled in");
        assert_eq!(backend.kind(), kind);
        if kind == BackendKind::Process {
            // This test binary never called `leasepool::process::init`, so
            // it cannot serve as a worker: starting says so instead of
            // hanging.
            let manager: LeasedExecutorManager<AnyBackend> =
                LeasedExecutorManager::builder(backend)
                    .max_pools(1)
                    .build()
                    .expect("valid config");
            assert_eq!(manager.backend_name(), "process");
            match manager.start_blocking() {
                Err(error @ Error::WorkerSetup(_)) => {
                    let message = error.to_string();
                    assert!(
                        message.contains("leasepool::process::init(registry) first in main"),
                        "{message}"
                    );
                    assert!(!message.contains("replaced"), "{message}");
                    assert!(!error.is_retryable());
                }
                other => panic!("expected WorkerSetup naming init, got {other:?}"),
            }
            continue;
        }
        let manager: LeasedExecutorManager<AnyBackend> = LeasedExecutorManager::builder(backend)
            .max_pools(1)
            .workers_per_pool(2)
            .name_prefix(format!("any-{kind}"))
            .build()
            .expect("valid config");
        assert_eq!(manager.backend_name(), kind.name());
        manager.start_blocking().expect("start");
        let lease = manager.acquire().blocking().expect("acquire");
        let name = lease
            .submit(|| std::thread::current().name().map(str::to_owned))
            .expect("submit")
            .wait()
            .expect("job");
        assert!(
            name.unwrap_or_default()
                .starts_with(&format!("any-{kind}-1_"))
        );
        assert_eq!(manager.stats().backend, kind.name());
        drop(lease);
        manager.stop_blocking();
    }
}

#[cfg(feature = "process")]
#[test]
fn log_forwarding_is_invalid_config_on_a_backend_without_worker_processes() {
    use leasepool::process::ProcessLogging;
    let on = [
        ProcessLogging::new().enabled(true),
        ProcessLogging::new().stderr(true),
    ];
    for kind in BackendKind::ALL.into_iter().filter(|k| compiled_in(*k)) {
        for logging in on.iter().cloned() {
            let got = AnyBackend::from_kind(kind).unwrap().logging(logging);
            match (kind, got) {
                (BackendKind::Process, Ok(backend)) => {
                    assert_eq!(backend.kind(), BackendKind::Process)
                }
                (_, Err(Error::InvalidConfig { field, reason }))
                    if kind != BackendKind::Process =>
                {
                    assert_eq!(field, "logging");
                    assert!(reason.contains(kind.name()), "{reason:?}");
                }
                (kind, other) => panic!("{kind}: unexpected {other:?}"),
            }
        }
        // Forwarding left off is accepted everywhere.
        let off = AnyBackend::from_kind(kind)
            .unwrap()
            .logging(ProcessLogging::new());
        assert_eq!(off.map(|b| b.kind()).ok(), Some(kind));
    }
}
