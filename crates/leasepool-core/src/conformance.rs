//! The backend conformance suite (feature `conformance`).
//!
//! The same scenarios run against every backend — thread, rayon, the custom
//! backend example, your own — through the public manager API, so a backend
//! that passes them keeps every promise leasepool makes about leases:
//! results, panics, draining, expiry revocation, broken-pool replacement
//! and shutdown.
//!
//! Run them on your backend with [`backend_conformance_tests!`](crate::backend_conformance_tests),
//! which expands to one `#[test]` per scenario:
//!
//! ```ignore
//! // tests/conformance.rs of your backend crate, with
//! // leasepool-core = { version = "0.1", features = ["conformance"] } in [dev-dependencies]
//! leasepool_core::backend_conformance_tests!(
//!     make: || MyBackend::new(),
//!     // optional: a backend whose first pool breaks (e.g. its worker
//!     // initializer fails once); omit it if your backend cannot break
//!     breaking: || MyBackend::new().fail_first_initializer(),
//! );
//! ```
//!
//! Or call the scenario functions below from your own tests. Every scenario
//! uses the blocking API, so no async runtime is needed, and waits for
//! conditions with a generous deadline (never a bare sleep).
//!
//! The `call_*` scenarios need only [`ExecutorBackend`]: they run plain
//! functions ([`square`], [`panics`], [`sleep_ms`]) through `call`, so they
//! also check backends that run work out of process (register those three
//! functions in the worker's registry). The others submit closures and need
//! a [`LocalBackend`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Error, ExecutorBackend, JobHandle, LeaseEnd, LeasedExecutorManager, LocalBackend};

/// How long a scenario waits for something that should happen soon.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "conformance: timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn manager<B: ExecutorBackend>(
    backend: B,
    prefix: &str,
    max_pools: usize,
    workers: usize,
) -> LeasedExecutorManager<B> {
    let manager = LeasedExecutorManager::builder(backend)
        .max_pools(max_pools)
        .min_pools(1)
        .workers_per_pool(workers)
        .lease_grace(Duration::ZERO)
        .name_prefix(prefix)
        .build()
        .expect("conformance: the manager configuration is valid");
    manager.start_blocking().expect("conformance: start");
    manager
}

/// Stops `manager` on another thread and fails if it does not return
/// within [`PATIENCE`]: a backend that keeps a worker guard alive would
/// hang `stop()`.
fn stop_bounded<B: ExecutorBackend>(manager: LeasedExecutorManager<B>) {
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        manager.stop_blocking();
        let _ = done.send(());
    });
    stopped
        .recv_timeout(PATIENCE)
        .expect("conformance: stop() did not return: a worker kept its WorkerGuard");
}

/// Jobs return their own results, on several workers at once, through
/// `submit` + `wait` and through the executor proxy.
pub fn submit_and_run<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-run", 2, 2);
    let lease = m
        .acquire()
        .owner("conformance")
        .blocking()
        .expect("acquire");
    let handles: Vec<_> = (0..32u64)
        .map(|i| lease.submit(move || i * i).expect("submit"))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.wait().expect("job result"), (i * i) as u64);
    }
    let exec = lease.executor();
    assert_eq!(
        exec.submit(|| "proxy")
            .expect("submit")
            .wait()
            .expect("result"),
        "proxy"
    );
    drop(lease);
    stop_bounded(m);
}

/// A panicking job fails with `Error::Panicked` carrying its message, and
/// the pool keeps serving.
pub fn panics_are_contained<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-panic", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let result = lease
        .submit(|| -> u32 { panic!("conformance boom") })
        .expect("submit")
        .wait();
    assert_eq!(result, Err(Error::Panicked("conformance boom".to_owned())));
    assert_eq!(lease.submit(|| 7).expect("submit").wait(), Ok(7));
    assert_eq!(lease.ended(), None, "a panic must not end the lease");
    drop(lease);
    stop_bounded(m);
}

/// A lease released with a job still running drains: new submissions are
/// rejected, and the pool comes back only after the job ends.
pub fn release_drains<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-drain", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let exec = lease.executor();
    let (go, gate) = mpsc::channel::<()>();
    let job = lease
        .submit(move || {
            gate.recv().expect("gate");
            11
        })
        .expect("submit");
    drop(lease);
    assert_eq!(m.leased_count(), 1, "a draining lease keeps its pool");
    assert!(matches!(
        exec.submit(|| 0),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    assert!(matches!(
        m.acquire().wait(false).blocking(),
        Err(Error::Unavailable { .. })
    ));
    go.send(()).expect("release the job");
    assert_eq!(job.wait(), Ok(11));
    let next = m
        .acquire()
        .timeout(PATIENCE)
        .blocking()
        .expect("the pool came back");
    drop(next);
    stop_bounded(m);
}

/// Past hard expiry the lease is revoked: submissions fail with
/// `LeaseExpired { reason: Expired }`, a running job finishes, a queued job
/// is cancelled, and replacement capacity appears.
pub fn expiry_revokes<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-expire", 1, 1);
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .expect("acquire");
    let (go, gate) = mpsc::channel::<()>();
    let running = lease
        .submit(move || {
            gate.recv().expect("gate");
            "finished"
        })
        .expect("submit running job");
    let queued = lease.submit(|| "must not run").expect("submit queued job");
    eventually("the lease to be revoked", || {
        lease.ended() == Some(LeaseEnd::Expired)
    });
    assert!(matches!(
        lease.submit(|| 0),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Expired,
            ..
        })
    ));
    let replacement = m
        .acquire()
        .timeout(PATIENCE)
        .blocking()
        .expect("replacement pool");
    assert_eq!(replacement.submit(|| 5).expect("submit").wait(), Ok(5));
    go.send(()).expect("release the running job");
    assert_eq!(running.wait(), Ok("finished"));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    drop(replacement);
    drop(lease);
    stop_bounded(m);
}

