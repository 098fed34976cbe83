//! docs/guide.md, "Acquiring a lease" (acquire): idle pools, on-demand creation, fail-fast, timeouts,
//! FIFO waiters, dropped waiters, per-call terms, blocking acquire.

use std::future::IntoFuture;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future::poll_once;
use leasepool::{Error, ExecutorLease};

use crate::common::*;

#[test]
fn acquire_before_start_and_after_stop_is_not_started() {
    block_on(async {
        let m = builder("aq01").max_pools(1).build().unwrap();
        assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
        assert_eq!(m.acquire().blocking().unwrap_err(), Error::NotStarted);
        assert_eq!(
            m.acquire().wait(false).await.unwrap_err(),
            Error::NotStarted
        );
        m.start().await.unwrap();
        drop(m.acquire().await.unwrap());
        m.stop().await;
        assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
        assert_eq!(
            m.acquire()
                .timeout(Duration::from_secs(5))
                .await
                .unwrap_err(),
            Error::NotStarted
        );
    });
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let m = builder("aq02").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let holder = m.acquire().owner("holder").blocking().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5usize {
        let m2 = m.clone();
        let served = served.clone();
        threads.push(std::thread::spawn(move || {
            let lease = m2.acquire().owner(format!("w{i}")).blocking().unwrap();
            assert_eq!(lease.owner(), Some(format!("w{i}").as_str()));
            served.lock().unwrap().push(i);
            // Dropping the lease hands the pool to the next waiter.
        }));
        // Make arrival order deterministic: the next waiter comes only
        // after this one is queued.
        eventually("waiter queued", || m.stats().waiting == i + 1);
    }
    assert!(served.lock().unwrap().is_empty(), "served while leased");
    drop(holder);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*served.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(m.available_count(), 1);
    m.stop_blocking();
}

#[test]
fn async_waiters_are_served_in_arrival_order() {
    block_on(async {
        let m = builder("aq03").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let holder = m.acquire().await.unwrap();
        let mut futures: Vec<_> = (0..4)
            .map(|i| Box::pin(m.acquire().owner(format!("f{i}")).into_future()))
            .collect();
        for (i, f) in futures.iter_mut().enumerate() {
            assert!(poll_once(f.as_mut()).await.is_none(), "no pool is free");
            assert_eq!(m.stats().waiting, i + 1);
        }
        drop(holder);
        // On each turn, poll the remaining waiters newest first: only the
        // oldest one may be ready.
        let mut order = Vec::new();
        for turn in 0..futures.len() {
            let mut winner: Option<(usize, ExecutorLease)> = None;
            for i in (turn..futures.len()).rev() {
                if let Some(result) = poll_once(futures[i].as_mut()).await {
                    assert!(winner.is_none(), "two waiters served at once");
                    winner = Some((i, result.unwrap()));
                }
            }
            let (i, lease) = winner.expect("the oldest waiter is served");
            assert_eq!(lease.owner(), Some(format!("f{i}").as_str()));
            assert_eq!(m.leased_count(), 1);
            order.push(i);
            drop(lease);
        }
        assert_eq!(order, vec![0, 1, 2, 3]);
        m.stop().await;
    });
}

#[test]
fn wait_false_fails_fast_with_unavailable_naming_max_pools() {
    block_on(async {
        let m = builder("aq04").max_pools(2).build().unwrap();
        m.start().await.unwrap();
        let a = m.acquire().await.unwrap();
        let b = m.acquire().await.unwrap();
        let started = Instant::now();
        let error = m.acquire().wait(false).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not fail fast"
        );
        assert_eq!(
            error,
            Error::Unavailable {
                max_pools: 2,
                owner_limit: None,
            }
        );
        let message = error.to_string();
        assert!(message.contains("max_pools"), "{message}");
        assert!(message.contains('2'), "{message}");
        // wait(false) with a timeout is a contradiction, refused clearly.
        let both = m
            .acquire()
            .wait(false)
            .timeout(Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(
            matches!(
                both,
                Error::InvalidConfig {
                    field: "timeout",
                    ..
                }
            ),
            "{both:?}"
        );
        assert!(both.to_string().contains("wait(false)"), "{both}");
        assert_eq!(m.stats().waiting, 0, "a fail-fast acquire never queues");
        drop((a, b));
        m.stop().await;
    });
}

