//! Thread leaks: once `stop()` / `stop_blocking()` returns, no thread named
//! after the manager is left: not the workers of live pools, nor of pools
//! revoked, retired as broken or shrunk earlier, nor the checker. A manager
//! dropped without `stop()` lets its threads exit too.
//!
//! A thread that has dropped its worker guard may still need a moment to
//! leave `/proc/self/task`, so the checks right after `stop` use
//! `eventually`. Prefixes are at most 7 characters, so that
//! `{prefix}-checker` survives Linux's 15-byte limit on thread names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use leasepool::{Error, LeaseEnd, LeasedExecutorManager, ThreadBackend};

use crate::common::*;

fn checker(prefix: &str) -> String {
    format!("{prefix}-checker")
}

/// Live threads of pool `seq`.
fn pool_threads(prefix: &str, seq: u64) -> Vec<String> {
    let head = format!("{prefix}-{seq}_");
    threads_named(prefix)
        .into_iter()
        .filter(|name| name.starts_with(&head))
        .collect()
}

fn assert_all_gone(prefix: &str) {
    eventually(&format!("every {prefix}-* thread exits"), || {
        threads_named(prefix).is_empty()
    });
}

/// The sizer thread of a manager with a size provider.
fn sizer(prefix: &str) -> String {
    format!("{prefix}-sizer")
}

/// Waits until a started manager shows its checker and `workers` threads
/// per pool, each under its own name, plus its sizer if it has a size
/// provider. (A thread that has not run yet still carries its parent's
/// name, often `{prefix}-checker`.)
fn expect_running(prefix: &str, pools: usize, workers: usize) {
    eventually("the checker and every worker are running", || {
        let names = threads_named(prefix);
        let checkers = names.iter().filter(|n| **n == checker(prefix)).count();
        let sizers = names.iter().filter(|n| **n == sizer(prefix)).count();
        checkers == 1 && names.len() == 1 + sizers + pools * workers
    });
}

/// Starts a job on the lease's pool that runs until `go` is sent.
fn hold_worker(
    lease: &leasepool::ExecutorLease,
) -> (mpsc::Sender<()>, leasepool::JobHandle<&'static str>) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let handle = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "held"
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).expect("job started");
    (go_tx, handle)
}

#[test]
fn stop_leaves_no_thread() {
    let prefix = "lk-stp";
    block_on(async {
        let m = builder(prefix)
            .max_pools(3)
            .workers_per_pool(2)
            .build()
            .unwrap();
        m.start().await.unwrap();
        let leases = vec![
            m.acquire().await.unwrap(),
            m.acquire().timeout(PATIENCE).await.unwrap(),
            m.acquire().timeout(PATIENCE).await.unwrap(),
        ];
        for (i, lease) in leases.iter().enumerate() {
            assert_eq!(lease.run(move || i).await, Ok(i));
        }
        expect_running(prefix, 3, 2);
        drop(leases);
        m.stop().await;
        assert_all_gone(prefix);
    });
}

#[test]
fn stop_blocking_leaves_no_thread() {
    let prefix = "lk-stb";
    let m = builder(prefix)
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(3)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    expect_running(prefix, 2, 3);
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit(|| 5).unwrap().wait(), Ok(5));
    // Stopped with the lease still held.
    m.stop_blocking();
    assert_eq!(lease.ended(), Some(LeaseEnd::Stopped));
    assert_all_gone(prefix);
    // Restarted and stopped again: still nothing left.
    m.start_blocking().unwrap();
    expect_running(prefix, 2, 3);
    m.stop_blocking();
    assert_all_gone(prefix);
    // Stop when stopped, and stop before any start, are no-ops.
    m.stop_blocking();
    let never = builder("lk-nev").max_pools(1).build().unwrap();
    never.stop_blocking();
    assert!(threads_named("lk-nev").is_empty());
}

/// `stop()` waits for a job that is still running (threads cannot be
/// killed); the queued jobs behind it are cancelled, and once the job ends
/// every thread exits.
#[test]
fn stop_waits_for_the_running_job_then_leaves_no_thread() {
    let prefix = "lk-srj";
    let m = builder(prefix).max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (go, held) = hold_worker(&lease);
    let queued = lease.submit(|| "queued").unwrap();

    let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
    let m2 = m.clone();
    let stopper = std::thread::spawn(move || {
        m2.stop_blocking();
        stopped_tx.send(()).unwrap();
    });
    eventually("stop has begun", || !m.is_started());
    assert!(
        stopped_rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "stop returned while a worker was still running a job"
    );
    go.send(()).unwrap();
    stopped_rx
        .recv_timeout(PATIENCE)
        .expect("stop returns once the job ends");
    assert_all_gone(prefix);
    assert_eq!(held.wait(), Ok("held"));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    stopper.join().unwrap();
}