/// A pool that breaks fails its jobs with `Error::Broken` (never hangs),
/// ends its lease, is never handed out again, and is replaced. `make` must
/// build a backend whose first pool breaks and whose later pools work.
pub fn broken_pool_is_replaced<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-broken", 1, 1);
    let lease = m.acquire().timeout(PATIENCE).blocking().expect("acquire");
    // The pool may break before the job reaches it (the job fails with
    // `Broken`) or even before the submission (the lease is already
    // retired).
    let first = lease.submit(|| 1).map(JobHandle::wait);
    let broke = matches!(
        first,
        Ok(Err(Error::Broken(_)))
            | Err(Error::LeaseExpired {
                reason: LeaseEnd::Broken,
                ..
            })
    );
    if broke {
        eventually("the broken lease to be retired", || {
            lease.ended() == Some(LeaseEnd::Broken)
        });
        assert!(matches!(
            lease.submit(|| 0),
            Err(Error::LeaseExpired { .. })
        ));
    }
    drop(lease);
    // Whether the first pool broke before or after it was leased, the next
    // lease runs on a healthy replacement.
    let next = m
        .acquire()
        .timeout(PATIENCE)
        .blocking()
        .expect("replacement");
    eventually("a healthy pool", || {
        let ok = next.submit(|| 2).map(|h| h.wait());
        matches!(ok, Ok(Ok(2)))
    });
    drop(next);
    stop_bounded(m);
}

/// `stop()` cancels queued jobs, lets running ones finish, ends leases, and
/// returns only once every worker has released its guard.
pub fn stop_shuts_down<B: LocalBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-stop", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let started = Arc::new(AtomicUsize::new(0));
    let (go, gate) = mpsc::channel::<()>();
    let flag = started.clone();
    let running = lease
        .submit(move || {
            flag.fetch_add(1, Ordering::SeqCst);
            gate.recv().expect("gate");
            "done"
        })
        .expect("submit");
    let queued = lease.submit(|| "must not run").expect("submit");
    eventually("the first job to start", || {
        started.load(Ordering::SeqCst) == 1
    });
    let stopper = {
        let m = m.clone();
        std::thread::spawn(move || stop_bounded(m))
    };
    eventually("the lease to end", || {
        lease.ended() == Some(LeaseEnd::Stopped)
    });
    assert!(matches!(
        lease.submit(|| ""),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Stopped,
            ..
        })
    ));
    go.send(()).expect("release the running job");
    stopper.join().expect("stop returned");
    assert_eq!(running.wait(), Ok("done"));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    assert!(!m.is_started());
    assert_eq!(m.total_count(), 0);
}

// ----- the `call` form: every backend, the process backend included -----

/// Registered functions the `call` scenarios use. A backend that runs
/// calls elsewhere (worker processes) must have them in its registry, e.g.
/// `Registry::new().register(conformance::square).register(conformance::panics).register(conformance::sleep_ms)`.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Panics with "conformance boom".
pub fn panics(_: ()) -> u64 {
    panic!("conformance boom")
}

/// Sleeps `ms` milliseconds, then returns `ms`.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

/// `call` returns the function's own result, also through the executor
/// proxy and for many calls at once.
pub fn call_round_trip<B: ExecutorBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-call", 1, 2);
    let lease = m.acquire().blocking().expect("acquire");
    let handles: Vec<_> = (0..16u64)
        .map(|x| lease.submit_call(square, x).expect("submit_call"))
        .collect();
    for (x, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.wait(), Ok((x * x) as u64));
    }
    assert_eq!(
        lease
            .executor()
            .submit_call(square, 12)
            .expect("proxy")
            .wait(),
        Ok(144)
    );
    drop(lease);
    stop_bounded(m);
}

/// A panicking call fails with `Error::Panicked` carrying its message, and
/// the pool keeps serving.
pub fn call_panics_are_contained<B: ExecutorBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-cpanic", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let result = lease.submit_call(panics, ()).expect("submit_call").wait();
    assert_eq!(result, Err(Error::Panicked("conformance boom".to_owned())));
    assert_eq!(
        lease.submit_call(square, 3).expect("submit_call").wait(),
        Ok(9)
    );
    assert_eq!(lease.ended(), None, "a panic must not end the lease");
    drop(lease);
    stop_bounded(m);
}

