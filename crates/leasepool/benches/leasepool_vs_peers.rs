//! leasepool against what a user would use instead, measured in one run.
//!
//! ```text
//! cargo bench -p leasepool --bench leasepool_vs_peers            # full run, ~1 min
//! cargo bench -p leasepool --bench leasepool_vs_peers -- --quick # smoke test, ~10 s
//! LEASEPOOL_BENCH_QUICK=1 cargo bench -p leasepool --bench leasepool_vs_peers
//! cargo bench -p leasepool --bench leasepool_vs_peers -- s4      # one scenario
//! ```
//!
//! A criterion filter selects scenarios as usual (`s1_`, `s2_`, `s3_`);
//! the contention scenario runs when the filter is a substring of
//! `s4_contention` or absent.
//!
//! Scenarios (see `docs/performance.md` for the discussion of results):
//!
//! 1. `s1_acquire_release`: acquire + release of an idle pool, uncontended,
//!    against `deadpool::managed::Pool::get` + drop with a trivial manager.
//!    Both on a tokio current-thread runtime, and on
//!    `futures_lite::future::block_on`.
//! 2. `s2_run_round_trip`: one `lease.run(|| 1).await` on a held lease,
//!    against `tokio::task::spawn_blocking`, `blocking::unblock`, and the
//!    floor: one dedicated thread fed closures over a channel, answering over
//!    a `oneshot`. Every contender is awaited from a task spawned on the same
//!    tokio multi-thread runtime (2 workers); leasepool and the floor are
//!    also measured under `futures_lite::future::block_on`.
//! 3. `s3_full_cycle`: acquire + run + release against a tokio
//!    `Semaphore(1)` permit + `spawn_blocking` + drop, on the tokio
//!    multi-thread runtime.
//! 4. contention (custom timing loop): 64 tasks, 4 one-worker pools, each
//!    task doing acquire -> ~50 µs job -> release for a number of rounds,
//!    against `Semaphore(4)` + `spawn_blocking` with
//!    `max_blocking_threads(4)`. Reports jobs/s and the p50/p99 of the time
//!    from starting to acquire until holding the lease/permit, as the median
//!    over several alternating repetitions; on Linux also the process CPU
//!    time and context switches per job (from `/proc`).
//!
//! Scenarios 2 and 3 are measured twice: by criterion (one contender after
//! the other) and interleaved (short blocks, cycling through the
//! contenders), because thread wake-up latency on a small shared machine
//! switches between regimes every few seconds; the summary uses the
//! interleaved medians.
//!
//! Criterion prints its usual per-benchmark output; a summary table with the
//! leasepool/peer ratio per scenario is printed at the end. Criterion's
//! `--quick` flag or `LEASEPOOL_BENCH_QUICK=1` shortens everything (smoke
//! test for CI; the numbers are then rough).

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use leasepool::{LeasedExecutorManager, ThreadBackend};

// ----- configuration -------------------------------------------------------

/// How long the whole run may take.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Shortened everything (env var or `--quick`).
    quick: bool,
    /// Criterion's own `--quick` mode: it keeps only its last two samples.
    criterion_quick: bool,
    /// Criterion's test mode (no `--bench` on the command line): every
    /// benchmark runs once; the numbers mean nothing.
    test_mode: bool,
    warm_up: Duration,
    measurement: Duration,
    sample_size: usize,
    /// Scenario 4: rounds per task and repetitions per contender.
    contention_rounds: usize,
    contention_reps: usize,
    /// Run the contention scenario (skipped when a criterion filter on the
    /// command line does not match `s4_contention`, and under `--list`).
    contention: bool,
}

