//! Graceful shutdown with a deadline.

use std::sync::mpsc;
use std::time::Duration;

use leasepool::{Error, LeaseEnd};

use crate::common::*;

#[test]
fn shutdown_of_an_idle_manager_stops_at_once() {
    let m = builder("sd-idle")
        .max_pools(2)
        .min_pools(2)
        .build()
        .unwrap();
    block_on(async {
        m.start().await.unwrap();
        let report = m.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report.leases_at_start, 0);
        assert_eq!(report.ended_on_their_own, 0);
        assert_eq!(report.revoked_at_deadline, 0);
        assert!(report.elapsed < Duration::from_secs(30));
        assert!(!m.is_started());
        assert_eq!(m.total_count(), 0);
    });
    eventually("threads to exit", || threads_named("sd-idle").is_empty());
}

#[test]
fn shutdown_of_a_stopped_manager_is_a_stop() {
    let m = builder("sd-stopped").max_pools(1).build().unwrap();
    let report = m.shutdown_blocking(Duration::from_secs(1));
    assert_eq!(report.leases_at_start, 0);
    assert_eq!(report.revoked_at_deadline, 0);
    assert!(!m.is_started());
}

#[test]
fn held_leases_keep_working_and_end_on_their_own() {
    let m = builder("sd-held").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || m.acquire().blocking().map(drop))
    };
    eventually("a waiter", || m.stats().waiting == 1);
    let shutdown = {
        let m = m.clone();
        std::thread::spawn(move || m.shutdown_blocking(Duration::from_secs(60)))
    };
    // New acquires fail and the waiter is woken with ShuttingDown.
    assert_eq!(waiter.join().unwrap(), Err(Error::ShuttingDown));
    eventually("acquire refused", || {
        matches!(m.acquire().wait(false).blocking(), Err(Error::ShuttingDown))
    });
    assert!(!m.is_started());
    // The held lease still runs work.
    assert_eq!(lease.submit(|| 5).unwrap().wait(), Ok(5));
    assert_eq!(lease.ended(), None);
    drop(lease);
    let report = shutdown.join().unwrap();
    assert_eq!(report.leases_at_start, 1);
    assert_eq!(report.ended_on_their_own, 1);
    assert_eq!(report.revoked_at_deadline, 0);
    assert!(report.elapsed < Duration::from_secs(60));
    eventually("threads to exit", || threads_named("sd-held").is_empty());
}

#[test]
fn leases_still_held_at_the_deadline_are_revoked() {
    let m = builder("sd-late").max_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    let stays = m.acquire().owner("stays").blocking().unwrap();
    let leaves = m.acquire().owner("leaves").blocking().unwrap();
    let (go, gate) = mpsc::channel::<()>();
    let running = stays.submit(move || gate.recv().map(|_| "ran")).unwrap();
    let queued = stays.submit(|| "never").unwrap();
    let shutdown = {
        let m = m.clone();
        std::thread::spawn(move || m.shutdown_blocking(Duration::from_millis(300)))
    };
    eventually("the shutdown to begin", || !m.is_started());
    drop(leaves);
    // At the deadline the held lease is revoked exactly as at hard expiry.
    eventually("the deadline to revoke the held lease", || {
        stays.ended() == Some(LeaseEnd::Expired)
    });
    assert!(matches!(
        stays.submit(|| ""),
        Err(Error::LeaseExpired { .. })
    ));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    go.send(()).unwrap(); // let the running job finish so stop() can return
    let report = shutdown.join().unwrap();
    assert_eq!(running.wait(), Ok(Ok("ran")));
    assert_eq!(report.leases_at_start, 2);
    assert_eq!(report.ended_on_their_own, 1);
    assert_eq!(report.revoked_at_deadline, 1);
    assert!(report.jobs_cancelled >= 1, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(300));
    eventually("threads to exit", || threads_named("sd-late").is_empty());
}

#[test]
fn the_checker_keeps_revoking_expired_leases_during_shutdown() {
    let m = builder("sd-exp")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    block_on(async {
        m.start().await.unwrap();
        let lease = m.acquire().lease(Duration::from_millis(200)).await.unwrap();
        let report = m.shutdown(Duration::from_secs(60)).await;
        assert_eq!(lease.ended(), Some(LeaseEnd::Expired));
        assert_eq!(report.leases_at_start, 1);
        assert_eq!(report.ended_on_their_own, 1);
        assert_eq!(report.revoked_at_deadline, 0);
        assert!(report.elapsed < Duration::from_secs(60));
    });
}

#[test]
fn shutdown_works_under_tokio_and_smol() {
    for runtime in ["tokio", "smol"] {
        let prefix = format!("sd-{runtime}");
        let m = builder(&prefix).max_pools(1).build().unwrap();
        let scenario = {
            let m = m.clone();
            async move {
                m.start().await.unwrap();
                let lease = m.acquire().await.unwrap();
                let job = lease.submit(|| 2 + 2).unwrap();
                let (report, value) =
                    futures_lite::future::zip(m.shutdown(Duration::from_secs(30)), async move {
                        let v = job.await;
                        drop(lease);
                        v
                    })
                    .await;
                assert_eq!(value, Ok(4));
                assert_eq!(report.leases_at_start, 1);
                assert_eq!(report.ended_on_their_own, 1);
            }
        };
        match runtime {
            "tokio" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap()
                .block_on(scenario),
            _ => smol::block_on(scenario),
        }
        eventually("threads to exit", || threads_named(&prefix).is_empty());
    }
}
