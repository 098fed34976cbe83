//! docs/guide.md, "Lifecycle": start, stop, restart, and what happens to leases and waiters
//! across them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use leasepool::{
    Error, ExecutorBackend, LeaseEnd, LeasedExecutorManager, LocalBackend, PoolContext,
    ThreadBackend, ThreadPool,
};

use crate::common::*;

/// A thread backend whose `fail_on`-th pool creation (1-based) fails.
struct FailNth {
    inner: ThreadBackend,
    calls: Arc<AtomicUsize>,
    fail_on: usize,
}

impl ExecutorBackend for FailNth {
    type Pool = ThreadPool;

    fn name(&self) -> &'static str {
        "thread"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<ThreadPool, Error> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_on {
            return Err(Error::Broken("test: no room for another pool".to_owned()));
        }
        self.inner.create_pool(ctx)
    }
}

impl LocalBackend for FailNth {}

fn checkers(prefix: &str) -> usize {
    threads_named(prefix)
        .iter()
        .filter(|name| name.contains("-check"))
        .count()
}

#[test]
fn start_creates_min_pools_when_no_size_provider() {
    block_on(async {
        let m = builder("lc01").max_pools(4).min_pools(2).build().unwrap();
        assert_eq!(m.total_count(), 0, "a built manager owns no pools");
        m.start().await.unwrap();
        assert_eq!(m.total_count(), 2);
        assert_eq!(m.available_count(), 2);
        assert_eq!(m.leased_count(), 0);
        assert_eq!(m.stats().desired, 2);
        eventually("two workers and a checker", || {
            threads_named("lc01").len() == 3
        });
        m.stop().await;
    });
}

#[test]
fn start_creates_the_desired_number_of_pools() {
    block_on(async {
        let m = builder("lc02")
            .max_pools(5)
            .min_pools(1)
            .units_per_pool(10)
            .size_provider(|| 25)
            .build()
            .unwrap();
        m.start().await.unwrap();
        assert_eq!(m.total_count(), 3, "ceil(25 / 10) pools at start");
        assert_eq!(m.available_count(), 3);
        assert_eq!(m.stats().desired, 3);
        m.stop().await;
    });
}

#[test]
fn start_twice_is_a_no_op() {
    block_on(async {
        let m = builder("lc03").max_pools(3).min_pools(2).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let before = m.stats();
        m.start().await.unwrap();
        m.start_blocking().unwrap();
        assert!(m.is_started());
        let after = m.stats();
        assert_eq!(after.total, before.total, "no extra pools");
        assert_eq!(after.available, before.available);
        assert_eq!(after.leased, 1, "the lease survives a second start");
        assert_eq!(lease.ended(), None);
        assert_eq!(lease.run(|| 3).await.unwrap(), 3);
        eventually("one checker thread", || checkers("lc03") == 1);
        assert_eq!(checkers("lc03"), 1, "a second start spawned a checker");
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn stop_before_start_is_a_no_op() {
    block_on(async {
        let m = builder("lc04").max_pools(1).build().unwrap();
        m.stop().await;
        m.stop_blocking();
        assert!(!m.is_started());
        assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
        // Still startable afterwards.
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        assert_eq!(lease.run(|| 1).await.unwrap(), 1);
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn double_stop_is_a_no_op() {
    block_on(async {
        let m = builder("lc05").max_pools(2).min_pools(2).build().unwrap();
        m.start().await.unwrap();
        m.stop().await;
        m.stop().await;
        m.stop_blocking();
        assert!(!m.is_started());
        assert_eq!(m.total_count(), 0);
        assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
        eventually("threads gone", || threads_named("lc05").is_empty());
    });
}

#[test]
fn is_started_tracks_the_lifecycle() {
    block_on(async {
        let m = builder("lc06").max_pools(1).build().unwrap();
        assert!(!m.is_started());
        m.start().await.unwrap();
        assert!(m.is_started());
        let clone = m.clone();
        assert!(clone.is_started(), "clones share one manager");
        m.stop().await;
        assert!(!m.is_started());
        assert!(!clone.is_started());
    });
}

#[test]
fn stop_wakes_waiters_with_shutting_down() {
    let m = builder("lc07").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let m2 = m.clone();
        let tx = tx.clone();
        waiters.push(std::thread::spawn(move || {
            let result = if i == 1 {
                // One waiter with a timeout, which stop must not outlast.
                m2.acquire().timeout(Duration::from_secs(3600)).blocking()
            } else {
                m2.acquire().blocking()
            };
            tx.send(result.map(|l| l.id().to_string())).unwrap();
        }));
        eventually("waiter queued", || m.stats().waiting == i + 1);
    }
    m.stop_blocking();
    for _ in 0..3 {
        let result = rx.recv_timeout(PATIENCE).expect("waiter woken by stop");
        assert_eq!(result, Err(Error::ShuttingDown));
    }
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(m.stats().waiting, 0);
    drop(lease);
}

#[test]
fn stop_wakes_an_async_waiter() {
    let m = builder("lc08").max_pools(1).build().unwrap();
    block_on(m.start()).unwrap();
    let lease = m.acquire().blocking().unwrap();
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || block_on(async { m2.acquire().owner("w").await }));
    eventually("waiter queued", || m.stats().waiting == 1);
    block_on(m.stop());
    assert_eq!(waiter.join().unwrap().unwrap_err(), Error::ShuttingDown);
    drop(lease);
}

#[test]
fn leases_held_across_stop_are_dead() {
    block_on(async {
        let m = builder("lc09").max_pools(2).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().owner("old").await.unwrap();
        let exec = lease.executor();
        m.stop().await;
        assert_eq!(lease.ended(), Some(LeaseEnd::Stopped));
        match lease.submit(|| 1) {
            Err(Error::LeaseExpired { id, reason }) => {
                assert_eq!(&id, lease.id());
                assert_eq!(reason, LeaseEnd::Stopped);
            }
            other => panic!("expected LeaseExpired(Stopped), got {other:?}"),
        }
        assert!(matches!(
            exec.submit(|| 1),
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Stopped,
                ..
            })
        ));
        assert!(matches!(
            lease.run(|| 1).await,
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Stopped,
                ..
            })
        ));
        // Releasing a dead lease is harmless, even after a restart.
        m.release(lease.id()).await;
        m.start().await.unwrap();
        let fresh = m.acquire().owner("new").await.unwrap();
        let counts = (m.available_count(), m.leased_count(), m.total_count());
        m.release(lease.id()).await;
        lease.release().await;
        assert_eq!(
            (m.available_count(), m.leased_count(), m.total_count()),
            counts,
            "releasing a lease from before stop touched the new run"
        );
        assert_eq!(fresh.ended(), None);
        assert_eq!(fresh.run(|| 2).await.unwrap(), 2);
        assert!(
            matches!(exec.submit(|| 1), Err(Error::LeaseExpired { .. })),
            "an old proxy must not reach a pool of the new run"
        );
        drop(fresh);
        m.stop().await;
    });
}

