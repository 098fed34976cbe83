//! The soak test: random load with faults injected, for as long as asked.
//!
//! ```sh
//! LEASEPOOL_SOAK_SECONDS=600 cargo test -p leasepool --all-features --test soak
//! ```
//!
//! Without `LEASEPOOL_SOAK_SECONDS` it runs for a few seconds (CI). Each
//! round picks a runtime (tokio's multi-thread scheduler or smol) and a
//! backend (threads or worker processes), starts a manager, and lets
//! sixteen clients acquire, submit, cancel, drop, renew and release at
//! random while a chaos task stops and restarts the manager. Jobs panic,
//! and on the process backend some kill their worker. A monitor checks
//! `available + leased == total <= max_pools` throughout. After each round:
//! every awaited job had exactly one outcome of an allowed kind, every
//! submission is accounted for, and no thread, child process or file
//! descriptor is left. `LEASEPOOL_SOAK_SEED` replays a run.
//!
//! No test harness: `main` first calls `process::init`, so the worker
//! processes this binary starts serve jobs and never reach the rounds.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasepool::process::{ProcessBackend, Registry, init};
use leasepool::{
    Error, ExecutorBackend, ExecutorLease, JobHandle, LeasedExecutorManager, ThreadBackend,
};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

// ------------------------------------------------------------ the jobs

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn boom(x: u64) -> u64 {
    panic!("boom {x}")
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kills the worker process it runs in (process backend only).
fn die(_: u64) -> u64 {
    std::process::abort()
}

fn registry() -> Registry {
    Registry::new()
        .register(square)
        .register(boom)
        .register(nap)
        .register(die)
}

// ------------------------------------------------------------ randomness

/// xorshift64*: enough for choosing operations, reproducible from a seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ------------------------------------------------------------ the tally

/// What the run did and saw; every field only goes up.
#[derive(Default)]
struct Tally {
    operations: AtomicU64,
    acquired: AtomicU64,
    acquire_errors: AtomicU64,
    acquires_dropped: AtomicU64,
    submitted: AtomicU64,
    submit_errors: AtomicU64,
    outcomes: AtomicU64,
    handles_dropped: AtomicU64,
    ok: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    broken: AtomicU64,
    cancels_asked: AtomicU64,
    renewals: AtomicU64,
    panics_injected: AtomicU64,
    kills_injected: AtomicU64,
    stops: AtomicU64,
    invariant_checks: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, what: String) {
        eprintln!("soak failure: {what}");
        self.failures.lock().unwrap().push(what);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

// ------------------------------------------------------------ one job

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Square,
    Boom,
    Nap,
    Die,
}

/// Checks the one outcome a job gave.
fn judge(kind: Kind, x: u64, outcome: Result<u64, Error>, tally: &Tally) {
    Tally::add(&tally.outcomes);
    match (&outcome, kind) {
        (Ok(v), Kind::Square) if *v == square(x) => Tally::add(&tally.ok),
        (Ok(v), Kind::Nap) if *v == x => Tally::add(&tally.ok),
        (Err(Error::Panicked(message)), Kind::Boom) if message.contains("boom") => {
            Tally::add(&tally.panicked)
        }
        (Err(Error::Cancelled), _) => Tally::add(&tally.cancelled),
        (Err(Error::Broken(_)), _) => Tally::add(&tally.broken),
        _ => tally.fail(format!("{kind:?}({x}) gave {outcome:?}")),
    }
}

/// Polls `future` at most `polls` times, then drops it: a caller that
/// gives up. Returns `None` if it gave up.
async fn give_up_after<F: Future>(future: F, polls: u64) -> Option<F::Output> {
    let give_up = async {
        for _ in 0..polls {
            futures_lite::future::yield_now().await;
        }
        None
    };
    futures_lite::future::or(async { Some(future.await) }, give_up).await
}

/// What differs between the backends of the soak.
trait SoakBackend: ExecutorBackend + Sized {
    fn make() -> Self;
    /// Whether `die` may run (it kills its worker: processes only).
    const CAN_DIE: bool;
}

impl SoakBackend for ThreadBackend {
    fn make() -> Self {
        ThreadBackend::new()
    }
    const CAN_DIE: bool = false;
}

impl SoakBackend for ProcessBackend {
    fn make() -> Self {
        ProcessBackend::new()
    }
    const CAN_DIE: bool = true;
}

/// Submits one random job through `lease`, or `None` if the lease refused.
fn submit<B: SoakBackend>(
    lease: &ExecutorLease<B>,
    rng: &mut Rng,
    tally: &Tally,
) -> Option<(Kind, u64, JobHandle<u64>)> {
    let roll = rng.below(100);
    let (kind, x) = match roll {
        0..=59 => (Kind::Square, rng.below(1 << 20)),
        60..=74 => (Kind::Boom, rng.below(100)),
        75..=96 => (Kind::Nap, rng.below(3)),
        _ if B::CAN_DIE => (Kind::Die, 0),
        _ => (Kind::Square, 3),
    };
    let submitted = match kind {
        Kind::Square => lease.submit_call(square, x),
        Kind::Boom => lease.submit_call(boom, x),
        Kind::Nap => lease.submit_call(nap, x),
        Kind::Die => lease.submit_call(die, x),
    };
    match submitted {
        Ok(handle) => {
            Tally::add(&tally.submitted);
            match kind {
                Kind::Boom => Tally::add(&tally.panics_injected),
                Kind::Die => Tally::add(&tally.kills_injected),
                _ => {}
            }
            Some((kind, x, handle))
        }
        Err(Error::LeaseExpired { .. }) => {
            Tally::add(&tally.submit_errors);
            None
        }
        Err(other) => {
            tally.fail(format!("submit gave {other:?}"));
            None
        }
    }
}

// ------------------------------------------------------------ a client

async fn client<B: SoakBackend>(
    m: LeasedExecutorManager<B>,
    mut rng: Rng,
    tally: Arc<Tally>,
    until: Instant,
) {
    while Instant::now() < until {
        Tally::add(&tally.operations);
        let mut request = m.acquire().owner("soak");
        if rng.chance(20) {
            request = request.lease(Duration::from_millis(5 + rng.below(40)));
        }
        if rng.chance(20) {
            request = request.wait(false);
        } else if rng.chance(50) {
            request = request.timeout(Duration::from_millis(rng.below(30)));
        }
        let acquired = if rng.chance(15) {
            match give_up_after(request.into_future(), rng.below(4)).await {
                Some(acquired) => acquired,
                None => {
                    Tally::add(&tally.acquires_dropped);
                    continue;
                }
            }
        } else {
            request.await
        };
        let lease = match acquired {
            Ok(lease) => lease,
            Err(
                Error::NotStarted
                | Error::ShuttingDown
                | Error::Unavailable { .. }
                | Error::Timeout(_),
            ) => {
                Tally::add(&tally.acquire_errors);
                // Back off a little, without a runtime timer.
                blocking::unblock(|| std::thread::sleep(Duration::from_millis(1))).await;
                continue;
            }
            Err(other) => {
                tally.fail(format!("acquire gave {other:?}"));
                continue;
            }
        };
        Tally::add(&tally.acquired);
        let mut handles = Vec::new();
        for _ in 0..1 + rng.below(6) {
            if let Some(job) = submit(&lease, &mut rng, &tally) {
                handles.push(job);
            }
            if rng.chance(10) && lease.renew().is_ok() {
                Tally::add(&tally.renewals);
            }
        }
        // Release before the jobs end now and then: the lease drains.
        let early_release = rng.chance(30);
        let mut lease = Some(lease);
        if early_release {
            drop(lease.take());
        }
        for (kind, x, handle) in handles {
            if rng.chance(10) {
                drop(handle);
                Tally::add(&tally.handles_dropped);
                continue;
            }
            if rng.chance(10) {
                Tally::add(&tally.cancels_asked);
                let cancelled = handle.cancel();
                let outcome = handle.await;
                if cancelled && outcome != Err(Error::Cancelled) {
                    tally.fail(format!("cancel() said yes, then {outcome:?}"));
                }
                judge(kind, x, outcome, &tally);
                continue;
            }
            judge(kind, x, handle.await, &tally);
        }
        if let Some(lease) = lease.take() {
            if rng.chance(50) {
                lease.release().await;
            }
        }
    }
}

/// Stops and restarts the manager now and then.
async fn chaos<B: SoakBackend>(
    m: LeasedExecutorManager<B>,
    mut rng: Rng,
    tally: Arc<Tally>,
    until: Instant,
) {
    while Instant::now() + Duration::from_millis(100) < until {
        for _ in 0..200 + rng.below(2000) {
            futures_lite::future::yield_now().await;
        }
        m.stop().await;
        Tally::add(&tally.stops);
        if m.start().await.is_err() {
            tally.fail("restart failed".to_owned());
        }
    }
}

/// Checks the pool accounting while the round runs.
fn monitor<B: SoakBackend>(m: LeasedExecutorManager<B>, tally: Arc<Tally>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Acquire) {
        let s = m.stats();
        Tally::add(&tally.invariant_checks);
        if s.available + s.leased != s.total || s.total > s.max_pools {
            tally.fail(format!("invariant broken: {s:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ------------------------------------------------------------ leaks

fn threads_named(prefix: &str) -> usize {
    let short: String = format!("{prefix}-").chars().take(15).collect();
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|comm| comm.starts_with(&short))
                .count()
        })
        .unwrap_or(0)
}

/// Processes (zombies included) whose parent is this process.
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if after.split_whitespace().nth(1) == Some(me.as_str()) {
            found.push(pid);
        }
    }
    found
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Waits (with a generous deadline) for `condition`; false if it never held.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

// ------------------------------------------------------------ a round

enum Runtime {
    Tokio(tokio::runtime::Runtime),
    Smol,
}

impl Runtime {
    fn run_all(&self, tasks: Vec<BoxFuture>) {
        match self {
            Runtime::Tokio(rt) => rt.block_on(async {
                let handles: Vec<_> = tasks.into_iter().map(|t| tokio::spawn(t)).collect();
                for h in handles {
                    h.await.expect("a soak task panicked");
                }
            }),
            Runtime::Smol => smol::block_on(async {
                let handles: Vec<_> = tasks.into_iter().map(smol::spawn).collect();
                for h in handles {
                    h.await;
                }
            }),
        }
    }
}

fn round<B: SoakBackend>(
    prefix: &str,
    runtime: &Runtime,
    rng: &mut Rng,
    tally: &Arc<Tally>,
    length: Duration,
) {
    let m = LeasedExecutorManager::builder(B::make())
        .name_prefix(prefix)
        .max_pools(3)
        .min_pools(1)
        .workers_per_pool(2)
        .lease_grace(Duration::from_millis(20))
        .build()
        .expect("valid configuration");
    futures_lite::future::block_on(m.start()).expect("start");
    let until = Instant::now() + length;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (m, tally, done) = (m.clone(), tally.clone(), done.clone());
        std::thread::spawn(move || monitor(m, tally, done))
    };
    let mut tasks: Vec<BoxFuture> = (0..16)
        .map(|i| {
            let seed = Rng((rng.next() ^ i) | 1);
            Box::pin(client(m.clone(), seed, tally.clone(), until)) as BoxFuture
        })
        .collect();
    tasks.push(Box::pin(chaos(
        m.clone(),
        Rng(rng.next() | 1),
        tally.clone(),
        until,
    )));
    runtime.run_all(tasks);
    done.store(true, Ordering::Release);
    watcher.join().expect("monitor");
    if rng.chance(50) {
        futures_lite::future::block_on(m.stop());
    } else {
        let report = futures_lite::future::block_on(m.shutdown(Duration::from_millis(50)));
        if report.leases_at_start != report.ended_on_their_own + report.revoked_at_deadline {
            tally.fail(format!("inconsistent shutdown report {report:?}"));
        }
        futures_lite::future::block_on(m.stop());
    }
    Tally::add(&tally.stops);
    let s = m.stats();
    if s.total != 0 || s.waiting != 0 || !s.leases.is_empty() {
        tally.fail(format!("{prefix}: state left after stop: {s:?}"));
    }
    if !eventually(|| threads_named(prefix) == 0) {
        tally.fail(format!("{prefix}: {} threads left", threads_named(prefix)));
    }
    if !eventually(|| children().is_empty()) {
        tally.fail(format!("{prefix}: child processes left: {:?}", children()));
    }
}

