//! The one-await forms (`manager.run`, `manager.call`), the builder's
//! `acquire_timeout`, `Error::is_retryable` and the counters in `stats()`.

use std::sync::mpsc;
use std::time::Duration;

use leasepool::{Error, LeaseEnd};

use crate::common::*;

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn manager_run_and_call_acquire_run_and_release_in_one_await() {
    let m = builder("cv01").max_pools(1).build().unwrap();
    block_on(async {
        m.start().await.unwrap();
        assert_eq!(m.run(|| 6 * 7).await, Ok(42));
        assert_eq!(m.call(double, 21).await, Ok(42));
        assert!(matches!(
            m.run(|| -> u8 { panic!("inside run") }).await,
            Err(Error::Panicked(message)) if message.contains("inside run")
        ));
        // Every lease went back.
        assert_eq!(m.leased_count(), 0);
        let counters = m.stats().counters;
        assert_eq!(counters.acquired, 3);
        assert_eq!(counters.leases_released, 3);
        assert_eq!(counters.jobs_completed, 2, "{counters:?}");
        assert_eq!(counters.jobs_panicked, 1, "{counters:?}");
        assert_eq!(counters.jobs_cancelled, 0, "{counters:?}");
        m.stop().await;
        assert_eq!(m.run(|| 1).await, Err(Error::NotStarted));
    });
}

#[test]
fn acquire_timeout_is_the_default_time_out_and_an_explicit_one_wins() {
    let m = builder("cv02")
        .max_pools(1)
        .acquire_timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    assert_eq!(
        m.config().acquire_timeout(),
        Some(Duration::from_millis(30))
    );
    m.start_blocking().unwrap();
    let held = m.acquire().blocking().unwrap();
    assert_eq!(
        m.acquire().blocking().unwrap_err(),
        Error::Timeout(Duration::from_millis(30))
    );
    assert_eq!(
        m.acquire()
            .timeout(Duration::from_millis(10))
            .blocking()
            .unwrap_err(),
        Error::Timeout(Duration::from_millis(10))
    );
    // wait(false) never waits, whatever the default.
    assert!(matches!(
        m.acquire().wait(false).blocking(),
        Err(Error::Unavailable {
            max_pools: 1,
            owner_limit: None,
        })
    ));
    drop(held);
    m.stop_blocking();
    assert!(matches!(
        builder("cv02b")
            .max_pools(1)
            .acquire_timeout(Duration::ZERO)
            .build(),
        Err(Error::InvalidConfig {
            field: "acquire_timeout",
            ..
        })
    ));
}

#[test]
fn retryable_errors_are_those_a_later_try_or_a_new_lease_can_fix() {
    let m = builder("cv03").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let held = m.acquire().blocking().unwrap();
    let unavailable = m.acquire().wait(false).blocking().unwrap_err();
    let timeout = m
        .acquire()
        .timeout(Duration::from_millis(5))
        .blocking()
        .unwrap_err();
    let id = *held.id();
    drop(held);
    let expired = Error::LeaseExpired {
        id,
        reason: LeaseEnd::Expired,
    };
    for retryable in [
        unavailable,
        timeout,
        expired,
        Error::Broken("a worker died".to_owned()),
    ] {
        assert!(retryable.is_retryable(), "{retryable:?}");
    }
    m.stop_blocking();
    let not_started = m.acquire().blocking().unwrap_err();
    for final_error in [
        not_started,
        Error::ShuttingDown,
        Error::Panicked("bug".to_owned()),
        Error::Cancelled,
        Error::invalid("max_pools", "must be greater than 0"),
        Error::LeaseExpired {
            id,
            reason: LeaseEnd::Stopped,
        },
        Error::CallTimedOut {
            function: "slow",
            limit: Duration::from_secs(1),
        },
    ] {
        assert!(!final_error.is_retryable(), "{final_error:?}");
    }
}

#[test]
fn messages_name_a_lease_once() {
    let m = builder("cv04").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let executor = lease.executor();
    drop(lease);
    let error = executor.submit(|| 1).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("lease-"), "{message}");
    assert!(!message.contains("lease lease-"), "{message}");
    m.stop_blocking();
}

#[test]
fn counters_follow_what_happened() {
    let m = builder("cv05")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let before = m.stats().counters;
    assert_eq!(before.pools_created, 1);

    // One lease at once, one after a wait.
    let first = m.acquire().blocking().unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || {
            let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
            tx.send(()).unwrap();
            lease.renew().unwrap();
            drop(lease);
        })
    };
    eventually("a waiter", || m.stats().waiting == 1);
    drop(first);
    rx.recv_timeout(PATIENCE).unwrap();
    waiter.join().unwrap();

    // One time-out, one fail-fast, one revocation.
    let held = m
        .acquire()
        .lease(Duration::from_millis(20))
        .blocking()
        .unwrap();
    let _ = m.acquire().wait(false).blocking();
    eventually("the short lease is revoked", || held.ended().is_some());
    drop(held);
    // Once the revoked pool is replaced, the next acquire does not wait.
    eventually("the revoked pool is replaced", || m.available_count() == 1);
    let short = m.acquire().blocking().unwrap();
    let _ = m.acquire().timeout(Duration::from_millis(5)).blocking();
    // One job cancelled while queued behind a running one.
    let (go, gate) = mpsc::channel::<()>();
    let running = short.submit(move || gate.recv().is_ok()).unwrap();
    let queued = short.submit(|| true).unwrap();
    assert!(queued.cancel());
    go.send(()).unwrap();
    assert_eq!(running.wait(), Ok(true));
    drop(short);

    let c = m.stats().counters;
    assert_eq!(c.acquired, 4, "{c:?}");
    assert_eq!(c.acquired_after_wait, 1, "{c:?}");
    assert!(c.wait_time_total > Duration::ZERO, "{c:?}");
    assert_eq!(c.wait_time_max, c.wait_time_total, "one wait: {c:?}");
    assert_eq!(c.unavailable, 1, "{c:?}");
    assert_eq!(c.timed_out, 1, "{c:?}");
    assert_eq!(c.leases_renewed, 1, "{c:?}");
    assert_eq!(c.leases_revoked, 1, "{c:?}");
    assert_eq!(c.leases_released, 3, "{c:?}");
    assert_eq!(c.pools_created, 2, "the revoked pool was replaced: {c:?}");
    assert_eq!(c.pools_broken, 0, "{c:?}");
    assert_eq!((c.jobs_completed, c.jobs_cancelled), (1, 1), "{c:?}");
    m.stop_blocking();
    assert_eq!(m.stats().counters, c, "stop changes no counter");
}