/// A lease revoked at hard expiry while its job runs: the job finishes on
/// its (retired) thread, which then exits on its own; the replacement pool
/// and the checker exit at stop.
#[test]
fn pool_revoked_while_running_leaves_no_thread() {
    let prefix = "lk-rev";
    let m = builder(prefix)
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(50))
        .blocking()
        .unwrap();
    let (go, held) = hold_worker(&lease);
    eventually("the lease is revoked", || {
        lease.ended() == Some(LeaseEnd::Expired)
    });
    eventually("a replacement pool is created", || m.available_count() == 1);
    assert_eq!(
        pool_threads(prefix, 1).len(),
        1,
        "the revoked pool's worker is still running its job"
    );
    let replacement = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(replacement.submit(|| 2).unwrap().wait(), Ok(2));

    go.send(()).unwrap();
    assert_eq!(held.wait(), Ok("held"));
    eventually("the revoked pool's worker exits", || {
        pool_threads(prefix, 1).is_empty()
    });
    assert_eq!(pool_threads(prefix, 2).len(), 1);
    drop((lease, replacement));
    m.stop_blocking();
    assert_all_gone(prefix);
}

/// Same, but `stop()` comes while the revoked pool's job still runs: it
/// waits for that job too.
#[test]
fn stop_waits_for_a_revoked_pools_job() {
    let prefix = "lk-rvs";
    let m = builder(prefix)
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(50))
        .blocking()
        .unwrap();
    let (go, held) = hold_worker(&lease);
    eventually("the lease is revoked", || {
        lease.ended() == Some(LeaseEnd::Expired)
    });
    drop(lease);
    let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
    let m2 = m.clone();
    let stopper = std::thread::spawn(move || {
        block_on(m2.stop());
        stopped_tx.send(()).unwrap();
    });
    eventually("stop has begun", || !m.is_started());
    assert!(
        stopped_rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "stop returned while a revoked pool's worker was still running"
    );
    go.send(()).unwrap();
    stopped_rx.recv_timeout(PATIENCE).expect("stop returns");
    assert_all_gone(prefix);
    assert_eq!(held.wait(), Ok("held"));
    stopper.join().unwrap();
}

/// A thread backend whose pool `seq` breaks: each of its workers' initializer
/// waits until `gate` is unlocked, then fails (so the pool breaks after it
/// was handed out, at a moment the test chooses, before it ran anything).
fn breaks_pool(prefix: &str, seq: u64, gate: Arc<Mutex<()>>) -> ThreadBackend {
    let victim = format!("{prefix}-{seq}_");
    ThreadBackend::new().initializer(move || {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        if name.starts_with(&victim) {
            drop(gate.lock());
            return Err("injected initializer failure");
        }
        Ok(())
    })
}

#[test]
fn pool_retired_as_broken_leaves_no_thread() {
    let prefix = "lk-brk";
    let gate = Arc::new(Mutex::new(()));
    let closed = gate.lock().unwrap();
    let m = LeasedExecutorManager::builder(breaks_pool(prefix, 2, gate.clone()))
        .max_pools(2)
        .workers_per_pool(2)
        .name_prefix(prefix)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let first = m.acquire().blocking().unwrap();
    let second = m.acquire().timeout(PATIENCE).blocking().unwrap();
    expect_running(prefix, 2, 2);
    let job = second.submit(|| "never").unwrap();

    drop(closed);
    assert!(matches!(job.wait(), Err(Error::Broken(_))));
    eventually("the broken pool's lease is retired", || {
        second.ended() == Some(LeaseEnd::Broken)
    });
    eventually("the broken pool's workers exit", || {
        pool_threads(prefix, 2).is_empty()
    });
    assert_eq!(
        pool_threads(prefix, 1).len(),
        2,
        "{:?}",
        threads_named(prefix)
    );
    drop(second);
    let third = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(third.submit(|| 3).unwrap().wait(), Ok(3));
    drop((first, third));
    m.stop_blocking();
    assert_all_gone(prefix);
}