/// Criterion options that take a value (the value is not a filter).
const VALUE_OPTIONS: &[&str] = &[
    "-c",
    "--color",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

/// The positional filter criterion will apply, if any.
fn criterion_filter(args: &[String]) -> Option<&str> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if VALUE_OPTIONS.contains(&arg.as_str()) {
            rest.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

impl Profile {
    fn from_env() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let env_quick = std::env::var("LEASEPOOL_BENCH_QUICK")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        let flag_quick = args.iter().any(|a| a == "--quick");
        let test_mode = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
        let quick = env_quick || flag_quick || test_mode;
        let contention = !args
            .iter()
            .any(|a| a == "--list" || a.starts_with("--profile-time"))
            && criterion_filter(&args).is_none_or(|f| "s4_contention".contains(f));
        if env_quick {
            Profile {
                quick,
                criterion_quick: flag_quick,
                test_mode,
                warm_up: Duration::from_millis(200),
                measurement: Duration::from_millis(400),
                sample_size: 10,
                contention_rounds: 10,
                contention_reps: 1,
                contention,
            }
        } else if quick {
            // Criterion's own --quick mode ignores warm-up and sample size
            // and stops once the estimate is stable (at most `measurement`).
            Profile {
                quick,
                criterion_quick: flag_quick,
                test_mode,
                warm_up: Duration::from_millis(300),
                measurement: Duration::from_millis(800),
                sample_size: 10,
                contention_rounds: 10,
                contention_reps: 1,
                contention,
            }
        } else {
            Profile {
                quick,
                criterion_quick: flag_quick,
                test_mode,
                warm_up: Duration::from_secs(1),
                measurement: Duration::from_millis(2500),
                sample_size: 30,
                contention_rounds: 120,
                contention_reps: 7,
                contention,
            }
        }
    }
}

/// Scenario 4 shape.
const CONTENTION_TASKS: usize = 64;
const CONTENTION_POOLS: usize = 4;
/// Target length of one contention job, calibrated as fixed CPU work.
const CONTENTION_JOB: Duration = Duration::from_micros(50);

/// Leases in the benchmarks never come near expiry.
const LONG_LEASE: Duration = Duration::from_secs(3600);

// ----- runtimes and helpers -----------------------------------------------

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio current-thread runtime")
}

fn multi_thread_runtime(max_blocking: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    if let Some(n) = max_blocking {
        builder.max_blocking_threads(n);
    }
    builder.build().expect("tokio multi-thread runtime")
}

fn manager(pools: usize, prefix: &str) -> LeasedExecutorManager<ThreadBackend> {
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(pools)
        .min_pools(pools)
        .workers_per_pool(1)
        .default_lease(LONG_LEASE)
        .name_prefix(prefix)
        .build()
        .expect("valid manager config");
    manager.start_blocking().expect("manager starts");
    manager
}

/// Runs `body(iters)` as a task on the multi-thread runtime `rt` (so it is
/// driven by a runtime worker thread, like real async code) and returns the
/// time it measured.
fn on_worker<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, body: F) -> Duration
where
    F: FnOnce(u64) -> Fut,
    Fut: Future<Output = Duration> + Send + 'static,
{
    let task = rt.spawn(body(iters));
    rt.block_on(task).expect("benchmark task panicked")
}

/// A trivial deadpool manager: objects are unit-like integers.
struct TrivialManager;

impl deadpool::managed::Manager for TrivialManager {
    type Type = u64;
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _obj: &mut u64,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

type DeadPool = deadpool::managed::Pool<TrivialManager>;

fn deadpool_pool() -> DeadPool {
    deadpool::managed::Pool::builder(TrivialManager)
        .max_size(1)
        .build()
        .expect("deadpool builds")
}

/// The floor of scenario 2: one thread that runs boxed closures from a
/// channel. Each round trip sends one closure and awaits a `oneshot`.
#[derive(Clone)]
struct DedicatedThread {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl DedicatedThread {
    fn spawn() -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("bench-dedicated".to_owned())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .expect("spawn the dedicated thread");
        DedicatedThread { jobs }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .expect("dedicated thread alive");
        rx.await.expect("dedicated thread answered")
    }
}

// ----- recording criterion samples for the summary -------------------------

/// The per-iteration times criterion measured for one benchmark, kept so
/// the summary can print ratios. Criterion calls the routine for warm-up
/// first and for the measured samples last, so the tail is what counts.
#[derive(Default)]
struct Samples(Vec<(u64, Duration)>);

impl Samples {
    fn record(&mut self, iters: u64, elapsed: Duration) -> Duration {
        self.0.push((iters, elapsed));
        elapsed
    }

