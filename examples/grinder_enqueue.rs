//! `enqueue` returns a `JobHandle` at once: queue work now, collect results
//! later, cancel what you no longer need.
//!
//! Run with `cargo run --example grinder_enqueue`.

use std::time::Duration;

use leasepool::{Error, LeasedExecutorManager, StopMode, ThreadBackend, WorkGrinder};

fn main() -> Result<(), Error> {
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(1)
        .workers_per_pool(2)
        .build()?;
    manager.start_blocking()?;
    let grinder = WorkGrinder::builder(manager.clone())
        .batch_size_threshold(100)
        .max_wait(Duration::from_millis(50))
        .build()?;
    grinder.start_blocking()?;

    let handles: Vec<_> = (1..=5u32)
        .map(|n| grinder.enqueue(move || format!("report {n} rendered")))
        .collect::<Result<_, _>>()?;
    println!("queued: {} pending", grinder.stats().pending);

    // The caller of report 4 went away: its item leaves the queue at once.
    assert!(handles[3].cancel());
    println!(
        "after one cancellation: {} pending",
        grinder.stats().pending
    );

    for (n, handle) in handles.into_iter().enumerate() {
        match handle.wait() {
            Ok(text) => println!("{text}"),
            Err(error) => println!("report {}: {error}", n + 1),
        }
    }

    grinder.stop_blocking(StopMode::Drain);
    manager.stop_blocking();
    Ok(())
}
