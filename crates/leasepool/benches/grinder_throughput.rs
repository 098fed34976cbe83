//! Grinder throughput on tiny jobs, against its floor and its peers, every
//! contender in the same run (rounds alternate between them).
//!
//! Three scenarios:
//!
//! - **chunks**: 20,000 tiny items in chunks of 1,000, each chunk
//!   submitted by a spawned tokio task of its own that awaits its 1,000
//!   futures together (`join_all`); the 20 chunk tasks run at once. The
//!   grinder: one pool of one worker, threshold 64, `max_wait` 5 ms. The
//!   peer: one `spawn_blocking` per item on a runtime built with
//!   `max_blocking_threads(1)`.
//! - **tasks**: the same items and configuration, but each item submitted
//!   from a spawned task of its own, in chunks of 1,000 tasks awaited
//!   together, one chunk after another (a tokio task per item for every
//!   contender).
//! - **submitters**: 64 tasks, each submitting its items one after the
//!   other (one item in flight per task). The grinder: 2 pools x 2
//!   workers, threshold 64, `max_wait` 200 µs. The peer: one
//!   `spawn_blocking` per item, 4 blocking threads.
//!
//! In both, the *floor* runs the same items as one pre-built batch of boxed
//! closures (`Task::new`, leasepool's own job record and completion cell)
//! in one job on one worker thread, their callers waiting exactly as the
//! grinder's do; a *lease per item* acquires, runs and releases per item.
//!
//! `cargo bench -p leasepool --bench grinder_throughput`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short smoke run).
//!
//! For instruction counts, one contender alone:
//! `LEASEPOOL_BENCH_ONLY=chunks/grinder LEASEPOOL_BENCH_ITEMS=20000
//! valgrind --tool=callgrind target/release/deps/grinder_throughput-*`
//! (contenders: `{chunks,tasks,submitters}/{grinder,floor,lease,spawn_blocking}`).

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use leasepool::{LeasedExecutorManager, StopMode, Task, ThreadBackend, WorkGrinder};

const SUBMITTERS: usize = 64;
const CHUNK: usize = 1_000;

fn tiny_job(x: u64) -> u64 {
    // About a hundred nanoseconds of work.
    (0..64).fold(x, |acc, i| {
        acc.wrapping_mul(6364136223846793005).wrapping_add(i)
    })
}

fn manager(pools: usize, workers: usize) -> LeasedExecutorManager {
    let m = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(pools)
        .min_pools(pools)
        .workers_per_pool(workers)
        .name_prefix("bench-grind")
        .build()
        .expect("valid config");
    m.start_blocking().expect("start");
    m
}

