//! Costs that must stay flat as the number of leases held grows.
//!
//! ```sh
//! cargo bench -p leasepool --bench lease_scaling
//! ```
//!
//! With 10, 1,000 and 10,000 leases held at once (`max_pools` raised to
//! match, on a backend whose pools run jobs inline so that only the
//! manager is measured), per operation:
//!
//! - acquire + release of one more lease;
//! - renewing a held lease;
//! - one checker pass (revoke what expired, plan creations, time waiters
//!   out, warn of soft expiry, compute the next deadline) with nothing due;
//! - `stats()`, per lease it lists (it lists every lease, so the call
//!   itself grows with them).
//!
//! Each must stay within 1.5x of the smallest size; the last column says.

use std::time::{Duration, Instant};

use leasepool::{
    BackendPool, Error, ExecutorBackend, LeasedExecutorManager, LocalBackend, PoolContext, Task,
};

/// Pools that run each job on the calling thread: no threads to create.
struct Inline;
struct InlinePool;

impl ExecutorBackend for Inline {
    type Pool = InlinePool;
    fn name(&self) -> &'static str {
        "inline"
    }
    fn create_pool(&self, _: PoolContext) -> Result<InlinePool, Error> {
        Ok(InlinePool)
    }
}

impl BackendPool for InlinePool {
    fn execute(&self, task: Task) {
        task.run();
    }
    fn shutdown(&self) {}
}

impl LocalBackend for Inline {}

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    // Warm up, then take the best of three rounds (the machine is shared).
    for _ in 0..iterations / 10 {
        f();
    }
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                f();
            }
            started.elapsed() / iterations
        })
        .min()
        .expect("three rounds")
}

fn main() {
    let mut rows: [Vec<Duration>; 4] = Default::default();
    for held in SIZES {
        let m = LeasedExecutorManager::builder(Inline)
            .max_pools(held + 1)
            .min_pools(held + 1)
            .workers_per_pool(1)
            .check_interval(Duration::from_secs(3600))
            .default_lease(Duration::from_secs(3600))
            .build()
            .expect("config");
        m.start_blocking().expect("start");
        let leases: Vec<_> = (0..held)
            .map(|i| {
                m.acquire()
                    .owner(format!("holder-{}", i % 7))
                    .blocking()
                    .expect("lease")
            })
            .collect();
        rows[0].push(per_op(20_000, || {
            drop(m.acquire().blocking().expect("one more"));
        }));
        let renewed = &leases[held / 2];
        rows[1].push(per_op(20_000, || renewed.renew().expect("renew")));
        rows[2].push(per_op(5_000, || m.checker_pass_for_benchmarks()));
        let stats_iterations = (200_000 / held).max(10) as u32;
        rows[3].push(per_op(stats_iterations, || assert_eq!(m.stats().leased, held)) / held as u32);
        drop(leases);
        m.stop_blocking();
    }
    println!(
        "| operation | {} |  worst / smallest |",
        SIZES.map(|n| format!("{n} leases held")).join(" | ")
    );
    println!("|---|---|---|---|---|");
    let names = [
        "acquire + release",
        "renew",
        "checker pass",
        "stats(), per lease listed",
    ];
    for (name, row) in names.iter().zip(&rows) {
        let smallest = row[0].as_secs_f64();
        let worst = row.iter().map(Duration::as_secs_f64).fold(0.0, f64::max);
        let cells: Vec<String> = row.iter().map(|d| format!("{} ns", d.as_nanos())).collect();
        println!(
            "| {name} | {} | {:.2}x |",
            cells.join(" | "),
            worst / smallest
        );
    }
}
