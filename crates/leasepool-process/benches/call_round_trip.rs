//! The process backend's `call` round trip next to the floor: a bare pipe
//! ping-pong between the same two kinds of process with the same
//! serialisation (postcard, length-prefixed frames), in the same run; and
//! throughput as `workers_per_pool` grows.
//!
//! `cargo bench -p leasepool-process --bench call_round_trip`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short run).

use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leasepool_core::{Error, LeasedExecutorManager};
use leasepool_process::{ProcessBackend, Registry, init};

/// The small-argument job: an echo.
fn echo(x: u64) -> u64 {
    x
}

/// A CPU-bound job of about `micros` microseconds, for the scaling run.
fn spin(micros: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros(micros);
    let mut n = 0u64;
    while Instant::now() < until {
        n = n.wrapping_add(1);
    }
    n
}

const FLOOR_ENV: &str = "LEASEPOOL_BENCH_PINGPONG";

/// The floor's child: echo length-prefixed postcard `u64` frames.
fn pingpong_child() -> ! {
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(std::io::stdout().lock());
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    while input.read_exact(&mut len).is_ok() {
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        if input.read_exact(&mut buf).is_err() {
            break;
        }
        let x: u64 = postcard::from_bytes(&buf).expect("a u64");
        let reply = postcard::to_stdvec(&echo(x)).expect("encode");
        let _ = output.write_all(&(reply.len() as u32).to_le_bytes());
        let _ = output.write_all(&reply);
        let _ = output.flush();
    }
    std::process::exit(0)
}

/// One timed run: wall-clock time and this process's CPU time (all its
/// threads; `None` where `/proc` is missing).
struct Timed {
    wall: Duration,
    cpu: Option<Duration>,
}

/// Runs `f`, timing it.
fn timed(f: impl FnOnce()) -> Timed {
    let cpu = cpu_time();
    let started = Instant::now();
    f();
    let wall = started.elapsed();
    Timed {
        wall,
        cpu: cpu.zip(cpu_time()).map(|(before, after)| after - before),
    }
}

/// User + system CPU time of this process so far, from `/proc/self/stat`
/// (10 ms ticks, so only sums over many calls are meaningful).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // utime and stime are fields 14 and 15, the 12th and 13th after the
    // parenthesised command name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn floor(calls: u64) -> Timed {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(FLOOR_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the ping-pong child");
    let mut to = BufWriter::new(child.stdin.take().expect("stdin"));
    let mut from = BufReader::new(child.stdout.take().expect("stdout"));
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    let run = timed(|| {
        for x in 0..calls {
            let frame = postcard::to_stdvec(&x).expect("encode");
            to.write_all(&(frame.len() as u32).to_le_bytes())
                .expect("write");
            to.write_all(&frame).expect("write");
            to.flush().expect("flush");
            from.read_exact(&mut len).expect("read");
            buf.resize(u32::from_le_bytes(len) as usize, 0);
            from.read_exact(&mut buf).expect("read");
            let y: u64 = postcard::from_bytes(&buf).expect("decode");
            assert_eq!(black_box(y), x);
        }
    });
    drop(to);
    let _ = child.wait();
    run
}

fn manager(
    workers: usize,
    backend: ProcessBackend,
) -> Result<LeasedExecutorManager<ProcessBackend>, Error> {
    let manager = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(workers)
        .name_prefix("bench-proc")
        .build()?;
    manager.start_blocking()?;
    Ok(manager)
}

/// How the caller waits for each call's result.
#[derive(Clone, Copy)]
enum Waiting {
    /// `submit_call(..)?.wait()` on the calling thread.
    Blocking,
    /// `lease.call(..).await` inside `futures_lite::future::block_on`.
    Await,
}

fn leasepool_round_trips(
    calls: u64,
    waiting: Waiting,
    backend: ProcessBackend,
) -> Result<Timed, Error> {
    let m = manager(1, backend)?;
    let lease = m.acquire().blocking()?;
    for x in 0..100 {
        lease.submit_call(echo, x)?.wait()?; // warm-up
    }
    let mut outcome: Result<(), Error> = Ok(());
    let run = timed(|| {
        outcome = match waiting {
            Waiting::Blocking => (0..calls).try_for_each(|x| {
                let y = lease.submit_call(echo, x)?.wait()?;
                assert_eq!(black_box(y), x);
                Ok(())
            }),
            Waiting::Await => futures_lite::future::block_on(async {
                for x in 0..calls {
                    let y = lease.call(echo, x).await?;
                    assert_eq!(black_box(y), x);
                }
                Ok(())
            }),
        }
    });
    outcome?;
    drop(lease);
    m.stop_blocking();
    Ok(run)
}

