//! A quick pass over the main behaviours.

use std::time::Duration;

use leasepool::{Error, LeaseEnd, LeasedExecutorManager, ThreadBackend};

use crate::common::*;

#[test]
fn fifo_timeout_failfast_expiry_drain_broken() {
    block_on(async {
        let m = builder("smoke")
            .max_pools(1)
            .lease_grace(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
        m.start().await.unwrap();
        let a = m.acquire().owner("a").await.unwrap();
        assert!(matches!(
            m.acquire().wait(false).await,
            Err(Error::Unavailable { max_pools: 1 })
        ));
        assert!(matches!(
            m.acquire().timeout(Duration::from_millis(50)).await,
            Err(Error::Timeout(_))
        ));
        // draining
        let exec = a.executor();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = exec
            .submit(move || {
                rx.recv().unwrap();
                7
            })
            .unwrap();
        drop(a);
        assert_eq!(m.leased_count(), 1);
        assert!(m.stats().leases[0].draining);
        assert!(matches!(
            exec.submit(|| 1),
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Released,
                ..
            })
        ));
        tx.send(()).unwrap();
        assert_eq!(h.await.unwrap(), 7);
        eventually("pool back", || m.available_count() == 1);
        // expiry
        let b = m.acquire().lease(Duration::from_millis(100)).await.unwrap();
        eventually("revoked", || b.ended() == Some(LeaseEnd::Expired));
        assert!(matches!(
            b.run(|| 1).await,
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Expired,
                ..
            })
        ));
        eventually("replacement", || m.available_count() == 1);
        // panics
        let c = m.acquire().await.unwrap();
        assert!(
            matches!(c.run(|| panic!("boom")).await, Err(Error::Panicked(msg)) if msg == "boom")
        );
        assert_eq!(c.run(|| 5).await.unwrap(), 5);
        drop(c);
        m.stop().await;
        eventually("threads gone", || threads_named("smoke").is_empty());
    });
}

#[test]
fn broken_initializer_is_replaced() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    let backend = ThreadBackend::new().initializer(move || {
        if c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Err("no db")
        } else {
            Ok(())
        }
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .name_prefix("brk")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let r = lease.submit(|| 1).unwrap().wait();
    assert!(matches!(r, Err(Error::Broken(_))), "{r:?}");
    eventually("retired", || lease.ended() == Some(LeaseEnd::Broken));
    drop(lease);
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(lease.submit(|| 2).unwrap().wait().unwrap(), 2);
    drop(lease);
    m.stop_blocking();
    assert!(
        threads_named("brk").is_empty(),
        "{:?}",
        threads_named("brk")
    );
}
