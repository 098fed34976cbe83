//! Lease renewal: `renew` and `renew_for` (keep-alive).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasepool::{Error, LeaseEnd};

use crate::common::*;

#[test]
fn renew_moves_both_expiries_and_keeps_the_grace() {
    let m = builder("rn-move")
        .max_pools(1)
        .lease_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_secs(2))
        .blocking()
        .unwrap();
    let (soft0, hard0) = (lease.soft_expires_at(), lease.hard_expires_at());
    eventually("time to pass", || {
        Instant::now() > lease.leased_at() + Duration::from_millis(20)
    });
    let before = Instant::now();
    lease.renew().unwrap();
    let after = Instant::now();
    let (soft1, hard1) = (lease.soft_expires_at(), lease.hard_expires_at());
    assert!(soft1 > soft0 && hard1 > hard0);
    assert!(soft1 >= before + Duration::from_secs(2) && soft1 <= after + Duration::from_secs(2));
    assert_eq!(hard1 - soft1, Duration::from_millis(500));
    assert_eq!(lease.lease_duration(), Duration::from_secs(2));
    let stats = m.stats();
    assert!(stats.leases[0].until_soft_expiry > Duration::from_millis(1900));

    lease.renew_for(Duration::from_secs(10)).unwrap();
    assert_eq!(lease.lease_duration(), Duration::from_secs(10));
    assert!(lease.soft_expires_at() >= after + Duration::from_secs(10));
    assert_eq!(
        lease.hard_expires_at() - lease.soft_expires_at(),
        Duration::from_millis(500)
    );
    assert!(m.stats().leases[0].until_hard_expiry > Duration::from_secs(9));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn renew_for_validates_the_duration_and_changes_nothing_on_error() {
    let m = builder("rn-valid").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (soft, hard) = (lease.soft_expires_at(), lease.hard_expires_at());
    for bad in [Duration::ZERO, Duration::MAX] {
        match lease.renew_for(bad) {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "lease"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(
        (lease.soft_expires_at(), lease.hard_expires_at()),
        (soft, hard)
    );
    drop(lease);
    m.stop_blocking();
}

#[test]
fn a_renewed_lease_outlives_its_first_hard_expiry() {
    let m = builder("rn-keep")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(300))
        .blocking()
        .unwrap();
    let first_hard = lease.hard_expires_at();
    // Renew every 50 ms until well past the first hard expiry.
    while Instant::now() < first_hard + Duration::from_millis(300) {
        lease.renew().expect("renewal before hard expiry succeeds");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lease.ended(), None);
    assert_eq!(lease.submit(|| 9).unwrap().wait(), Ok(9));
    assert_eq!(m.leased_count(), 1);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn renew_after_the_lease_ended_is_lease_expired_and_changes_nothing() {
    let m = builder("rn-ended")
        .max_pools(2)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();

    // Draining (released with a job pending).
    let lease = m.acquire().blocking().unwrap();
    let (go, gate) = mpsc::channel::<()>();
    let job = lease.submit(move || gate.recv().unwrap()).unwrap();
    let exec = lease.executor();
    let id = *lease.id();
    m.release_now(&id);
    let hard = lease.hard_expires_at();
    assert!(matches!(
        lease.renew(),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    assert_eq!(lease.hard_expires_at(), hard);
    go.send(()).unwrap();
    job.wait().unwrap();
    drop(exec);
    drop(lease);

    // Hard-expired (revoked by the checker).
    let lease = m
        .acquire()
        .lease(Duration::from_millis(50))
        .blocking()
        .unwrap();
    eventually("revocation", || lease.ended() == Some(LeaseEnd::Expired));
    let hard = lease.hard_expires_at();
    assert!(matches!(
        lease.renew(),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Expired,
            ..
        })
    ));
    assert_eq!(lease.hard_expires_at(), hard);
    drop(lease);

    // Stopped manager.
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    m.stop_blocking();
    assert!(matches!(
        lease.renew(),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Stopped,
            ..
        })
    ));
}

#[test]
fn renewal_racing_revocation_has_exactly_one_winner() {
    let m = builder("rn-race")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let (mut renewed, mut revoked) = (0, 0);
    for _ in 0..60 {
        let lease = m
            .acquire()
            .lease(Duration::from_millis(15))
            .timeout(PATIENCE)
            .blocking()
            .unwrap();
        let hard = lease.hard_expires_at();
        // Spin renew() across the hard-expiry instant.
        while Instant::now() + Duration::from_millis(1) < hard {
            std::hint::spin_loop();
        }
        let mut results = Vec::new();
        let until = hard + Duration::from_millis(3);
        while Instant::now() < until {
            results.push(lease.renew_for(Duration::from_millis(1)).is_ok());
        }
        // Once a renewal fails, none succeeds afterwards.
        if let Some(first_fail) = results.iter().position(|ok| !ok) {
            assert!(results[first_fail..].iter().all(|ok| !ok), "{results:?}");
        }
        let last_ok = results.last().copied().unwrap_or(true);
        if last_ok {
            // The lease won: it still holds its pool. Give it a real
            // duration and use it.
            match lease.renew_for(Duration::from_secs(30)) {
                Ok(()) => {
                    renewed += 1;
                    assert_eq!(lease.ended(), None);
                    assert_eq!(m.leased_count(), 1);
                    assert_eq!(lease.submit(|| 1).unwrap().wait(), Ok(1));
                }
                Err(_) => {
                    // The 1 ms renewal itself ran out: that is a revocation.
                    revoked += 1;
                    eventually("revocation", || lease.ended() == Some(LeaseEnd::Expired));
                }
            }
        } else {
            revoked += 1;
            assert_eq!(lease.ended(), Some(LeaseEnd::Expired));
            assert!(matches!(
                lease.submit(|| 1),
                Err(Error::LeaseExpired { .. })
            ));
        }
        drop(lease);
        let s = m.stats();
        assert_eq!(s.available + s.leased, s.total);
        assert!(s.total <= 1);
    }
    assert_eq!(renewed + revoked, 60);
    m.stop_blocking();
    eventually("threads to exit", || threads_named("rn-race").is_empty());
}

#[test]
fn renew_works_from_a_plain_thread_while_async_code_awaits_the_job() {
    let m = builder("rn-thread")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    block_on(async {
        m.start().await.unwrap();
        let lease =
            std::sync::Arc::new(m.acquire().lease(Duration::from_millis(200)).await.unwrap());
        let first_hard = lease.hard_expires_at();
        let (go, gate) = mpsc::channel::<()>();
        let job = lease.submit(move || gate.recv().map(|_| "done")).unwrap();
        let keeper = {
            let lease = lease.clone();
            std::thread::spawn(move || {
                while Instant::now() < first_hard + Duration::from_millis(200) {
                    lease.renew().unwrap();
                    std::thread::sleep(Duration::from_millis(40));
                }
                go.send(()).unwrap();
            })
        };
        assert_eq!(job.await.unwrap(), Ok("done"));
        keeper.join().unwrap();
        assert_eq!(lease.ended(), None);
        drop(lease);
        m.stop().await;
    });
}