/// A lease released with a call still running drains, and the pool comes
/// back only after the call ends.
pub fn call_release_drains<B: ExecutorBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-cdrain", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let exec = lease.executor();
    let running = lease.submit_call(sleep_ms, 300).expect("submit_call");
    drop(lease);
    assert_eq!(m.leased_count(), 1, "a draining lease keeps its pool");
    assert!(matches!(
        exec.submit_call(square, 2),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    assert!(matches!(
        m.acquire().wait(false).blocking(),
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(running.wait(), Ok(300));
    let next = m
        .acquire()
        .timeout(PATIENCE)
        .blocking()
        .expect("the pool came back");
    drop(next);
    stop_bounded(m);
}

/// Past hard expiry the lease is revoked: calls fail with `LeaseExpired`,
/// a queued call never runs, and replacement capacity appears. (The
/// running call finishes, or fails with `Broken` on a backend that kills
/// revoked work.)
pub fn call_expiry_revokes<B: ExecutorBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-cexpire", 1, 1);
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .expect("acquire");
    let running = lease.submit_call(sleep_ms, 600).expect("submit_call");
    let queued = lease.submit_call(square, 5).expect("submit_call");
    eventually("the lease to be revoked", || {
        lease.ended() == Some(LeaseEnd::Expired)
    });
    assert!(matches!(
        lease.submit_call(square, 1),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Expired,
            ..
        })
    ));
    let replacement = m
        .acquire()
        .timeout(PATIENCE)
        .blocking()
        .expect("replacement pool");
    assert_eq!(
        replacement
            .submit_call(square, 4)
            .expect("submit_call")
            .wait(),
        Ok(16)
    );
    // It finishes, or fails on a backend that kills revoked work, or (if
    // the worker had not taken it yet) was cancelled with the pool.
    let first = running.wait();
    assert!(
        matches!(
            first,
            Ok(600) | Err(Error::Broken(_)) | Err(Error::Cancelled)
        ),
        "{first:?}"
    );
    assert!(matches!(
        queued.wait(),
        Err(Error::Cancelled) | Err(Error::Broken(_))
    ));
    drop(replacement);
    drop(lease);
    stop_bounded(m);
}

/// `stop()` cancels queued calls, lets the running one finish, ends
/// leases, and returns once every worker has released its guard.
pub fn call_stop_shuts_down<B: ExecutorBackend>(make: impl Fn() -> B) {
    let m = manager(make(), "cf-cstop", 1, 1);
    let lease = m.acquire().blocking().expect("acquire");
    let running = lease.submit_call(sleep_ms, 300).expect("submit_call");
    let queued = lease.submit_call(square, 6).expect("submit_call");
    stop_bounded(m.clone());
    assert!(matches!(
        lease.submit_call(square, 1),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Stopped,
            ..
        })
    ));
    // A call cannot signal that it started, so the first one may still have
    // been queued when `stop` came: then it is cancelled too. One that had
    // started finishes with its result; the one queued behind it never runs.
    let first = running.wait();
    assert!(
        matches!(first, Ok(300) | Err(Error::Cancelled)),
        "{first:?}"
    );
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    assert!(!m.is_started());
    assert_eq!(m.total_count(), 0);
}

/// Expands to one `#[test]` per conformance scenario for a backend.
///
/// ```ignore
/// leasepool_core::backend_conformance_tests!(make: || MyBackend::new());
/// leasepool_core::backend_conformance_tests!(
///     make: || MyBackend::new(),
///     breaking: || MyBackend::new().with_failing_first_pool(),
/// );
/// ```
#[macro_export]
macro_rules! backend_conformance_tests {
    (make: $make:expr $(,)?) => {
        #[test]
        fn conformance_submit_and_run() {
            $crate::conformance::submit_and_run($make);
        }
        #[test]
        fn conformance_panics_are_contained() {
            $crate::conformance::panics_are_contained($make);
        }
        #[test]
        fn conformance_release_drains() {
            $crate::conformance::release_drains($make);
        }
        #[test]
        fn conformance_expiry_revokes() {
            $crate::conformance::expiry_revokes($make);
        }
        #[test]
        fn conformance_stop_shuts_down() {
            $crate::conformance::stop_shuts_down($make);
        }
        #[test]
        fn conformance_call_round_trip() {
            $crate::conformance::call_round_trip($make);
        }
        #[test]
        fn conformance_call_panics_are_contained() {
            $crate::conformance::call_panics_are_contained($make);
        }
        #[test]
        fn conformance_call_release_drains() {
            $crate::conformance::call_release_drains($make);
        }
        #[test]
        fn conformance_call_expiry_revokes() {
            $crate::conformance::call_expiry_revokes($make);
        }
        #[test]
        fn conformance_call_stop_shuts_down() {
            $crate::conformance::call_stop_shuts_down($make);
        }
    };
    (make: $make:expr, breaking: $breaking:expr $(,)?) => {
        $crate::backend_conformance_tests!(make: $make);
        #[test]
        fn conformance_broken_pool_is_replaced() {
            $crate::conformance::broken_pool_is_replaced($breaking);
        }
    };
}
