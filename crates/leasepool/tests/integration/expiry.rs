//! docs/guide.md, "Expiry": soft and hard expiry, revocation by the checker, by acquire and
//! by submission, and what happens to the revoked pool and its jobs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasepool::{
    Error, ExecutorBackend, LeaseEnd, LeasedExecutorManager, LocalBackend, PoolContext,
    ThreadBackend, ThreadPool,
};
use log::Level;

use crate::common::*;
use crate::stats_logs::{about, log_mark};

const LONG: Duration = Duration::from_secs(3600);

/// Waits until the checker has run a full pass that started after this
/// call. Only a checker pass times a waiter out, so a waiter with a 1 ms
/// time-out that comes back with `Timeout` proves one ran. Every pool must
/// be leased (otherwise the waiter is served).
fn full_checker_pass(m: &LeasedExecutorManager<ThreadBackend>) {
    assert_eq!(m.available_count(), 0, "lease every pool first");
    let waited = m.acquire().timeout(Duration::from_millis(1)).blocking();
    assert!(matches!(waited, Err(Error::Timeout(_))), "{waited:?}");
}

fn worker_name() -> String {
    std::thread::current().name().unwrap().to_owned()
}

#[test]
fn submitting_after_hard_expiry_fails_with_expired() {
    block_on(async {
        let m = builder("ex01")
            .max_pools(1)
            .lease_grace(Duration::from_millis(50))
            .check_interval(LONG)
            .build()
            .unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().lease(Duration::from_millis(100)).await.unwrap();
        let exec = lease.executor();
        eventually("past hard expiry", || {
            Instant::now() >= lease.hard_expires_at()
        });
        match lease.submit(|| 1) {
            Err(Error::LeaseExpired { id, reason }) => {
                assert_eq!(id, *lease.id());
                assert_eq!(reason, LeaseEnd::Expired);
            }
            other => panic!("expected LeaseExpired(Expired), got {other:?}"),
        }
        assert!(matches!(
            exec.submit(|| 1),
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Expired,
                ..
            })
        ));
        assert!(matches!(
            lease.run(|| 1).await,
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Expired,
                ..
            })
        ));
        assert_eq!(lease.ended(), Some(LeaseEnd::Expired));
        assert_eq!(m.leased_count(), 0);
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn the_checker_revokes_a_short_lease_on_time_despite_a_long_check_interval() {
    let m = builder("ex02")
        .max_pools(1)
        .lease_grace(Duration::from_millis(100))
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .unwrap();
    // Nobody submits or acquires: only the checker can revoke it.
    eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
    let late = Instant::now().saturating_duration_since(lease.hard_expires_at());
    assert!(
        Instant::now() >= lease.hard_expires_at(),
        "revoked before hard expiry"
    );
    assert!(
        late < Duration::from_secs(10),
        "revoked {late:?} after hard expiry"
    );
    assert_eq!(m.leased_count(), 0);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn a_lease_is_not_revoked_before_hard_expiry() {
    let m = builder("ex03")
        .max_pools(1)
        .lease_grace(Duration::from_millis(300))
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(100))
        .blocking()
        .unwrap();
    eventually("past soft expiry", || {
        Instant::now() >= lease.soft_expires_at()
    });
    // Between soft and hard expiry the lease still works.
    let result = lease.submit(|| 5);
    if Instant::now() < lease.hard_expires_at() {
        assert_eq!(result.unwrap().wait(), Ok(5));
    }
    eventually("revoked at hard expiry", || {
        lease.ended() == Some(LeaseEnd::Expired)
    });
    drop(lease);
    m.stop_blocking();
}

#[test]
fn a_revoked_pool_is_shut_down_and_replaced() {
    let m = builder("ex04")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(100))
        .blocking()
        .unwrap();
    let old = lease.submit(worker_name).unwrap().wait().unwrap();
    assert_eq!(old, "ex04-1_0");
    eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
    eventually("revoked pool's worker exits", || {
        !threads_named("ex04").contains(&old)
    });
    eventually("replacement pool", || m.available_count() == 1);
    assert_eq!(m.total_count(), 1);
    let next = m.acquire().wait(false).blocking().unwrap();
    let new = next.submit(worker_name).unwrap().wait().unwrap();
    assert_ne!(new, old, "the revoked pool was recycled");
    drop(next);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn at_revocation_a_running_job_finishes_and_a_queued_job_is_cancelled() {
    let m = builder("ex05")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let running = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "done"
        })
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let queued = lease
        .submit(move || ran2.store(true, Ordering::SeqCst))
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
    assert_eq!(m.leased_count(), 0, "revocation does not wait for jobs");
    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok("done"));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    assert!(
        !ran.load(Ordering::SeqCst),
        "a queued job ran on a revoked pool"
    );
    eventually("replacement pool", || m.available_count() == 1);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn zero_grace_revokes_at_soft_expiry() {
    let m = builder("ex06")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(80))
        .blocking()
        .unwrap();
    assert_eq!(lease.grace(), Duration::ZERO);
    assert_eq!(lease.hard_expires_at(), lease.soft_expires_at());
    eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn soft_expiry_shows_in_stats_and_the_lease_keeps_working() {
    let m = builder("ex07")
        .max_pools(1)
        .lease_grace(Duration::from_secs(60))
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(100))
        .blocking()
        .unwrap();
    let before = m.stats().leases[0].clone();
    assert!(before.until_soft_expiry > Duration::ZERO);
    eventually("until_soft_expiry reaches zero", || {
        m.stats().leases[0].until_soft_expiry == Duration::ZERO
    });
    let after = m.stats().leases[0].clone();
    assert!(after.until_hard_expiry > Duration::from_secs(30));
    assert_eq!(lease.ended(), None, "soft expiry is informational");
    assert_eq!(lease.submit(|| 8).unwrap().wait(), Ok(8));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn soft_expiry_logs_exactly_one_warning() {
    let mark = log_mark();
    let m = builder("ex08")
        .max_pools(1)
        .lease_grace(Duration::from_secs(60))
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .owner("late-owner")
        .lease(Duration::from_millis(100))
        .blocking()
        .unwrap();
    let id = *lease.id();
    let warnings = || {
        about(mark, &id)
            .into_iter()
            .filter(|r| r.level == Level::Warn)
            .collect::<Vec<_>>()
    };
    // The checker wakes at the soft expiry on its own.
    eventually("soft expiry warning", || !warnings().is_empty());
    assert!(Instant::now() >= lease.soft_expires_at());
    // More checker passes and more use of the lease add no warning.
    for _ in 0..3 {
        full_checker_pass(&m);
        assert_eq!(lease.submit(|| ()).unwrap().wait(), Ok(()));
    }
    let w = warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].target, "leasepool");
    assert!(w[0].message.contains("late-owner"), "{w:?}");
    assert_eq!(lease.ended(), None);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn releasing_a_revoked_lease_is_harmless() {
    block_on(async {
        let m = builder("ex09")
            .max_pools(1)
            .lease_grace(Duration::ZERO)
            .check_interval(LONG)
            .build()
            .unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().lease(Duration::from_millis(80)).await.unwrap();
        eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
        eventually("replacement pool", || m.available_count() == 1);
        m.release(lease.id()).await;
        lease.release().await;
        assert_eq!(
            (m.available_count(), m.leased_count(), m.total_count()),
            (1, 0, 1)
        );
        m.stop().await;
    });
}

