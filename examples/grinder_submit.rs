//! Many async callers (here: 1,000 tokio tasks) each submit one tiny job;
//! the grinder batches them into one lease per batch.
//!
//! Run with `cargo run --example grinder_submit`.

use std::time::{Duration, Instant};

use leasepool::{Error, LeasedExecutorManager, StopMode, ThreadBackend, WorkGrinder};

/// A small synchronous function, like a checksum or a parser call.
fn checksum(payload: u64) -> u64 {
    (0..100).fold(payload, |acc, i| acc.wrapping_mul(31).wrapping_add(i))
}

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let manager = LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(2)
            .workers_per_pool(2)
            .build()?;
        manager.start().await?;
        let grinder = WorkGrinder::builder(manager.clone())
            .batch_size_threshold(50)
            .max_wait(Duration::from_millis(5))
            .lease(Duration::from_secs(60))
            .owner_prefix("checksums")
            .build()?;
        grinder.start().await?;

        let started = Instant::now();
        // Each request handler awaits its own result; the grinder batches
        // the items of concurrent handlers.
        let handlers: Vec<_> = (0..1_000u64)
            .map(|payload| {
                let grinder = grinder.clone();
                tokio::spawn(async move { grinder.submit(move || checksum(payload)).await })
            })
            .collect();
        let mut results = Vec::with_capacity(handlers.len());
        for handler in handlers {
            results.push(handler.await.expect("handler task")?);
        }
        println!(
            "{} results in {:?}; first three: {:?}",
            results.len(),
            started.elapsed(),
            &results[..3]
        );

        grinder.stop(StopMode::Drain).await;
        manager.stop().await;
        Ok(())
    })
}