/// A pool whose worker fails its initializer at once, typically while the
/// pool is still being set up (the other workers are still being spawned):
/// it must still be retired, its threads must exit, and it must never
/// serve a lease.
#[test]
fn pool_broken_at_birth_is_retired_and_leaves_no_thread() {
    let prefix = "lk-bab";
    let victim = format!("{prefix}-1_0");
    let backend = ThreadBackend::new().initializer(move || {
        if std::thread::current().name() == Some(victim.as_str()) {
            Err("injected initializer failure")
        } else {
            Ok(())
        }
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(8)
        .name_prefix(prefix)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    // Every thread named (none still carries the checker's name) and none
    // of pool 1's left.
    let retired = || {
        let names = threads_named(prefix);
        let checkers = names.iter().filter(|n| **n == checker(prefix)).count();
        checkers <= 1 && !names.iter().any(|n| n.starts_with(&format!("{prefix}-1_")))
    };
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    // The break may be reported before the submit or after it: either the
    // submit or the job then fails, and the lease ends as broken.
    let outcome = lease.submit(|| 1).and_then(|job| job.wait());
    let pool_one_gone = {
        // Bounded: the pool is retired by the checker right after it breaks.
        let deadline = std::time::Instant::now() + PATIENCE;
        while !retired() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        retired()
    };
    let ended = lease.ended();
    drop(lease);
    m.stop_blocking();
    assert_all_gone(prefix);
    assert!(
        pool_one_gone,
        "pool 1 broke (its job gave {outcome:?}, its lease ended: {ended:?}) \
         but was never retired: its 8 worker threads lived until stop()"
    );
    if outcome.is_err() {
        assert_eq!(ended, Some(LeaseEnd::Broken), "{outcome:?}");
    }
}

#[test]
fn shrunk_pools_leave_no_thread() {
    let prefix = "lk-shr";
    let units = Arc::new(AtomicUsize::new(3));
    let provider = units.clone();
    let m = builder(prefix)
        .max_pools(3)
        .min_pools(1)
        .units_per_pool(1)
        .size_provider(move || provider.load(Ordering::SeqCst))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 3);
    expect_running(prefix, 3, 1);

    units.store(1, Ordering::SeqCst);
    m.notify_scale_changed();
    eventually("idle pools above the target are shut down", || {
        m.total_count() == 1
    });
    eventually("their workers exit", || {
        pool_threads(prefix, 2).is_empty() && pool_threads(prefix, 3).is_empty()
    });
    assert_eq!(pool_threads(prefix, 1).len(), 1, "pool 1 is kept");

    // A leased pool above the target is shut down on release.
    units.store(2, Ordering::SeqCst);
    m.notify_scale_changed();
    eventually("grown back", || m.total_count() == 2);
    let a = m.acquire().blocking().unwrap();
    let b = m.acquire().blocking().unwrap();
    units.store(1, Ordering::SeqCst);
    m.notify_scale_changed();
    eventually("target shrinks", || m.stats().desired == 1);
    drop(a);
    eventually("the released pool is shut down", || m.total_count() == 1);
    eventually("its worker exits", || {
        threads_named(prefix).len() == 3 // the checker, the sizer and b's worker
    });
    drop(b);
    m.stop_blocking();
    assert_all_gone(prefix);
}

#[test]
fn checker_thread_exits_at_stop() {
    let prefix = "lk-chk";
    block_on(async {
        let m = builder(prefix)
            .max_pools(1)
            .check_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        m.start().await.unwrap();
        assert!(threads_named(prefix).contains(&checker(prefix)));
        m.stop().await;
        eventually("the checker exits", || {
            !threads_named(prefix).contains(&checker(prefix))
        });
        assert_all_gone(prefix);
    });
}

#[test]
fn dropped_manager_lets_its_threads_exit() {
    let prefix = "lk-drp";
    let m = builder(prefix)
        .max_pools(2)
        .workers_per_pool(2)
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let clone = m.clone();
    let a = m.acquire().blocking().unwrap();
    let b = clone.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(b.submit(|| 1).unwrap().wait(), Ok(1));
    expect_running(prefix, 2, 2);
    drop((a, b));
    drop(clone);
    drop(m);
    assert_all_gone(prefix);
}

/// Dropped without stop while a detached job still runs: the job ends,
/// then every thread exits.
#[test]
fn dropped_manager_with_a_detached_job_lets_its_threads_exit() {
    let prefix = "lk-ddj";
    let m = builder(prefix).max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (go, held) = hold_worker(&lease);
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let detached = std::thread::spawn(move || done_tx.send(held.wait().unwrap()).unwrap());
    drop(lease);
    drop(m);
    eventually("the checker exits", || {
        !threads_named(prefix).contains(&checker(prefix))
    });
    assert_eq!(pool_threads(prefix, 1).len(), 1, "the job still runs");
    go.send(()).unwrap();
    assert_eq!(done_rx.recv_timeout(PATIENCE), Ok("held"));
    detached.join().unwrap();
    assert_all_gone(prefix);
}