    /// Median ns per iteration over the measured samples.
    fn median_ns(&self, profile: &Profile) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let tail = if profile.test_mode {
            1
        } else if profile.criterion_quick {
            2
        } else {
            profile.sample_size
        };
        let start = self.0.len().saturating_sub(tail);
        let mut per_iter: Vec<f64> = self.0[start..]
            .iter()
            .map(|(iters, d)| d.as_nanos() as f64 / (*iters).max(1) as f64)
            .collect();
        Some(median(&mut per_iter))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One benchmark's median, by name, for the summary.
#[derive(Default)]
struct Results(Vec<(&'static str, f64)>);

impl Results {
    fn put(&mut self, name: &'static str, samples: &Samples, profile: &Profile) {
        if let Some(ns) = samples.median_ns(profile) {
            self.0.push((name, ns));
        }
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

// ----- scenario 1: acquire + release ---------------------------------------

fn scenario_acquire_release(c: &mut Criterion, profile: &Profile, results: &mut Results) {
    let rt = current_thread_runtime();
    let manager = manager(1, "bench-s1");
    let pool = deadpool_pool();
    let mut group = c.benchmark_group("s1_acquire_release");

    let mut s = Samples::default();
    group.bench_function("leasepool/tokio-current-thread", |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let lease = manager.acquire().await.expect("acquire");
                    black_box(&lease);
                    lease.release().await;
                }
                start.elapsed()
            });
            s.record(iters, elapsed)
        });
    });
    results.put("s1.leasepool.tokio", &s, profile);

    let mut s = Samples::default();
    group.bench_function("deadpool/tokio-current-thread", |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let object = pool.get().await.expect("deadpool get");
                    black_box(&object);
                    drop(object);
                }
                start.elapsed()
            });
            s.record(iters, elapsed)
        });
    });
    results.put("s1.deadpool.tokio", &s, profile);

    let mut s = Samples::default();
    group.bench_function("leasepool/block_on", |b| {
        b.iter_custom(|iters| {
            let elapsed = futures_lite::future::block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let lease = manager.acquire().await.expect("acquire");
                    black_box(&lease);
                    lease.release().await;
                }
                start.elapsed()
            });
            s.record(iters, elapsed)
        });
    });
    results.put("s1.leasepool.block_on", &s, profile);

    let mut s = Samples::default();
    group.bench_function("deadpool/block_on", |b| {
        b.iter_custom(|iters| {
            let elapsed = futures_lite::future::block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let object = pool.get().await.expect("deadpool get");
                    black_box(&object);
                    drop(object);
                }
                start.elapsed()
            });
            s.record(iters, elapsed)
        });
    });
    results.put("s1.deadpool.block_on", &s, profile);

    group.finish();
    manager.stop_blocking();
}

// ----- scenarios 2 and 3: round trips through a worker thread -------------

/// One contender: its criterion name, its key in the summary, and a routine
/// that runs `iters` operations and returns the time they took.
struct Contender<'a> {
    name: &'static str,
    key: &'static str,
    routine: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl<'a> Contender<'a> {
    fn new(
        name: &'static str,
        key: &'static str,
        routine: impl FnMut(u64) -> Duration + 'a,
    ) -> Self {
        Contender {
            name,
            key,
            routine: Box::new(routine),
        }
    }
}

/// Runs each contender under criterion, then again interleaved: short
/// blocks of `block` operations, cycling through the contenders, median
/// per contender. Round trips through a sleeping thread have bimodal
/// latency on a small, shared machine (it depends on where the scheduler
/// puts the threads, and that changes every few seconds), so criterion's
/// back-to-back measurements can land in different regimes; the
/// interleaved medians see the same regimes and give the fairer ratio.
/// The summary uses the interleaved medians (keys prefixed with `i.`).
fn measure_contenders(
    c: &mut Criterion,
    group_name: &str,
    contenders: &mut [Contender<'_>],
    profile: &Profile,
    results: &mut Results,
) {
    let mut group = c.benchmark_group(group_name);
    for contender in contenders.iter_mut() {
        let mut s = Samples::default();
        let routine = &mut contender.routine;
        group.bench_function(contender.name, |b| {
            b.iter_custom(|iters| {
                let elapsed = routine(iters);
                s.record(iters, elapsed)
            });
        });
        results.put(contender.key, &s, profile);
    }
    group.finish();

    let (cycles, block) = if profile.test_mode {
        (1, 10)
    } else if profile.quick {
        (3, 300)
    } else {
        (25, 1500)
    };
    let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(cycles); contenders.len()];
    for cycle in 0..cycles {
        // Rotate the starting contender so none is always first.
        for i in 0..contenders.len() {
            let index = (i + cycle) % contenders.len();
            let elapsed = (contenders[index].routine)(block);
            per_op[index].push(elapsed.as_nanos() as f64 / block as f64);
        }
    }
    println!();
    println!("{group_name}: interleaved, {cycles} cycles x {block} operations per contender");
    for (contender, values) in contenders.iter().zip(per_op.iter_mut()) {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let m = median(values);
        println!(
            "  {:<45} median {:>10}   (min {}, max {})",
            contender.name,
            fmt_ns(m),
            fmt_ns(sorted.first().copied().unwrap_or(f64::NAN)),
            fmt_ns(sorted.last().copied().unwrap_or(f64::NAN)),
        );
        results.0.push((interleaved_key(contender.key), m));
    }
}