/// A thread backend whose pool creations from the `gate_from`-th on
/// (1-based) each wait for one token on `gate`.
struct GatedCreate {
    inner: ThreadBackend,
    calls: AtomicUsize,
    gate_from: usize,
    gate: Mutex<mpsc::Receiver<()>>,
}

impl ExecutorBackend for GatedCreate {
    type Pool = ThreadPool;

    fn name(&self) -> &'static str {
        "thread"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<ThreadPool, Error> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.gate_from {
            // A dropped sender (failed test) lets creation go on.
            let _ = self.gate.lock().unwrap().recv();
        }
        self.inner.create_pool(ctx)
    }
}

impl LocalBackend for GatedCreate {}

#[test]
fn fail_fast_acquire_is_not_unavailable_while_below_max_pools() {
    // After a revocation the only pool slot is free (total 0 < max_pools
    // 1) and the checker is re-creating capacity. docs/guide.md, "Acquiring a lease": "Take an idle
    // pool or, if total < max_pools, create one. Otherwise: wait = false ->
    // unavailable". So a fail-fast acquire must not report Unavailable
    // here; it should get the pool being created (or create one).
    let (gate_tx, gate_rx) = mpsc::channel();
    let backend = GatedCreate {
        inner: ThreadBackend::new(),
        calls: AtomicUsize::new(0),
        gate_from: 2,
        gate: Mutex::new(gate_rx),
    };
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .name_prefix("ex10")
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(80))
        .blocking()
        .unwrap();
    eventually("revoked", || lease.ended() == Some(LeaseEnd::Expired));
    eventually("replacement creation under way", || {
        m.backend().calls.load(Ordering::SeqCst) == 2
    });
    assert_eq!(m.total_count(), 0);
    let m2 = m.clone();
    let fail_fast = std::thread::spawn(move || {
        m2.acquire()
            .wait(false)
            .blocking()
            .map(|l| l.submit(|| 1).map(|h| h.wait()))
    });
    // Let the replacement finish once the fail-fast caller has made its
    // decision (queued, or failed).
    eventually("fail-fast acquire decided", || {
        m.stats().waiting == 1 || fail_fast.is_finished()
    });
    gate_tx.send(()).unwrap();
    let result = fail_fast.join().unwrap();
    assert_eq!(
        result,
        Ok(Ok(Ok(1))),
        "wait(false) with total_count 0 < max_pools 1"
    );
    drop(lease);
    m.stop_blocking();
}

#[test]
fn a_lease_released_in_time_is_not_revoked_later() {
    let m = builder("ex11")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(80))
        .blocking()
        .unwrap();
    let first = lease.submit(worker_name).unwrap().wait().unwrap();
    let hard = lease.hard_expires_at();
    drop(lease);
    eventually("past the old hard expiry", || Instant::now() >= hard);
    assert_eq!(m.available_count(), 1);
    // A full pass after the old expiry, with the pool leased again: a
    // stale record of the released lease would revoke it now.
    let next = m.acquire().wait(false).blocking().unwrap();
    full_checker_pass(&m);
    assert_eq!(next.ended(), None);
    let second = next.submit(worker_name).unwrap().wait().unwrap();
    assert_eq!(
        first, second,
        "a released pool was shut down at its old expiry"
    );
    drop(next);
    m.stop_blocking();
}

#[test]
fn a_waiter_gets_the_replacement_for_a_revoked_pool() {
    let m = builder("ex12")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(LONG)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .unwrap();
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || {
        let next = m2.acquire().timeout(PATIENCE).blocking()?;
        next.submit(worker_name)?.wait()
    });
    eventually("waiter queued or served", || {
        m.stats().waiting == 1 || lease.ended().is_some()
    });
    let name = waiter.join().unwrap().unwrap();
    assert_eq!(lease.ended(), Some(LeaseEnd::Expired));
    assert_ne!(
        name, "ex12-1_0",
        "the revoked pool was handed to the waiter"
    );
    drop(lease);
    m.stop_blocking();
}
