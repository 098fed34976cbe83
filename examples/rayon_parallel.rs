//! A data-parallel job on a leased rayon pool: `par_iter()` inside the job
//! runs on the leased pool's threads, never on rayon's global pool.
//!
//! Run with `cargo run --example rayon_parallel --features rayon`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use leasepool::{Error, LeasedExecutorManager, RayonBackend};
use rayon::prelude::*;

fn main() -> Result<(), Error> {
    futures_lite::future::block_on(async {
        let manager = LeasedExecutorManager::builder(RayonBackend::new())
            .max_pools(2)
            .workers_per_pool(2)
            .name_prefix("crunch")
            .build()?;
        manager.start().await?;

        let lease = manager.acquire().owner("checksums").await?;
        let (sum, threads) = lease
            .run(|| {
                let threads = Mutex::new(BTreeSet::new());
                let sum: u64 = (1..=2_000_000u64)
                    .into_par_iter()
                    .map(|x| {
                        if let Some(name) = std::thread::current().name() {
                            threads.lock().unwrap().insert(name.to_owned());
                        }
                        x % 7
                    })
                    .sum();
                (sum, threads.into_inner().unwrap())
            })
            .await?;
        println!("sum of x % 7 over 1..=2,000,000: {sum}");
        println!("threads that did the work: {threads:?}");
        assert!(threads.iter().all(|name| name.starts_with("crunch-")));

        lease.release().await;
        manager.stop().await;
        Ok(())
    })
}
