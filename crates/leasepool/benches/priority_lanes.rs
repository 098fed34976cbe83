//! Priority lanes under overload: the wait of each lane as the low lane's
//! load grows.
//!
//! ```sh
//! cargo bench -p leasepool --bench priority_lanes
//! ```
//!
//! Two pools; closed-loop clients acquire in their lane, hold the lease for
//! a 200 µs job, release, and go again: 2 `High` clients, 4 `Normal`, and
//! 4, 16 or 64 `Low`. Every configuration runs for `LEASEPOOL_BENCH_SECONDS`
//! (default 2) and prints p50 and p99 of the time from `acquire` to the
//! grant, per lane. The high lane's p99 must stay flat as the low lane's
//! load grows: a freed pool goes to the highest non-empty lane, so a high
//! waiter waits for at most the jobs already running, whatever is queued
//! below it. A last run repeats the heaviest load with
//! `priority_aging(50 ms)`, which bounds the low lane's wait instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leasepool::{LeasedExecutorManager, Priority, ThreadBackend};

const JOB: Duration = Duration::from_micros(200);

fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// Runs one configuration; returns the waits of each lane (high first).
fn run(clients: [usize; 3], aging: Option<Duration>, seconds: f64) -> [Vec<Duration>; 3] {
    let mut builder = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(1)
        .name_prefix("bench-lanes");
    if let Some(aging) = aging {
        builder = builder.priority_aging(aging);
    }
    let m = builder.build().expect("config");
    m.start_blocking().expect("start");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (lane, &n) in clients.iter().enumerate() {
        for _ in 0..n {
            let (m, stop) = (m.clone(), stop.clone());
            let priority = Priority::ALL[lane];
            threads.push((
                lane,
                std::thread::spawn(move || {
                    let mut waits = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let asked = Instant::now();
                        let lease = m.acquire().priority(priority).blocking().expect("acquire");
                        waits.push(asked.elapsed());
                        lease
                            .submit(|| spin(JOB))
                            .expect("submit")
                            .wait()
                            .expect("job");
                        drop(lease);
                    }
                    waits
                }),
            ));
        }
    }
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut waits: [Vec<Duration>; 3] = Default::default();
    for (lane, thread) in threads {
        waits[lane].extend(thread.join().expect("client"));
    }
    m.stop_blocking();
    for lane in &mut waits {
        lane.sort_unstable();
    }
    waits
}

fn main() {
    let seconds: f64 = std::env::var("LEASEPOOL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    println!("two pools, 200 µs jobs, closed-loop clients; wait from acquire to grant");
    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "clients (high/normal/low)",
        "aging",
        "high p50",
        "high p99",
        "norm p50",
        "norm p99",
        "low p50",
        "low p99"
    );
    let configs: [([usize; 3], Option<Duration>); 4] = [
        ([2, 4, 4], None),
        ([2, 4, 16], None),
        ([2, 4, 64], None),
        ([2, 4, 64], Some(Duration::from_millis(50))),
    ];
    for (clients, aging) in configs {
        let waits = run(clients, aging, seconds);
        let cell = |lane: usize, p: f64| format!("{:.2?}", percentile(&waits[lane], p));
        println!(
            "{:<28} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            format!("{}/{}/{}", clients[0], clients[1], clients[2]),
            aging.map_or("none".to_owned(), |a| format!("{a:?}")),
            cell(0, 0.5),
            cell(0, 0.99),
            cell(1, 0.5),
            cell(1, 0.99),
            cell(2, 0.5),
            cell(2, 0.99),
        );
    }
}