/// The summary key of a contender's interleaved median.
fn interleaved_key(key: &'static str) -> &'static str {
    match key {
        "s2.leasepool.tokio" => "i.s2.leasepool.tokio",
        "s2.spawn_blocking.tokio" => "i.s2.spawn_blocking.tokio",
        "s2.unblock.tokio" => "i.s2.unblock.tokio",
        "s2.floor.tokio" => "i.s2.floor.tokio",
        "s2.leasepool.block_on" => "i.s2.leasepool.block_on",
        "s2.floor.block_on" => "i.s2.floor.block_on",
        "s3.leasepool.tokio" => "i.s3.leasepool.tokio",
        "s3.semaphore.tokio" => "i.s3.semaphore.tokio",
        _ => "i.unknown",
    }
}

fn scenario_round_trip(c: &mut Criterion, profile: &Profile, results: &mut Results) {
    let rt = multi_thread_runtime(None);
    let manager = manager(1, "bench-s2");
    let lease = Arc::new(manager.acquire().owner("bench").blocking().expect("lease"));
    let floor = DedicatedThread::spawn();

    let mut contenders = vec![
        Contender::new(
            "leasepool/tokio-multi-thread",
            "s2.leasepool.tokio",
            |iters| {
                let lease = lease.clone();
                on_worker(&rt, iters, move |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(lease.run(|| black_box(1)).await.expect("run"));
                    }
                    start.elapsed()
                })
            },
        ),
        Contender::new(
            "spawn_blocking/tokio-multi-thread",
            "s2.spawn_blocking.tokio",
            |iters| {
                on_worker(&rt, iters, |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(
                            tokio::task::spawn_blocking(|| black_box(1))
                                .await
                                .expect("spawn_blocking"),
                        );
                    }
                    start.elapsed()
                })
            },
        ),
        Contender::new(
            "blocking-unblock/tokio-multi-thread",
            "s2.unblock.tokio",
            |iters| {
                on_worker(&rt, iters, |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(blocking::unblock(|| black_box(1)).await);
                    }
                    start.elapsed()
                })
            },
        ),
        Contender::new(
            "dedicated-thread/tokio-multi-thread",
            "s2.floor.tokio",
            |iters| {
                let floor = floor.clone();
                on_worker(&rt, iters, move |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(floor.run(|| black_box(1)).await);
                    }
                    start.elapsed()
                })
            },
        ),
        Contender::new("leasepool/block_on", "s2.leasepool.block_on", |iters| {
            futures_lite::future::block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(lease.run(|| black_box(1)).await.expect("run"));
                }
                start.elapsed()
            })
        }),
        Contender::new("dedicated-thread/block_on", "s2.floor.block_on", |iters| {
            futures_lite::future::block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(floor.run(|| black_box(1)).await);
                }
                start.elapsed()
            })
        }),
    ];
    measure_contenders(c, "s2_run_round_trip", &mut contenders, profile, results);
    drop(contenders);
    drop(lease);
    manager.stop_blocking();
}

