//! Start a manager, lease a pool, run a blocking job on it, print the
//! result and the stats, stop.
//!
//! Run with `cargo run --example quickstart`.

use std::time::Duration;

use leasepool::{Error, LeasedExecutorManager, ThreadBackend};

/// Stands in for a blocking call: a legacy SDK, file I/O, compression.
fn blocking_uppercase(text: &str) -> String {
    std::thread::sleep(Duration::from_millis(20));
    text.to_uppercase()
}

fn main() -> Result<(), Error> {
    // leasepool needs no async runtime; any executor works. This example
    // uses the tiny `block_on` from futures-lite.
    futures_lite::future::block_on(async {
        let manager = LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(2)
            .min_pools(1)
            .workers_per_pool(2)
            .default_lease(Duration::from_secs(30))
            .lease_grace(Duration::from_secs(5))
            .name_prefix("quickstart-worker")
            .build()?;
        manager.start().await?;

        let lease = manager.acquire().owner("quickstart").await?;
        let out = lease.run(|| blocking_uppercase("hello leasepool")).await?;
        println!("result: {out}");
        println!(
            "worker: {}",
            lease
                .run(|| std::thread::current().name().map(str::to_owned))
                .await?
                .unwrap_or_default()
        );

        let stats = manager.stats();
        println!(
            "stats while leased: backend={} available={} leased={} total={} max_pools={}",
            stats.backend, stats.available, stats.leased, stats.total, stats.max_pools
        );
        for lease in &stats.leases {
            println!(
                "  {} owner={} soft expiry in {:.1?}, pending jobs {}",
                lease.id,
                lease.owner.as_deref().unwrap_or("-"),
                lease.until_soft_expiry,
                lease.pending_jobs
            );
        }

        lease.release().await;
        let stats = manager.stats();
        println!(
            "stats after release: available={} leased={} total={}",
            stats.available, stats.leased, stats.total
        );
        manager.stop().await;
        println!("stopped: started={}", manager.is_started());
        Ok(())
    })
}