#[test]
fn wait_false_still_gets_an_idle_or_new_pool() {
    block_on(async {
        let m = builder("aq05").max_pools(2).build().unwrap();
        m.start().await.unwrap();
        let idle = m.acquire().wait(false).await.unwrap();
        let created = m.acquire().wait(false).await.unwrap();
        assert_eq!(m.total_count(), 2);
        assert_ne!(idle.id(), created.id());
        drop((idle, created));
        m.stop().await;
    });
}

#[test]
fn timeout_fails_with_the_timeout_after_waiting_it() {
    block_on(async {
        let m = builder("aq06").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let holder = m.acquire().await.unwrap();
        let timeout = Duration::from_millis(120);
        let started = Instant::now();
        let error = m.acquire().timeout(timeout).await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(error, Error::Timeout(timeout));
        assert!(waited >= timeout, "gave up early: {waited:?}");
        assert!(waited < PATIENCE, "gave up far too late: {waited:?}");
        assert_eq!(m.stats().waiting, 0, "a timed-out waiter leaves the queue");
        // The blocking form times out too.
        assert_eq!(
            m.acquire().timeout(timeout).blocking().unwrap_err(),
            Error::Timeout(timeout)
        );
        // The pool is still fine and goes to the next caller.
        drop(holder);
        let next = m.acquire().timeout(timeout).await.unwrap();
        assert_eq!(next.run(|| 1).await.unwrap(), 1);
        drop(next);
        m.stop().await;
    });
}

#[test]
fn timeout_is_not_hit_when_a_pool_frees_up_in_time() {
    let m = builder("aq07").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let holder = m.acquire().blocking().unwrap();
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || m2.acquire().timeout(PATIENCE).blocking().map(|_| ()));
    eventually("waiter queued", || m.stats().waiting == 1);
    drop(holder);
    assert_eq!(waiter.join().unwrap(), Ok(()));
    m.stop_blocking();
}