fn scenario_full_cycle(c: &mut Criterion, profile: &Profile, results: &mut Results) {
    let rt = multi_thread_runtime(None);
    let manager = manager(1, "bench-s3");
    let semaphore = Arc::new(tokio::sync::Semaphore::new(1));

    let mut contenders = vec![
        Contender::new(
            "leasepool/tokio-multi-thread",
            "s3.leasepool.tokio",
            |iters| {
                let manager = manager.clone();
                on_worker(&rt, iters, move |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let lease = manager.acquire().await.expect("acquire");
                        black_box(lease.run(|| black_box(1)).await.expect("run"));
                        lease.release().await;
                    }
                    start.elapsed()
                })
            },
        ),
        Contender::new(
            "semaphore+spawn_blocking/tokio-multi-thread",
            "s3.semaphore.tokio",
            |iters| {
                let semaphore = semaphore.clone();
                on_worker(&rt, iters, move |iters| async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let permit = semaphore.acquire().await.expect("permit");
                        black_box(
                            tokio::task::spawn_blocking(|| black_box(1))
                                .await
                                .expect("spawn_blocking"),
                        );
                        drop(permit);
                    }
                    start.elapsed()
                })
            },
        ),
    ];
    measure_contenders(c, "s3_full_cycle", &mut contenders, profile, results);
    drop(contenders);
    manager.stop_blocking();
}

// ----- scenario 4: contention ----------------------------------------------

/// Fixed CPU work: `iters` rounds of a multiply-add the optimiser cannot
/// remove. Fixed work rather than a timed spin, so both contenders get the
/// same amount of work per job however the OS schedules the threads.
fn spin(iters: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    x
}

/// Spin iterations that take about `target` on this machine (fastest of
/// several tries, i.e. the undisturbed speed).
fn calibrate(target: Duration) -> u64 {
    let probe = 200_000u64;
    let mut best = Duration::MAX;
    for _ in 0..9 {
        let start = Instant::now();
        black_box(spin(probe));
        best = best.min(start.elapsed());
    }
    let per_iter = best.as_nanos() as f64 / probe as f64;
    ((target.as_nanos() as f64 / per_iter) as u64).max(1)
}

/// One repetition of scenario 4.
#[derive(Clone, Copy, Debug)]
struct ContentionRep {
    jobs_per_sec: f64,
    p50_wait: Duration,
    p99_wait: Duration,
    /// Process CPU time (all threads) per job, if the OS tells us.
    cpu_per_job: Option<Duration>,
    /// Context switches (all threads) per job, if the OS tells us.
    switches_per_job: Option<f64>,
}

/// Process-wide CPU time and context switches, read from `/proc` (Linux
/// only; elsewhere the fields stay `None` and are not reported).
#[derive(Clone, Copy, Debug)]
struct ProcSnapshot {
    cpu: Option<Duration>,
    switches: Option<u64>,
}

impl ProcSnapshot {
    fn take() -> Self {
        ProcSnapshot {
            cpu: Self::cpu(),
            switches: Self::switches(),
        }
    }

    /// utime + stime of the whole process, in clock ticks of (almost
    /// always) 10 ms.
    fn cpu() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Duration::from_millis((utime + stime) * 10))
    }

    /// Voluntary + involuntary context switches of the live threads.
    fn switches() -> Option<u64> {
        let mut total = 0;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for line in status.lines() {
                if line.starts_with("voluntary_ctxt_switches")
                    || line.starts_with("nonvoluntary_ctxt_switches")
                {
                    total += line
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        Some(total)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summarise(
    mut waits: Vec<Duration>,
    jobs: usize,
    elapsed: Duration,
    before: ProcSnapshot,
) -> ContentionRep {
    let after = ProcSnapshot::take();
    waits.sort_unstable();
    ContentionRep {
        jobs_per_sec: jobs as f64 / elapsed.as_secs_f64(),
        p50_wait: percentile(&waits, 50.0),
        p99_wait: percentile(&waits, 99.0),
        cpu_per_job: before
            .cpu
            .zip(after.cpu)
            .map(|(b, a)| a.saturating_sub(b) / jobs as u32),
        switches_per_job: before
            .switches
            .zip(after.switches)
            .map(|(b, a)| a.saturating_sub(b) as f64 / jobs as f64),
    }
}

fn contention_leasepool(
    rt: &tokio::runtime::Runtime,
    manager: &LeasedExecutorManager<ThreadBackend>,
    rounds: usize,
    work: u64,
) -> ContentionRep {
    rt.block_on(async {
        let before = ProcSnapshot::take();
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONTENTION_TASKS)
            .map(|_| {
                let manager = manager.clone();
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let t0 = Instant::now();
                        let lease = manager.acquire().await.expect("acquire");
                        waits.push(t0.elapsed());
                        black_box(lease.run(move || spin(work)).await.expect("run"));
                        lease.release().await;
                    }
                    waits
                })
            })
            .collect();
        let mut waits = Vec::with_capacity(CONTENTION_TASKS * rounds);
        for task in tasks {
            waits.extend(task.await.expect("task"));
        }
        let elapsed = start.elapsed();
        summarise(waits, CONTENTION_TASKS * rounds, elapsed, before)
    })
}

