//! A long job that keeps its pool by renewing its lease (a keep-alive), and
//! a service-style graceful shutdown with a deadline and a report.
//!
//! Run with `cargo run --example renew_and_shutdown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leasepool::{Error, LeasedExecutorManager, ThreadBackend};

fn main() -> Result<(), Error> {
    futures_lite::future::block_on(async {
        let manager = LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(2)
            .workers_per_pool(1)
            .lease_grace(Duration::from_millis(100))
            .name_prefix("renew-demo")
            .build()?;
        manager.start().await?;

        // A batch export that takes ~1 s, on a lease of 300 ms: without
        // renewal it would be revoked at 400 ms.
        let lease = manager
            .acquire()
            .owner("export")
            .lease(Duration::from_millis(300))
            .await?;
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let job = lease.submit(move || {
            for _chunk in 0..10 {
                std::thread::sleep(Duration::from_millis(100)); // one chunk of work
            }
            flag.store(true, Ordering::Release);
            "exported 10 chunks"
        })?;
        // Keep-alive from a plain thread (`renew` is not async): renew well
        // before hard expiry until the job is done.
        let lease = Arc::new(lease);
        let keeper = {
            let lease = lease.clone();
            std::thread::spawn(move || {
                let mut renewals = 0;
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                    if lease.renew().is_err() {
                        break;
                    }
                    renewals += 1;
                }
                renewals
            })
        };
        let exported = job.await?;
        let renewals = keeper.join().expect("keep-alive thread");
        println!("{exported} after {renewals} renewals");
        let stats = manager.stats();
        println!(
            "lease {} still held, soft expiry in {:?}",
            stats.leases[0].id, stats.leases[0].until_soft_expiry
        );

        // Another request is in flight when the service is told to stop.
        let slow = manager.acquire().owner("slow-request").await?;
        let slow_job = slow.submit(|| {
            std::thread::sleep(Duration::from_millis(150));
            "slow request finished"
        })?;
        let quick_release = async move {
            let out = slow_job.await;
            slow.release().await;
            out
        };

        // SIGTERM: refuse new work, give held leases 2 s, then revoke.
        drop(lease); // the export is done
        let (report, out) =
            futures_lite::future::zip(manager.shutdown(Duration::from_secs(2)), quick_release)
                .await;
        println!("{}", out?);
        println!(
            "shutdown: {} leases held at start, {} ended on their own, {} revoked at the deadline, \
             {} jobs cancelled, took {:?}",
            report.leases_at_start,
            report.ended_on_their_own,
            report.revoked_at_deadline,
            report.jobs_cancelled,
            report.elapsed
        );
        assert!(matches!(manager.acquire().await, Err(Error::NotStarted)));
        Ok(())
    })
}