#[test]
fn zero_timeout_takes_an_idle_pool_or_times_out_at_once() {
    block_on(async {
        let m = builder("aq08").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().timeout(Duration::ZERO).await.unwrap();
        assert_eq!(
            m.acquire().timeout(Duration::ZERO).await.unwrap_err(),
            Error::Timeout(Duration::ZERO)
        );
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn a_dropped_waiting_future_does_not_strand_the_pool() {
    let m = builder("aq09").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let holder = m.acquire().blocking().unwrap();
    // First waiter: an async acquire polled once (queued), then dropped.
    let mut first = Box::pin(m.acquire().owner("dropped").into_future());
    assert!(block_on(poll_once(first.as_mut())).is_none());
    assert_eq!(m.stats().waiting, 1);
    // Second waiter on another thread.
    let m2 = m.clone();
    let second = std::thread::spawn(move || {
        m2.acquire()
            .owner("second")
            .blocking()
            .map(|l| l.owner().map(str::to_owned))
    });
    eventually("second waiter queued", || m.stats().waiting == 2);
    drop(first);
    assert_eq!(m.stats().waiting, 1, "the dropped waiter left the queue");
    drop(holder);
    assert_eq!(second.join().unwrap(), Ok(Some("second".to_owned())));
    eventually("pool back", || m.available_count() == 1);
    assert_eq!(m.leased_count(), 0);
    m.stop_blocking();
}

#[test]
fn a_waiter_dropped_after_being_granted_passes_the_pool_on() {
    let m = builder("aq10").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let holder = m.acquire().blocking().unwrap();
    let mut first = Box::pin(m.acquire().owner("granted-then-dropped").into_future());
    assert!(block_on(poll_once(first.as_mut())).is_none());
    let m2 = m.clone();
    let second = std::thread::spawn(move || {
        m2.acquire()
            .owner("second")
            .blocking()
            .map(|l| l.owner().map(str::to_owned))
    });
    eventually("second waiter queued", || m.stats().waiting == 2);
    // The pool goes to the first waiter, which never polls again...
    drop(holder);
    eventually("first waiter granted", || m.stats().waiting == 1);
    assert_eq!(m.leased_count(), 1);
    // ...and dropping it hands the pool to the second.
    drop(first);
    assert_eq!(second.join().unwrap(), Ok(Some("second".to_owned())));
    eventually("pool back", || m.available_count() == 1);
    m.stop_blocking();
}

#[test]
fn per_call_lease_duration_overrides_the_default() {
    block_on(async {
        let m = builder("aq11")
            .max_pools(2)
            .default_lease(Duration::from_secs(300))
            .lease_grace(Duration::from_secs(4))
            .build()
            .unwrap();
        m.start().await.unwrap();
        let custom = m.acquire().lease(Duration::from_secs(7)).await.unwrap();
        let default = m.acquire().await.unwrap();
        assert_eq!(custom.lease_duration(), Duration::from_secs(7));
        assert_eq!(default.lease_duration(), Duration::from_secs(300));
        assert_eq!(custom.grace(), Duration::from_secs(4));
        assert_eq!(
            custom.soft_expires_at(),
            custom.leased_at() + Duration::from_secs(7)
        );
        assert_eq!(
            custom.hard_expires_at(),
            custom.soft_expires_at() + Duration::from_secs(4)
        );
        let stats = m.stats();
        let entry = stats.leases.iter().find(|l| l.id == *custom.id()).unwrap();
        assert!(entry.until_soft_expiry <= Duration::from_secs(7));
        assert!(entry.until_soft_expiry > Duration::from_secs(6));
        drop((custom, default));
        m.stop().await;
    });
}

#[test]
fn owner_label_is_recorded_on_the_lease_and_in_stats() {
    block_on(async {
        let m = builder("aq12").max_pools(2).build().unwrap();
        m.start().await.unwrap();
        let named = m.acquire().owner("alice").await.unwrap();
        let anonymous = m.acquire().await.unwrap();
        assert_eq!(named.owner(), Some("alice"));
        assert_eq!(anonymous.owner(), None);
        let stats = m.stats();
        let owner_of = |id| {
            stats
                .leases
                .iter()
                .find(|l| &l.id == id)
                .map(|l| l.owner.clone())
                .unwrap()
        };
        assert_eq!(owner_of(named.id()), Some("alice".to_owned()));
        assert_eq!(owner_of(anonymous.id()), None);
        drop((named, anonymous));
        m.stop().await;
    });
}

#[test]
fn acquire_creates_pools_on_demand_up_to_max_pools() {
    block_on(async {
        let m = builder("aq13").max_pools(3).min_pools(1).build().unwrap();
        m.start().await.unwrap();
        assert_eq!(m.total_count(), 1);
        let mut leases = Vec::new();
        for n in 1..=3 {
            leases.push(m.acquire().await.unwrap());
            assert_eq!(m.total_count(), n);
            assert_eq!(m.leased_count(), n);
        }
        assert_eq!(
            m.acquire().wait(false).await.unwrap_err(),
            Error::Unavailable {
                max_pools: 3,
                owner_limit: None,
            }
        );
        assert_eq!(
            m.acquire()
                .timeout(Duration::from_millis(50))
                .await
                .unwrap_err(),
            Error::Timeout(Duration::from_millis(50))
        );
        assert_eq!(m.total_count(), 3, "never above max_pools");
        // Every lease has its own pool: jobs run on three distinct pools.
        let mut pools = std::collections::HashSet::new();
        for lease in &leases {
            let name = lease
                .run(|| std::thread::current().name().unwrap().to_owned())
                .await
                .unwrap();
            assert!(name.starts_with("aq13-"), "{name}");
            pools.insert(name.split('_').next().unwrap().to_owned());
        }
        assert_eq!(pools.len(), 3, "{pools:?}");
        drop(leases);
        m.stop().await;
    });
}

#[test]
fn blocking_acquire_works_from_many_std_threads() {
    let m = builder("aq14").max_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let m = m.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let lease = m.acquire().owner(format!("t{i}")).blocking().unwrap();
                let out = lease.submit(move || i * 2).unwrap().wait().unwrap();
                tx.send(out).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    let mut results: Vec<u64> = rx.iter().collect();
    results.sort_unstable();
    assert_eq!(results, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(m.leased_count(), 0);
    assert!(m.total_count() <= 2);
    assert_eq!(m.stats().waiting, 0);
    m.stop_blocking();
}

#[test]
fn acquire_future_is_send_and_static() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let m = builder("aq15").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let future = m.acquire().owner("spawned").into_future();
    assert_send_static(&future);
    // It outlives the borrow of the manager and completes on another thread.
    let lease = std::thread::spawn(move || block_on(future)).join().unwrap();
    assert_eq!(lease.unwrap().owner(), Some("spawned"));
    m.stop_blocking();
}