#[test]
fn stop_cancels_queued_jobs_and_lets_running_ones_finish() {
    let m = builder("lc10").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let running = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "finished"
        })
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let queued = lease
        .submit(move || {
            ran2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let m2 = m.clone();
    let stopper = std::thread::spawn(move || m2.stop_blocking());
    eventually("stop began", || !m.is_started());
    // While stop waits for the running job, the manager refuses leases.
    assert_eq!(
        m.acquire().wait(false).blocking().unwrap_err(),
        Error::NotStarted
    );
    assert!(matches!(
        lease.submit(|| ()),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Stopped,
            ..
        })
    ));
    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok("finished"));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    stopper.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a queued job ran after stop");
    eventually("workers exited", || threads_named("lc10").is_empty());
}

#[test]
fn restart_after_stop_works() {
    block_on(async {
        let m = builder("lc11").max_pools(2).min_pools(2).build().unwrap();
        for round in 0..3 {
            m.start().await.unwrap();
            assert!(m.is_started());
            assert_eq!(m.total_count(), 2, "round {round}");
            let lease = m.acquire().await.unwrap();
            assert_eq!(lease.run(move || round * 10).await.unwrap(), round * 10);
            drop(lease);
            m.stop().await;
            assert!(!m.is_started());
            assert_eq!(m.total_count(), 0);
            eventually("threads gone", || threads_named("lc11").is_empty());
        }
    });
}

#[test]
fn start_and_stop_blocking_twins_work_from_plain_threads() {
    let m = builder("lc12").max_pools(2).min_pools(2).build().unwrap();
    let m2 = m.clone();
    std::thread::spawn(move || m2.start_blocking())
        .join()
        .unwrap()
        .unwrap();
    assert!(m.is_started());
    assert_eq!(m.total_count(), 2);
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit(|| 5).unwrap().wait().unwrap(), 5);
    drop(lease);
    let m3 = m.clone();
    std::thread::spawn(move || m3.stop_blocking())
        .join()
        .unwrap();
    assert!(!m.is_started());
    assert_eq!(m.total_count(), 0);
    eventually("threads gone", || threads_named("lc12").is_empty());
}

#[test]
fn stop_waits_for_running_jobs_and_leaves_no_worker_behind() {
    let m = builder("lc13")
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(3)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    eventually("six workers and a checker", || {
        threads_named("lc13").len() == 7
    });
    let lease = m.acquire().blocking().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let f2 = finished.clone();
    let _detached = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            f2.store(1, Ordering::SeqCst);
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    m.stop_blocking();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "stop returned before a running job finished"
    );
    eventually("threads gone", || threads_named("lc13").is_empty());
}

#[test]
fn failed_start_shuts_down_what_it_created_and_stays_stopped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = FailNth {
        inner: ThreadBackend::new(),
        calls: calls.clone(),
        fail_on: 2,
    };
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(3)
        .min_pools(3)
        .workers_per_pool(1)
        .name_prefix("lc14")
        .build()
        .unwrap();
    let error = m.start_blocking().unwrap_err();
    assert!(
        matches!(&error, Error::Broken(msg) if msg.contains("no room")),
        "{error:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "creation stops at the error"
    );
    assert!(!m.is_started());
    assert_eq!(m.total_count(), 0);
    assert_eq!(m.acquire().blocking().unwrap_err(), Error::NotStarted);
    eventually("the pool created before the failure is shut down", || {
        threads_named("lc14").is_empty()
    });
    // The failure is not sticky: the next start succeeds.
    m.start_blocking().unwrap();
    assert!(m.is_started());
    assert_eq!(m.total_count(), 3);
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit(|| 9).unwrap().wait().unwrap(), 9);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn dropping_a_started_manager_without_stop_lets_workers_exit() {
    let m = builder("lc15").max_pools(2).min_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    eventually("workers up", || threads_named("lc15").len() == 3);
    drop(m);
    eventually(
        "workers and checker exit after the last handle drops",
        || threads_named("lc15").is_empty(),
    );
}