fn runtime(blocking_threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(blocking_threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Items per second of `items` items, each from its own spawned task, in
/// chunks of `CHUNK` awaited together.
fn chunks<F, Fut>(runtime: &tokio::runtime::Runtime, items: usize, submit: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send + 'static,
{
    let submit = Arc::new(submit);
    runtime.block_on(async {
        let started = Instant::now();
        let mut acc = 0u64;
        for chunk in 0..items.div_ceil(CHUNK) {
            let base = chunk * CHUNK;
            let tasks: Vec<_> = (base..items.min(base + CHUNK))
                .map(|i| tokio::spawn(submit(i as u64)))
                .collect();
            for task in tasks {
                acc = acc.wrapping_add(task.await.expect("submitter"));
            }
        }
        black_box(acc);
        items as f64 / started.elapsed().as_secs_f64()
    })
}

/// The chunks floor: each chunk's items built as `Task`s at once and run
/// in one job on `floor`'s one worker, each result awaited from its own
/// spawned task.
fn chunks_floor(runtime: &tokio::runtime::Runtime, items: usize, floor: &Floor) -> f64 {
    runtime.block_on(async {
        let started = Instant::now();
        let mut acc = 0u64;
        for chunk in 0..items.div_ceil(CHUNK) {
            let base = chunk * CHUNK;
            let (jobs, handles): (Vec<Task>, Vec<_>) = (base..items.min(base + CHUNK))
                .map(|i| Task::new(move || tiny_job(i as u64)))
                .unzip();
            let tasks: Vec<_> = handles
                .into_iter()
                .map(|h| tokio::spawn(async move { h.await.expect("floor item") }))
                .collect();
            floor.run_batch(jobs);
            for task in tasks {
                acc = acc.wrapping_add(task.await.expect("submitter"));
            }
        }
        black_box(acc);
        items as f64 / started.elapsed().as_secs_f64()
    })
}

/// Items per second of `items` items in chunks of `CHUNK`, every chunk
/// submitted by a spawned task of its own that awaits the chunk's futures
/// together (`join_all`); the chunk tasks run concurrently.
fn joined<F, Fut>(runtime: &tokio::runtime::Runtime, items: usize, submit: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send + 'static,
{
    let submit = Arc::new(submit);
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..items.div_ceil(CHUNK))
            .map(|chunk| {
                let submit = submit.clone();
                tokio::spawn(async move {
                    let base = chunk * CHUNK;
                    let results =
                        join_all((base..items.min(base + CHUNK)).map(|i| submit(i as u64))).await;
                    results.into_iter().fold(0u64, u64::wrapping_add)
                })
            })
            .collect();
        for task in tasks {
            black_box(task.await.expect("chunk task"));
        }
        items as f64 / started.elapsed().as_secs_f64()
    })
}

/// The joined floor: every item built as a `Task` up front and run in one
/// job on `floor`'s one worker; each chunk's handles awaited together by a
/// spawned task of its own.
fn joined_floor(runtime: &tokio::runtime::Runtime, items: usize, floor: &Floor) -> f64 {
    runtime.block_on(async {
        let started = Instant::now();
        let mut jobs = Vec::with_capacity(items);
        let mut tasks = Vec::new();
        for chunk in 0..items.div_ceil(CHUNK) {
            let base = chunk * CHUNK;
            let handles: Vec<_> = (base..items.min(base + CHUNK))
                .map(|i| {
                    let (job, handle) = Task::new(move || tiny_job(i as u64));
                    jobs.push(job);
                    async move { handle.await.expect("floor item") }
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                join_all(handles)
                    .await
                    .into_iter()
                    .fold(0u64, u64::wrapping_add)
            }));
        }
        floor.run_batch(jobs);
        for task in tasks {
            black_box(task.await.expect("chunk task"));
        }
        items as f64 / started.elapsed().as_secs_f64()
    })
}

/// Items per second: `SUBMITTERS` tasks, each submitting `per_task` items
/// one after the other.
fn submitters<F, Fut>(runtime: &tokio::runtime::Runtime, per_task: usize, submit: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send + 'static,
{
    let submit = Arc::new(submit);
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let submit = submit.clone();
                tokio::spawn(async move {
                    let mut acc = 0u64;
                    for i in 0..per_task {
                        acc = acc.wrapping_add(submit((t * per_task + i) as u64).await);
                    }
                    acc
                })
            })
            .collect();
        for task in tasks {
            black_box(task.await.expect("submitter"));
        }
        (SUBMITTERS * per_task) as f64 / started.elapsed().as_secs_f64()
    })
}

/// The submitters floor: every item built as a `Task` up front and run in
/// one job on `floor`'s one worker; each of the `SUBMITTERS` tasks awaits
/// its own items in order.
fn submitters_floor(runtime: &tokio::runtime::Runtime, per_task: usize, floor: &Floor) -> f64 {
    runtime.block_on(async {
        let started = Instant::now();
        let mut jobs = Vec::with_capacity(SUBMITTERS * per_task);
        let mut handles: Vec<Vec<_>> = (0..SUBMITTERS)
            .map(|_| Vec::with_capacity(per_task))
            .collect();
        // Round-robin, the order a grinder would see them.
        for i in 0..per_task {
            for (t, mine) in handles.iter_mut().enumerate() {
                let x = (t * per_task + i) as u64;
                let (job, handle) = Task::new(move || tiny_job(x));
                jobs.push(job);
                mine.push(handle);
            }
        }
        let tasks: Vec<_> = handles
            .into_iter()
            .map(|mine| {
                tokio::spawn(async move {
                    let mut acc = 0u64;
                    for h in mine {
                        acc = acc.wrapping_add(h.await.expect("floor item"));
                    }
                    acc
                })
            })
            .collect();
        floor.run_batch(jobs);
        for task in tasks {
            black_box(task.await.expect("submitter"));
        }
        (SUBMITTERS * per_task) as f64 / started.elapsed().as_secs_f64()
    })
}