fn main() {
    // Panicking jobs are expected, here and in the workers: keep their
    // messages off the output (the outcome carries the message).
    std::panic::set_hook(Box::new(|_| {}));
    init(registry());
    // Only the parent gets here.
    let seconds: u64 = std::env::var("LEASEPOOL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("LEASEPOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("soak: {seconds} s, LEASEPOOL_SOAK_SEED={seed}");
    let hung = Arc::new(AtomicU64::new(0));
    {
        let hung = hung.clone();
        let limit = seconds + 300;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(limit));
            eprintln!("soak: still running {limit} s after start: something hangs");
            hung.store(1, Ordering::Release);
            std::process::exit(2);
        });
    }

    let tokio = Runtime::Tokio(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime"),
    );
    let smol = Runtime::Smol;
    let mut rng = Rng(seed | 1);
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(seconds);
    let length = Duration::from_millis(700);
    let mut rounds = 0u64;
    let mut fd_baseline = None;
    while rounds < 4 || Instant::now() < end {
        rounds += 1;
        let prefix = format!("sk{rounds}");
        let runtime = if rounds % 2 == 0 { &tokio } else { &smol };
        if rounds % 4 < 2 {
            round::<ThreadBackend>(&prefix, runtime, &mut rng, &tally, length);
        } else {
            round::<ProcessBackend>(&prefix, runtime, &mut rng, &tally, length);
        }
        // The runtimes open what they need in the first rounds; after that
        // the count of open descriptors must come back to the same value.
        if rounds == 4 {
            fd_baseline = Some(open_fds());
        } else if let Some(baseline) = fd_baseline {
            if !eventually(|| open_fds() <= baseline) {
                tally.fail(format!(
                    "round {rounds}: {} fds open, {baseline} before",
                    open_fds()
                ));
            }
        }
    }

    let t = &tally;
    let accounted = Tally::get(&t.outcomes) + Tally::get(&t.handles_dropped);
    if accounted != Tally::get(&t.submitted) {
        t.fail(format!(
            "{} jobs submitted, {accounted} accounted for",
            Tally::get(&t.submitted)
        ));
    }
    if Tally::get(&t.ok) == 0 || Tally::get(&t.panicked) == 0 {
        t.fail("the load never ran a job to completion or a panic".to_owned());
    }
    println!(
        "soak: {rounds} rounds, {} operations, {} leases, {} acquire errors, {} acquires dropped",
        Tally::get(&t.operations),
        Tally::get(&t.acquired),
        Tally::get(&t.acquire_errors),
        Tally::get(&t.acquires_dropped),
    );
    println!(
        "soak: {} jobs submitted ({} refused), {} outcomes: {} ok, {} panicked, {} cancelled, {} broken; {} handles dropped",
        Tally::get(&t.submitted),
        Tally::get(&t.submit_errors),
        Tally::get(&t.outcomes),
        Tally::get(&t.ok),
        Tally::get(&t.panicked),
        Tally::get(&t.cancelled),
        Tally::get(&t.broken),
        Tally::get(&t.handles_dropped),
    );
    println!(
        "soak: faults: {} panics, {} worker kills, {} cancels asked, {} renewals, {} stops; {} invariant checks",
        Tally::get(&t.panics_injected),
        Tally::get(&t.kills_injected),
        Tally::get(&t.cancels_asked),
        Tally::get(&t.renewals),
        Tally::get(&t.stops),
        Tally::get(&t.invariant_checks),
    );
    let failures = t.failures.lock().unwrap();
    let failed = failures.len();
    for failure in failures.iter() {
        println!("FAILED: {failure}");
    }
    println!(
        "{} passed, {failed} failed",
        if failed == 0 { 1 } else { 0 }
    );
    if failed > 0 || hung.load(Ordering::Acquire) != 0 {
        std::process::exit(1);
    }
}
