//! Plain threads (no async runtime at all) share one grinder with
//! `submit_blocking`.
//!
//! Run with `cargo run --example submit_from_thread`.

use std::time::Duration;

use leasepool::{Error, LeasedExecutorManager, StopMode, ThreadBackend, WorkGrinder};

fn main() -> Result<(), Error> {
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(2)
        .workers_per_pool(2)
        .build()?;
    manager.start_blocking()?;
    let grinder = WorkGrinder::builder(manager.clone())
        .batch_size_threshold(8)
        .max_wait(Duration::from_millis(2))
        .build()?;
    grinder.start_blocking()?;

    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let grinder = grinder.clone();
            std::thread::spawn(move || -> Result<u64, Error> {
                let mut sum = 0;
                for i in 0..25 {
                    sum += grinder.submit_blocking(move || t * 100 + i)?;
                }
                Ok(sum)
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let sum = thread.join().expect("submitter thread")?;
        println!("thread {t}: sum of its 25 results = {sum}");
    }

    grinder.stop_blocking(StopMode::Drain);
    manager.stop_blocking();
    Ok(())
}