/// Jobs per second for `jobs` spin jobs of `micros` submitted at once.
fn throughput(workers: usize, jobs: u64, micros: u64) -> Result<f64, Error> {
    let m = manager(workers, ProcessBackend::new())?;
    let lease = m.acquire().blocking()?;
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs)
        .map(|_| lease.submit_call(spin, micros))
        .collect::<Result<_, _>>()?;
    for handle in handles {
        black_box(handle.wait()?);
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    drop(lease);
    m.stop_blocking();
    Ok(rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    init(Registry::new().register(echo).register(spin));
    if std::env::var_os(FLOOR_ENV).is_some() {
        pingpong_child();
    }
    let quick = std::env::var_os("LEASEPOOL_BENCH_QUICK").is_some();
    let (calls, rounds, jobs) = if quick { (500, 3, 32) } else { (5_000, 7, 128) };

    let no_polling = || ProcessBackend::new().busy_poll(Duration::ZERO);
    // (label, how to run one round, held to the target)
    type Round = Box<dyn Fn() -> Result<Timed, Error>>;
    let contenders: Vec<(&str, Round, bool)> = vec![
        (
            "lease.submit_call(echo, x).wait()",
            Box::new(move || {
                leasepool_round_trips(calls, Waiting::Blocking, ProcessBackend::new())
            }),
            true,
        ),
        (
            "block_on(lease.call(echo, x))",
            Box::new(move || leasepool_round_trips(calls, Waiting::Await, ProcessBackend::new())),
            true,
        ),
        (
            "submit_call(..).wait(), busy_poll off",
            Box::new(move || leasepool_round_trips(calls, Waiting::Blocking, no_polling())),
            false,
        ),
        (
            "block_on(call(..)), busy_poll off",
            Box::new(move || leasepool_round_trips(calls, Waiting::Await, no_polling())),
            false,
        ),
        (
            "bare pipe ping-pong, same postcard frames (floor)",
            Box::new(move || Ok(floor(calls))),
            false,
        ),
    ];
    let mut runs: Vec<Vec<Timed>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        // Interleaved, so all see the same machine phase.
        for ((_, round, _), runs) in contenders.iter().zip(&mut runs) {
            runs.push(round()?);
        }
    }
    let micros_per_call = |d: Duration| d.as_secs_f64() * 1e6 / calls as f64;
    let walls: Vec<f64> = runs
        .iter()
        .map(|runs| median(runs.iter().map(|r| micros_per_call(r.wall)).collect()))
        .collect();
    let floor = *walls.last().expect("the floor runs");
    println!();
    println!(
        "process call round trip, small argument (u64 echo), median of {rounds} rounds x {calls} calls"
    );
    println!("| path | µs per call | ratio to floor | target | parent CPU µs per call |");
    println!("|---|---:|---:|---|---:|");
    let mut met = true;
    for (((label, _, targeted), runs), wall) in contenders.iter().zip(&runs).zip(&walls) {
        // CPU time: the mean over all rounds (the clock ticks are coarse).
        let cpu = runs
            .iter()
            .map(|r| r.cpu)
            .sum::<Option<Duration>>()
            .map_or("n/a".to_owned(), |cpu| {
                format!("{:.1}", micros_per_call(cpu) / rounds as f64)
            });
        let ratio = wall / floor;
        met &= !targeted || ratio <= 1.5;
        let target = if *targeted { "<= 1.50" } else { "" };
        println!("| {label} | {wall:.2} | {ratio:.2} | {target} | {cpu} |");
    }
    println!(
        "target (within 1.5x of the floor): {}",
        if met { "met" } else { "MISSED" }
    );

    println!();
    println!("throughput: {jobs} calls of ~500 µs CPU each, submitted at once, one pool");
    println!("| workers_per_pool | calls/s | vs 1 worker |");
    println!("|---:|---:|---:|");
    let mut base = None;
    for workers in [1usize, 2, 4] {
        let rate = median(
            (0..3)
                .map(|_| throughput(workers, jobs, 500))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let base = *base.get_or_insert(rate);
        println!("| {workers} | {rate:.0} | {:.2}x |", rate / base);
    }
    println!(
        "(this machine has {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}
