//! A quick pass over the main behaviours.

use std::time::Duration;

use leasepool::{Error, LeaseEnd};

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
            Err(Error::Unavailable {
                max_pools: 1,
                owner_limit: None,
            })
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
