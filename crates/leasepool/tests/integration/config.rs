//! docs/guide.md, "Configuring a manager" and "Errors": every configuration rule is enforced at `build()` (or at
//! `acquire` for per-call values) with an error naming the option, nothing
//! is clamped, and every error says something a person can act on.

use std::time::Duration;

use leasepool::{Error, LeaseEnd, LeasedExecutorManager, ManagerBuilder, ThreadBackend};

use crate::common::*;

/// A builder that passes every rule, to break one rule at a time.
fn valid() -> ManagerBuilder<ThreadBackend> {
    builder("cf00").max_pools(2)
}

#[track_caller]
fn rejects(b: ManagerBuilder<ThreadBackend>, field: &str) -> String {
    match b.build() {
        Err(Error::InvalidConfig { field: got, reason }) => {
            assert_eq!(got, field, "wrong field named (reason: {reason})");
            assert!(!reason.is_empty());
            let shown = Error::InvalidConfig { field: got, reason }.to_string();
            assert!(
                shown.contains(field),
                "message does not name {field}: {shown}"
            );
            shown
        }
        Err(other) => panic!("expected InvalidConfig for {field}, got {other:?}"),
        Ok(m) => panic!("expected InvalidConfig for {field}, got a manager: {m:?}"),
    }
}

/// A duration that fits on its own (`now + d` is representable) but not
/// twice: about 146 years short of `Instant`'s limit on every platform we
/// run, yet `now + 2 * d` overflows.
fn half_of_forever() -> Duration {
    let mut d = Duration::from_secs(u64::MAX);
    let now = std::time::Instant::now();
    while now.checked_add(d).is_none() {
        d /= 2;
    }
    d
}

#[test]
fn a_valid_configuration_builds() {
    let m = valid().build().unwrap();
    assert!(!m.is_started());
}

#[test]
fn defaults_match_the_specification() {
    let m = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(3)
        .build()
        .unwrap();
    let c = m.config();
    assert_eq!(c.max_pools(), 3);
    assert_eq!(c.min_pools(), 1);
    assert_eq!(c.units_per_pool(), 10);
    assert_eq!(c.check_interval(), Duration::from_secs(120));
    assert_eq!(c.default_lease(), Duration::from_secs(300));
    assert_eq!(c.lease_grace(), Duration::from_secs(15));
    assert_eq!(c.workers_per_pool(), 4);
    assert_eq!(c.name_prefix(), "leasepool");
    assert_eq!(m.backend_name(), "thread");
}

#[test]
fn max_pools_is_required() {
    let b = LeasedExecutorManager::builder(ThreadBackend::new());
    let shown = rejects(b, "max_pools");
    assert!(shown.contains("required"), "{shown}");
}

#[test]
fn max_pools_zero_is_rejected() {
    rejects(valid().max_pools(0), "max_pools");
}

#[test]
fn min_pools_zero_is_rejected() {
    rejects(valid().min_pools(0), "min_pools");
}

#[test]
fn min_pools_above_max_pools_is_rejected_not_clamped() {
    let shown = rejects(valid().max_pools(2).min_pools(3), "min_pools");
    assert!(shown.contains("max_pools"), "{shown}");
    // Equal is fine.
    let m = valid().max_pools(3).min_pools(3).build().unwrap();
    assert_eq!(m.config().min_pools(), 3);
}

#[test]
fn units_per_pool_zero_is_rejected() {
    rejects(valid().units_per_pool(0), "units_per_pool");
}

#[test]
fn workers_per_pool_zero_is_rejected() {
    rejects(valid().workers_per_pool(0), "workers_per_pool");
}

#[test]
fn check_interval_zero_is_rejected() {
    rejects(valid().check_interval(Duration::ZERO), "check_interval");
}

#[test]
fn default_lease_zero_is_rejected() {
    rejects(valid().default_lease(Duration::ZERO), "default_lease");
}

#[test]
fn durations_that_overflow_the_clock_are_rejected() {
    rejects(valid().check_interval(Duration::MAX), "check_interval");
    rejects(valid().default_lease(Duration::MAX), "default_lease");
    rejects(valid().lease_grace(Duration::MAX), "lease_grace");
}

