//! Counts primes in worker processes.
//!
//! `init` comes first in `main`: the pool starts its workers by running
//! this same executable again, and in those copies `init` serves calls and
//! never returns.
//!
//! Run with `cargo run --example process_cpu_work --features process`.

use std::time::Instant;

use leasepool::process::{ProcessBackend, Registry, init};
use leasepool::{Error, LeasedExecutorManager};

/// Counts the primes in `[from, to)`: plain CPU work, run in a worker.
fn count_primes((from, to): (u64, u64)) -> usize {
    (from.max(2)..to)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}

fn main() -> Result<(), Error> {
    init(Registry::new().register(count_primes));

    let manager = LeasedExecutorManager::builder(ProcessBackend::new())
        .max_pools(1)
        .workers_per_pool(4)
        .name_prefix("primes")
        .build()?;
    manager.start_blocking()?;

    let lease = manager.acquire().owner("prime-counter").blocking()?;
    let started = Instant::now();
    let limit = 2_000_000;
    let chunk = limit / 16;
    // Submit every chunk first, then collect: the 4 workers run in parallel.
    let handles = (0..16)
        .map(|i| lease.submit_call(count_primes, (i * chunk, (i + 1) * chunk)))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut total = 0;
    for handle in handles {
        total += handle.wait()?;
    }
    println!(
        "{total} primes below {limit}, counted by {} worker processes in {:.2?}",
        lease.workers(),
        started.elapsed()
    );
    assert_eq!(total, 148_933);

    drop(lease);
    manager.stop_blocking(); // every worker has exited and been reaped
    Ok(())
}