/// One worker thread (a leased one-worker pool) that runs a whole batch of
/// tasks as one job.
struct Floor {
    manager: LeasedExecutorManager,
    lease: leasepool::ExecutorLease,
}

impl Floor {
    fn new() -> Self {
        let manager = manager(1, 1);
        let lease = manager
            .acquire()
            .lease(Duration::from_secs(3600))
            .blocking()
            .expect("the floor's pool");
        Floor { manager, lease }
    }

    fn run_batch(&self, jobs: Vec<Task>) {
        let job = self
            .lease
            .submit(move || jobs.into_iter().for_each(Task::run))
            .expect("floor job");
        drop(job); // detached: the items' own handles report
    }

    fn stop(self) {
        drop(self.lease);
        self.manager.stop_blocking();
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

const CONTENDERS: [&str; 4] = ["grinder", "floor", "lease", "spawn_blocking"];

/// One scenario's contenders, measured in alternating rounds.
struct Scenario {
    name: &'static str,
    samples: [Vec<f64>; 4],
}

impl Scenario {
    fn report(&self, describe: &str, peer: &str) {
        let m: Vec<f64> = self.samples.iter().map(|s| median(s.clone())).collect();
        let g = m[0];
        println!();
        println!("{describe}; median of {} rounds", self.samples[0].len());
        println!("| path | items/s | grinder / path |");
        println!("|---|---:|---:|");
        let rows = [
            "WorkGrinder",
            "floor: one pre-built batch of Tasks, one job, one worker",
            "lease per item (acquire + run + release)",
            peer,
        ];
        for (row, rate) in rows.iter().zip(&m) {
            println!("| {row} | {rate:.0} | {:.2} |", g / rate);
        }
        let vs_peer = g / m[3];
        let vs_floor = m[1] / g;
        println!(
            "targets ({}): grinder >= 2.0x spawn_blocking: {:.2}x {}; within 1.5x of the floor: {:.2}x {}",
            self.name,
            vs_peer,
            if vs_peer >= 2.0 { "met" } else { "MISSED" },
            vs_floor,
            if vs_floor <= 1.5 { "met" } else { "MISSED" },
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let quick = std::env::var_os("LEASEPOOL_BENCH_QUICK").is_some();
    let only = std::env::var("LEASEPOOL_BENCH_ONLY").ok();
    let items_override: Option<usize> = std::env::var("LEASEPOOL_BENCH_ITEMS")
        .ok()
        .map(|v| v.parse().expect("LEASEPOOL_BENCH_ITEMS: a number"));
    let rounds = if only.is_some() {
        1
    } else if quick {
        3
    } else {
        7
    };
    let runs = |scenario: &str, contender: &str| match &only {
        None => true,
        Some(only) => *only == format!("{scenario}/{contender}"),
    };

    // Scenarios 1 and 2: 20,000 items in chunks of 1,000.
    let chunk_items = items_override.unwrap_or(if quick { 4_000 } else { 20_000 });
    let rt = runtime(4);
    let rt_peer = runtime(1);
    let m = manager(1, 1);
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(64)
        .max_wait(Duration::from_millis(5))
        .build()
        .expect("valid grinder");
    grinder.start_blocking().expect("start grinder");
    let floor = Floor::new();
    // "chunks": a task per chunk, join_all; "tasks": a task per item.
    for scenario in ["chunks", "tasks"] {
        let per_item_task = scenario == "tasks";
        // The same contender through either driver (generic functions).
        macro_rules! driver {
            ($rt:expr, $items:expr, $submit:expr) => {
                if per_item_task {
                    chunks($rt, $items, $submit)
                } else {
                    joined($rt, $items, $submit)
                }
            };
        }
        let mut s = Scenario {
            name: scenario,
            samples: Default::default(),
        };
        for _ in 0..rounds {
            for (c, name) in CONTENDERS.iter().enumerate() {
                if !runs(scenario, name) {
                    continue;
                }
                let rate = match c {
                    0 => {
                        let g = grinder.clone();
                        driver!(&rt, chunk_items, move |x| {
                            let run = g.submit(move || tiny_job(x));
                            async move { run.await.expect("grinder item") }
                        })
                    }
                    1 if per_item_task => chunks_floor(&rt, chunk_items, &floor),
                    1 => joined_floor(&rt, chunk_items, &floor),
                    2 => {
                        let lm = m.clone();
                        driver!(&rt, chunk_items, move |x| {
                            let lm = lm.clone();
                            async move {
                                let lease = lm.acquire().await.expect("lease");
                                lease.run(move || tiny_job(x)).await.expect("job")
                            }
                        })
                    }
                    _ => driver!(&rt_peer, chunk_items, |x| async move {
                        tokio::task::spawn_blocking(move || tiny_job(x))
                            .await
                            .expect("spawn_blocking")
                    }),
                };
                if only.is_some() {
                    println!("{scenario}/{name}: {rate:.0} items/s");
                }
                s.samples[c].push(rate);
            }
        }
        if only.is_none() {
            let how = if per_item_task {
                format!(
                    "one spawned task per item, chunks of {CHUNK} awaited together, one chunk \
                     after another"
                )
            } else {
                format!(
                    "chunks of {CHUNK}, each submitted by a spawned task of its own and \
                     awaited together (join_all), all chunks at once"
                )
            };
            s.report(
                &format!(
                    "{scenario}: {chunk_items} tiny items, {how}; grinder: 1 pool x 1 worker, \
                     threshold 64, max_wait 5 ms"
                ),
                "tokio spawn_blocking per item (max_blocking_threads(1))",
            );
        }
    }
    grinder.stop_blocking(StopMode::Drain);
    m.stop_blocking();

    // Scenario 3: 64 submitters, one item in flight each.
    let per_task = items_override
        .map(|n| n.div_ceil(SUBMITTERS))
        .unwrap_or(if quick { 20 } else { 200 });
    let m = manager(2, 2);
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(64)
        .max_wait(Duration::from_micros(200))
        .build()
        .expect("valid grinder");
    grinder.start_blocking().expect("start grinder");
    let mut s = Scenario {
        name: "submitters",
        samples: Default::default(),
    };
    for _ in 0..rounds {
        for (c, name) in CONTENDERS.iter().enumerate() {
            if !runs("submitters", name) {
                continue;
            }
            let rate = match c {
                0 => {
                    let g = grinder.clone();
                    submitters(&rt, per_task, move |x| {
                        let run = g.submit(move || tiny_job(x));
                        async move { run.await.expect("grinder item") }
                    })
                }
                1 => submitters_floor(&rt, per_task, &floor),
                2 => {
                    let lm = m.clone();
                    submitters(&rt, per_task, move |x| {
                        let lm = lm.clone();
                        async move {
                            let lease = lm.acquire().await.expect("lease");
                            lease.run(move || tiny_job(x)).await.expect("job")
                        }
                    })
                }
                _ => submitters(&rt, per_task, |x| async move {
                    tokio::task::spawn_blocking(move || tiny_job(x))
                        .await
                        .expect("spawn_blocking")
                }),
            };
            if only.is_some() {
                println!("submitters/{name}: {rate:.0} items/s");
            }
            s.samples[c].push(rate);
        }
    }
    grinder.stop_blocking(StopMode::Drain);
    m.stop_blocking();
    floor.stop();
    if only.is_none() {
        s.report(
            &format!(
                "submitters: {SUBMITTERS} tasks x {per_task} items, one in flight each; \
                 grinder: 2 pools x 2 workers, threshold 64, max_wait 200 µs"
            ),
            "tokio spawn_blocking per item (4 blocking threads)",
        );
    }
}