#[test]
fn a_lease_plus_grace_that_overflows_the_clock_is_rejected() {
    let half = half_of_forever();
    // Each fits alone...
    valid().default_lease(half).build().unwrap();
    valid().lease_grace(half).build().unwrap();
    // ...but hard expiry = now + lease + grace would not.
    match valid().default_lease(half).lease_grace(half).build() {
        Err(Error::InvalidConfig { field, .. }) => {
            assert!(
                field == "default_lease" || field == "lease_grace",
                "{field}"
            );
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn very_long_valid_durations_are_accepted_and_usable() {
    let long = Duration::from_secs(10 * 365 * 24 * 3600);
    let m = valid()
        .check_interval(long)
        .default_lease(long)
        .lease_grace(long)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.lease_duration(), long);
    assert_eq!(lease.hard_expires_at(), lease.leased_at() + long + long);
    assert_eq!(lease.submit(|| 1).unwrap().wait(), Ok(1));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn zero_grace_is_allowed() {
    let m = valid().lease_grace(Duration::ZERO).build().unwrap();
    assert_eq!(m.config().lease_grace(), Duration::ZERO);
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.grace(), Duration::ZERO);
    assert_eq!(lease.hard_expires_at(), lease.soft_expires_at());
    drop(lease);
    m.stop_blocking();
}

#[test]
fn an_empty_name_prefix_is_rejected() {
    let b = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(1)
        .name_prefix("");
    rejects(b, "name_prefix");
}

#[test]
fn a_zero_stack_size_is_rejected() {
    let b = LeasedExecutorManager::builder(ThreadBackend::new().stack_size(0)).max_pools(1);
    rejects(b, "stack_size");
}

#[test]
fn per_call_lease_duration_is_validated_at_acquire() {
    block_on(async {
        let m = builder("cf01").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        for bad in [Duration::ZERO, Duration::MAX] {
            match m.acquire().lease(bad).await {
                Err(Error::InvalidConfig { field, reason }) => {
                    assert!(field.contains("lease"), "{field}: {reason}");
                    assert!(!reason.is_empty());
                }
                other => panic!("expected InvalidConfig for {bad:?}, got {other:?}"),
            }
            assert!(matches!(
                m.acquire().lease(bad).blocking(),
                Err(Error::InvalidConfig { .. })
            ));
        }
        // lease + grace must fit too.
        let half = half_of_forever();
        let graceful = builder("cf04")
            .max_pools(1)
            .default_lease(Duration::from_secs(1))
            .lease_grace(half)
            .build()
            .unwrap();
        graceful.start().await.unwrap();
        assert!(matches!(
            graceful.acquire().lease(half).await,
            Err(Error::InvalidConfig { .. })
        ));
        graceful.stop().await;
        // Nothing was leased or queued by the rejected calls.
        assert_eq!((m.available_count(), m.leased_count()), (1, 0));
        assert_eq!(m.stats().waiting, 0);
        let ok = m.acquire().lease(Duration::from_secs(1)).await.unwrap();
        assert_eq!(ok.lease_duration(), Duration::from_secs(1));
        drop(ok);
        m.stop().await;
    });
}

#[test]
fn invalid_per_call_lease_is_rejected_even_when_no_pool_is_free() {
    block_on(async {
        let m = builder("cf02").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let held = m.acquire().await.unwrap();
        assert!(matches!(
            m.acquire().lease(Duration::ZERO).await,
            Err(Error::InvalidConfig { .. })
        ));
        drop(held);
        m.stop().await;
    });
}

#[test]
fn every_error_says_what_happened_and_what_to_do() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

    // Errors produced by real operations.
    let m = builder("cf03")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    let not_started = m.acquire().blocking().unwrap_err();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let unavailable = m.acquire().wait(false).blocking().unwrap_err();
    let timeout = m
        .acquire()
        .timeout(Duration::from_millis(20))
        .blocking()
        .unwrap_err();
    let panicked = lease
        .submit(|| -> u8 { panic!("cf03 job failed") })
        .unwrap()
        .wait()
        .unwrap_err();
    let id = *lease.id();
    drop(lease);
    let expired = Error::LeaseExpired {
        id,
        reason: LeaseEnd::Released,
    };
    let invalid = valid().max_pools(0).build().unwrap_err();
    m.stop_blocking();

    let cases: Vec<(Error, Vec<String>)> = vec![
        (not_started, vec!["start".into()]),
        (unavailable, vec!["max_pools".into(), "1".into()]),
        (timeout, vec![format!("{:?}", Duration::from_millis(20))]),
        (expired, vec![id.to_string(), "released".into()]),
        (invalid, vec!["max_pools".into()]),
        (panicked, vec!["panic".into(), "cf03 job failed".into()]),
        (
            Error::Broken("worker died".into()),
            vec!["worker died".into()],
        ),
        (Error::Cancelled, vec!["cancel".into()]),
        (
            Error::UnsupportedBackend("process backend not compiled in".into()),
            vec!["process backend not compiled in".into()],
        ),
        (
            Error::InvalidConfig {
                field: "units_per_pool",
                reason: "must be greater than 0".into(),
            },
            vec!["units_per_pool".into(), "greater than 0".into()],
        ),
    ];
    for (error, needles) in cases {
        assert_error(&error);
        let shown = error.to_string();
        assert!(shown.len() > 20, "too terse: {shown:?}");
        for needle in needles {
            assert!(
                shown.to_lowercase().contains(&needle.to_lowercase()),
                "{error:?} displays {shown:?}, which does not mention {needle:?}"
            );
        }
    }
    // Every lease-ending reason reads as a sentence.
    for end in [
        LeaseEnd::Released,
        LeaseEnd::Expired,
        LeaseEnd::Broken,
        LeaseEnd::Stopped,
    ] {
        assert!(!end.to_string().is_empty());
    }
}