fn contention_semaphore(
    rt: &tokio::runtime::Runtime,
    semaphore: &Arc<tokio::sync::Semaphore>,
    rounds: usize,
    work: u64,
) -> ContentionRep {
    rt.block_on(async {
        let before = ProcSnapshot::take();
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONTENTION_TASKS)
            .map(|_| {
                let semaphore = semaphore.clone();
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let t0 = Instant::now();
                        let permit = semaphore.acquire().await.expect("permit");
                        waits.push(t0.elapsed());
                        black_box(
                            tokio::task::spawn_blocking(move || spin(work))
                                .await
                                .expect("spawn_blocking"),
                        );
                        drop(permit);
                    }
                    waits
                })
            })
            .collect();
        let mut waits = Vec::with_capacity(CONTENTION_TASKS * rounds);
        for task in tasks {
            waits.extend(task.await.expect("task"));
        }
        let elapsed = start.elapsed();
        summarise(waits, CONTENTION_TASKS * rounds, elapsed, before)
    })
}

fn describe(r: &ContentionRep) -> String {
    let mut text = format!(
        "{:>8.0} jobs/s  wait p50 {:>9.1?} p99 {:>9.1?}",
        r.jobs_per_sec, r.p50_wait, r.p99_wait
    );
    if let Some(cpu) = r.cpu_per_job {
        text.push_str(&format!("  cpu/job {cpu:>8.1?}"));
    }
    if let Some(switches) = r.switches_per_job {
        text.push_str(&format!("  ctx-switches/job {switches:>5.1}"));
    }
    text
}

/// Median of each field over the repetitions.
fn median_rep(reps: &[ContentionRep]) -> ContentionRep {
    let pick = |f: &dyn Fn(&ContentionRep) -> f64| {
        let mut v: Vec<f64> = reps.iter().map(f).collect();
        median(&mut v)
    };
    let cpu = reps.iter().all(|r| r.cpu_per_job.is_some());
    let switches = reps.iter().all(|r| r.switches_per_job.is_some());
    ContentionRep {
        jobs_per_sec: pick(&|r| r.jobs_per_sec),
        p50_wait: Duration::from_secs_f64(pick(&|r| r.p50_wait.as_secs_f64())),
        p99_wait: Duration::from_secs_f64(pick(&|r| r.p99_wait.as_secs_f64())),
        cpu_per_job: cpu.then(|| {
            Duration::from_secs_f64(pick(&|r| r.cpu_per_job.map_or(0.0, |d| d.as_secs_f64())))
        }),
        switches_per_job: switches.then(|| pick(&|r| r.switches_per_job.unwrap_or(0.0))),
    }
}

struct ContentionResult {
    work_iters: u64,
    job_time: Duration,
    leasepool: ContentionRep,
    semaphore: ContentionRep,
}

fn scenario_contention(profile: &Profile) -> ContentionResult {
    let work = calibrate(CONTENTION_JOB);
    let job_time = {
        let start = Instant::now();
        black_box(spin(work));
        start.elapsed()
    };
    println!();
    println!(
        "s4_contention: {CONTENTION_TASKS} tasks, {CONTENTION_POOLS} pools x 1 worker, \
         {} rounds per task, {} repetitions per contender, job = {work} spin iterations \
         (~{:?} alone)",
        profile.contention_rounds, profile.contention_reps, job_time
    );

    // Both on the same runtime shape: 2 workers, at most 4 blocking threads
    // (the limit matters only to spawn_blocking).
    let rt_lp = multi_thread_runtime(Some(CONTENTION_POOLS));
    let rt_sem = multi_thread_runtime(Some(CONTENTION_POOLS));
    let manager = manager(CONTENTION_POOLS, "bench-s4");
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONTENTION_POOLS));

    // Warm-up: threads spawned, caches and allocator warm.
    let warm_rounds = (profile.contention_rounds / 4).max(2);
    contention_leasepool(&rt_lp, &manager, warm_rounds, work);
    contention_semaphore(&rt_sem, &semaphore, warm_rounds, work);

    let mut lp = Vec::new();
    let mut sem = Vec::new();
    for rep in 0..profile.contention_reps {
        // Alternate which goes first so slow phases of a shared machine
        // hit both sides alike.
        let (a, b) = if rep % 2 == 0 {
            let a = contention_leasepool(&rt_lp, &manager, profile.contention_rounds, work);
            let b = contention_semaphore(&rt_sem, &semaphore, profile.contention_rounds, work);
            (a, b)
        } else {
            let b = contention_semaphore(&rt_sem, &semaphore, profile.contention_rounds, work);
            let a = contention_leasepool(&rt_lp, &manager, profile.contention_rounds, work);
            (a, b)
        };
        println!("  rep {rep}: leasepool                {}", describe(&a));
        println!("  rep {rep}: semaphore+spawn_blocking {}", describe(&b));
        lp.push(a);
        sem.push(b);
    }
    manager.stop_blocking();
    ContentionResult {
        work_iters: work,
        job_time,
        leasepool: median_rep(&lp),
        semaphore: median_rep(&sem),
    }
}

// ----- summary ---------------------------------------------------------------

struct Row {
    scenario: String,
    leasepool: String,
    peer: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A time row: lower is better; `max_ratio` is the target (None: report only).
fn time_row(
    results: &Results,
    scenario: &str,
    lp: &str,
    peer: &str,
    peer_label: &str,
    max_ratio: Option<f64>,
) -> Row {
    let (l, p) = (results.get(lp), results.get(peer));
    let ratio = l.zip(p).map(|(l, p)| l / p);
    Row {
        scenario: format!("{scenario} vs {peer_label}"),
        leasepool: l.map_or_else(|| "skipped".to_owned(), fmt_ns),
        peer: p.map_or_else(|| "skipped".to_owned(), fmt_ns),
        ratio,
        target: max_ratio.map_or_else(|| "none (info)".to_owned(), |m| format!("<= {m:.2}x")),
        met: max_ratio.and_then(|m| ratio.map(|r| r <= m)),
    }
}

fn print_summary(profile: &Profile, results: &Results, contention: Option<&ContentionResult>) {
    let mut rows = vec![
        time_row(
            results,
            "1 acquire+release, tokio current-thread",
            "s1.leasepool.tokio",
            "s1.deadpool.tokio",
            "deadpool get+drop",
            Some(1.5),
        ),
        time_row(
            results,
            "1 acquire+release, block_on",
            "s1.leasepool.block_on",
            "s1.deadpool.block_on",
            "deadpool get+drop",
            Some(1.5),
        ),
        time_row(
            results,
            "2 run round trip, tokio multi-thread",
            "i.s2.leasepool.tokio",
            "i.s2.spawn_blocking.tokio",
            "spawn_blocking",
            Some(1.0),
        ),
        time_row(
            results,
            "2 run round trip, tokio multi-thread",
            "i.s2.leasepool.tokio",
            "i.s2.floor.tokio",
            "dedicated thread (floor)",
            Some(2.0),
        ),
        time_row(
            results,
            "2 run round trip, tokio multi-thread",
            "i.s2.leasepool.tokio",
            "i.s2.unblock.tokio",
            "blocking::unblock",
            None,
        ),
        time_row(
            results,
            "2 run round trip, block_on",
            "i.s2.leasepool.block_on",
            "i.s2.floor.block_on",
            "dedicated thread (floor)",
            Some(2.0),
        ),
        time_row(
            results,
            "3 acquire+run+release, tokio multi-thread",
            "i.s3.leasepool.tokio",
            "i.s3.semaphore.tokio",
            "Semaphore(1)+spawn_blocking",
            None,
        ),
    ];
    if let Some(c) = contention {
        let (l, s) = (&c.leasepool, &c.semaphore);
        let tput = l.jobs_per_sec / s.jobs_per_sec;
        rows.push(Row {
            scenario: "4 contention throughput vs Semaphore(4)+spawn_blocking".to_owned(),
            leasepool: format!("{:.0} jobs/s", l.jobs_per_sec),
            peer: format!("{:.0} jobs/s", s.jobs_per_sec),
            ratio: Some(tput),
            target: ">= 1.00x".to_owned(),
            met: Some(tput >= 1.0),
        });
        let p50 = l.p50_wait.as_secs_f64() / s.p50_wait.as_secs_f64();
        rows.push(Row {
            scenario: "4 contention p50 wait vs Semaphore(4)+spawn_blocking".to_owned(),
            leasepool: fmt_ns(l.p50_wait.as_nanos() as f64),
            peer: fmt_ns(s.p50_wait.as_nanos() as f64),
            ratio: Some(p50),
            target: "none (info)".to_owned(),
            met: None,
        });
        let p99 = l.p99_wait.as_secs_f64() / s.p99_wait.as_secs_f64();
        rows.push(Row {
            scenario: "4 contention p99 wait vs Semaphore(4)+spawn_blocking".to_owned(),
            leasepool: fmt_ns(l.p99_wait.as_nanos() as f64),
            peer: fmt_ns(s.p99_wait.as_nanos() as f64),
            ratio: Some(p99),
            target: "<= 1.20x".to_owned(),
            met: Some(p99 <= 1.2),
        });
        if let (Some(lc), Some(sc)) = (l.cpu_per_job, s.cpu_per_job) {
            rows.push(Row {
                scenario: "4 contention CPU time per job (all threads)".to_owned(),
                leasepool: format!("{lc:.1?}"),
                peer: format!("{sc:.1?}"),
                ratio: Some(lc.as_secs_f64() / sc.as_secs_f64()),
                target: "none (info)".to_owned(),
                met: None,
            });
        }
        if let (Some(lw), Some(sw)) = (l.switches_per_job, s.switches_per_job) {
            rows.push(Row {
                scenario: "4 contention context switches per job".to_owned(),
                leasepool: format!("{lw:.2}"),
                peer: format!("{sw:.2}"),
                ratio: Some(lw / sw),
                target: "none (info)".to_owned(),
                met: None,
            });
        }
    }

    let widths = [
        rows.iter()
            .map(|r| r.scenario.chars().count())
            .max()
            .unwrap_or(8)
            .max(8),
        rows.iter()
            .map(|r| r.leasepool.chars().count())
            .max()
            .unwrap_or(9)
            .max(9),
        rows.iter()
            .map(|r| r.peer.chars().count())
            .max()
            .unwrap_or(4)
            .max(4),
    ];
    println!();
    println!("=== leasepool vs peers: summary (median; ratio = leasepool / peer) ===");
    println!(
        "scenario 1: criterion samples; scenarios 2-3: interleaved blocks; \
         scenario 4: {} alternating repetitions",
        profile.contention_reps
    );
    println!(
        "machine: {} logical CPUs; mode: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if profile.test_mode {
            "test (one iteration each; numbers meaningless)"
        } else if profile.quick {
            "quick (smoke test; numbers rough)"
        } else {
            "full"
        }
    );
    if let Some(c) = contention {
        println!(
            "scenario 4 job: {} spin iterations, ~{:?} on an idle core",
            c.work_iters, c.job_time
        );
    }
    println!(
        "| {:w0$} | {:>w1$} | {:>w2$} | {:>6} | {:>11} | {:6} |",
        "scenario",
        "leasepool",
        "peer",
        "ratio",
        "target",
        "result",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2]
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2),
        "-".repeat(8),
        "-".repeat(13),
        "-".repeat(8)
    );
    for row in &rows {
        let ratio = row
            .ratio
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
        let met = match row.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "| {:w0$} | {:>w1$} | {:>w2$} | {:>6} | {:>11} | {:6} |",
            row.scenario,
            row.leasepool,
            row.peer,
            ratio,
            row.target,
            met,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
}

fn args_contain(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

// ----- main ---------------------------------------------------------------------

fn main() {
    let profile = Profile::from_env();
    let mut criterion = Criterion::default()
        .warm_up_time(profile.warm_up)
        .measurement_time(profile.measurement)
        .sample_size(profile.sample_size)
        .nresamples(10_000)
        .without_plots()
        .configure_from_args();

    let mut results = Results::default();
    scenario_acquire_release(&mut criterion, &profile, &mut results);
    scenario_round_trip(&mut criterion, &profile, &mut results);
    scenario_full_cycle(&mut criterion, &profile, &mut results);
    let contention = profile.contention.then(|| scenario_contention(&profile));
    criterion.final_summary();
    if !args_contain("--list") {
        print_summary(&profile, &results, contention.as_ref());
    }
}
