//! End-to-end tests of the process backend.
//!
//! No test harness: `main` first calls `leasepool_process::init`, so when a
//! pool re-executes this binary, the copy becomes a worker and never reaches
//! the scenarios. Each scenario prints `ok` or `FAILED`, and the last line is
//! `N passed, M failed`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "common/runner.rs"]
mod runner;

use runner::{Outcome, Scenario};

use leasepool_core::{
    BackendPool, Error, ExecutorBackend, ExecutorLease, JobHandle, LeaseEnd, LeasedExecutorManager,
    PoolContext, Task, conformance, function_name,
};
use leasepool_process::{ProcessBackend, ProcessLogging, Registry, init};
use serde::{Deserialize, Serialize};

/// Every wait in this file is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- functions

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn shout(text: String) -> String {
    text.to_uppercase()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    count: usize,
    sum: i64,
    label: Option<String>,
}

fn stats((values, label): (Vec<i64>, Option<String>)) -> Stats {
    Stats {
        count: values.len(),
        sum: values.iter().sum(),
        label,
    }
}

fn boom(code: u32) -> u32 {
    panic!("boom {code}")
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn abort_now(_: ()) -> u8 {
    std::process::abort()
}

fn log_something(n: u32) -> u32 {
    log::warn!(target: "my_worker_target", "warned {n}");
    log::debug!(target: "my_worker_target", "debug {n} is below the level");
    n
}

fn to_stderr(text: String) {
    eprintln!("{text}");
}

/// Prints to stdout, which in a worker is redirected to stderr so the
/// protocol stays intact.
fn to_stdout(text: String) -> usize {
    println!("{text}");
    text.len()
}

/// An argument that refuses to be serialised.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be serialised"))
    }
}

fn takes_unencodable(_: Unencodable) -> u8 {
    0
}

fn not_registered(x: u8) -> u8 {
    x
}

/// Registered only in workers started with `LP_TEST_EXTRA` set.
fn extra(x: u8) -> u8 {
    x
}

/// Fails in workers started with `LP_TEST_FAIL_INIT` set.
fn check_init(_: ()) -> Result<(), String> {
    match std::env::var("LP_TEST_FAIL_INIT") {
        Ok(value) => Err(format!("initializer refused: LP_TEST_FAIL_INIT={value}")),
        Err(_) => Ok(()),
    }
}

fn registry() -> Registry {
    let registry = Registry::new()
        .register(add)
        .register(shout)
        .register(stats)
        .register(boom)
        .register(pid)
        .register(pid_after)
        .register(sleep_ms)
        .register(abort_now)
        .register(log_something)
        .register(to_stderr)
        .register(to_stdout)
        .register(takes_unencodable)
        .register(conformance::square)
        .register(conformance::panics)
        .register(conformance::sleep_ms)
        .initializer(check_init);
    if std::env::var_os("LP_TEST_EXTRA").is_some() {
        registry.register(extra)
    } else {
        registry
    }
}

// ------------------------------------------------------------------ helpers

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{} (line {})", format!($($msg)+), line!()));
        }
    };
}

fn manager(
    name: &str,
    backend: ProcessBackend,
    pools: usize,
    workers: usize,
) -> LeasedExecutorManager<ProcessBackend> {
    LeasedExecutorManager::builder(backend)
        .max_pools(pools)
        .min_pools(pools)
        .workers_per_pool(workers)
        .name_prefix(name)
        .build()
        .expect("valid configuration")
}

/// A lease on `m`, waiting at most [`PATIENCE`] for it.
fn lease_on(
    m: &LeasedExecutorManager<ProcessBackend>,
) -> Result<ExecutorLease<ProcessBackend>, String> {
    m.acquire()
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())
}

fn wait<T>(mut handle: JobHandle<T>) -> Result<T, Error> {
    handle
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|| panic!("a job did not end within {PATIENCE:?}"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Outcome {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
}

/// Gone, or a zombie waiting for whoever adopted it (an orphan's new
/// parent may be slow to reap, or never reap in a minimal container).
fn process_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

// ---------------------------------------------------------------- scenarios

fn call_round_trip() -> Outcome {
    let m = manager("lp-round", ProcessBackend::new(), 1, 2);
    m.start_blocking().map_err(|e| e.to_string())?;
    check!(
        m.backend_name() == "process",
        "backend name {}",
        m.backend_name()
    );
    let lease = lease_on(&m)?;
    check!(
        wait(lease.submit_call(add, (2, 40)).unwrap()) == Ok(42),
        "add"
    );
    check!(
        wait(lease.submit_call(shout, "héllo".to_owned()).unwrap()) == Ok("HÉLLO".to_owned()),
        "shout"
    );
    let got = wait(
        lease
            .submit_call(stats, (vec![1, -2, 30], Some("x".to_owned())))
            .unwrap(),
    );
    check!(
        got == Ok(Stats {
            count: 3,
            sum: 29,
            label: Some("x".to_owned())
        }),
        "stats: {got:?}"
    );
    // Many calls at once, spread over both workers.
    let handles: Vec<_> = (0..50u64)
        .map(|i| lease.submit_call(add, (i, i)).unwrap())
        .collect();
    for (i, handle) in (0..50u64).zip(handles) {
        check!(wait(handle) == Ok(2 * i), "batch call {i}");
    }
    // Large arguments and results (written by a writer thread, not
    // inline), interleaved with small ones on both workers.
    let big = "x".repeat(1 << 20);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let text = if i % 2 == 0 {
                big.clone()
            } else {
                "s".to_owned()
            };
            lease.submit_call(shout, text).unwrap()
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let expected = if i % 2 == 0 {
            big.to_uppercase()
        } else {
            "S".to_owned()
        };
        check!(wait(handle) == Ok(expected), "large/small call {i}");
    }
    // Through the executor proxy and the `call` future.
    let executor = lease.executor();
    let got = futures_lite::future::block_on(executor.call(add, (20, 22)));
    check!(got == Ok(42), "executor().call: {got:?}");
    let got = futures_lite::future::block_on(lease.call(shout, "a".to_owned()));
    check!(got == Ok("A".to_owned()), "lease.call: {got:?}");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

fn panic_and_unknown_function() -> Outcome {
    let m = manager("lp-panic", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let before = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let got = wait(lease.submit_call(boom, 7).unwrap());
    check!(
        got == Err(Error::Panicked("boom 7".to_owned())),
        "boom: {got:?}"
    );
    let after = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    check!(
        before == after,
        "the worker was replaced after a panic: {before} -> {after}"
    );
    match wait(lease.submit_call(not_registered, 1).unwrap()) {
        Err(Error::UnknownFunction(name)) => {
            check!(name == function_name(not_registered), "unknown name {name}")
        }
        other => return Err(format!("expected UnknownFunction, got {other:?}")),
    }
    check!(
        wait(lease.submit_call(add, (1, 1)).unwrap()) == Ok(2),
        "serves on"
    );
    check!(
        lease.ended().is_none(),
        "the lease ended: {:?}",
        lease.ended()
    );
    drop(lease);
    m.stop_blocking();
    Ok(())
}

fn abort_breaks_only_its_pool() -> Outcome {
    let m = manager("lp-abort", ProcessBackend::new(), 2, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let doomed = lease_on(&m)?;
    let other = lease_on(&m)?;
    let started = Instant::now();
    let queued = doomed.submit_call(add, (1, 2)); // may run first, or be failed
    match wait(doomed.submit_call(abort_now, ()).unwrap()) {
        Err(Error::Broken(reason)) => {
            check!(reason.contains("exited"), "reason: {reason}");
        }
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(started.elapsed() < PATIENCE, "slow");
    if let Ok(handle) = queued {
        let _ = wait(handle);
    }
    wait_until("the doomed lease ends", || doomed.ended().is_some())?;
    check!(
        doomed.ended() == Some(LeaseEnd::Broken),
        "ended: {:?}",
        doomed.ended()
    );
    check!(
        doomed.submit_call(add, (1, 1)).is_err(),
        "submit after broken"
    );
    check!(
        wait(other.submit_call(add, (3, 4)).unwrap()) == Ok(7),
        "other pool"
    );
    drop(doomed);
    let fresh = lease_on(&m)?;
    check!(
        wait(fresh.submit_call(add, (5, 6)).unwrap()) == Ok(11),
        "replacement pool"
    );
    check!(
        wait(other.submit_call(add, (3, 5)).unwrap()) == Ok(8),
        "other pool again"
    );
    drop((fresh, other));
    m.stop_blocking();
    Ok(())
}

fn sigkill_mid_job() -> Outcome {
    let m = manager("lp-kill", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let job = lease.submit_call(sleep_ms, 60_000).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    check!(status.success(), "kill -9 {worker}: {status}");
    match wait(job) {
        Err(Error::Broken(reason)) => check!(
            reason.contains(&worker.to_string()) && reason.contains("SIGKILL"),
            "reason: {reason}"
        ),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    wait_until("the lease ends", || lease.ended() == Some(LeaseEnd::Broken))?;
    check!(process_gone(worker), "worker {worker} not reaped");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

fn bad_initializer_breaks_the_pool() -> Outcome {
    let m = manager(
        "lp-init",
        ProcessBackend::new().env("LP_TEST_FAIL_INIT", "yes"),
        1,
        2,
    );
    match m.start_blocking() {
        Err(Error::Broken(reason)) => check!(
            reason.contains("initializer refused: LP_TEST_FAIL_INIT=yes"),
            "reason: {reason}"
        ),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(!m.is_started(), "started anyway");
    m.stop_blocking();
    Ok(())
}

fn different_registry_is_refused() -> Outcome {
    let m = manager(
        "lp-fprint",
        ProcessBackend::new().env("LP_TEST_EXTRA", "1"),
        1,
        1,
    );
    match m.start_blocking() {
        Err(Error::Broken(reason)) => {
            check!(reason.contains("different registry"), "reason: {reason}")
        }
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    m.stop_blocking();
    Ok(())
}

fn not_a_worker_fails_fast() -> Outcome {
    for (program, args) in [("/bin/true", vec![]), ("sleep", vec!["100"])] {
        let backend = ProcessBackend::new()
            .worker_command(program, args)
            .handshake_timeout(Duration::from_secs(1));
        let m = manager("lp-notworker", backend, 1, 2);
        let started = Instant::now();
        match m.start_blocking() {
            Err(Error::Broken(reason)) => check!(
                reason.contains("is not a leasepool worker")
                    && reason.contains("leasepool::process::init"),
                "{program}: {reason}"
            ),
            other => return Err(format!("{program}: expected Broken, got {other:?}")),
        }
        check!(
            started.elapsed() < Duration::from_secs(10),
            "{program}: too slow"
        );
        m.stop_blocking();
    }
    Ok(())
}

fn recycling_after_n_jobs() -> Outcome {
    let m = manager("lp-recycle", ProcessBackend::new().jobs_per_worker(3), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    // Submitted at once: the queue outlives each worker's retirement.
    let handles: Vec<_> = (0..7)
        .map(|_| lease.submit_call(pid, ()).unwrap())
        .collect();
    let mut pids = Vec::new();
    for handle in handles {
        pids.push(wait(handle).map_err(|e| format!("a call failed: {e}"))?);
    }
    check!(
        pids[0] == pids[1] && pids[1] == pids[2] && pids[2] != pids[3],
        "pids {pids:?}"
    );
    check!(pids[3] == pids[5] && pids[5] != pids[6], "pids {pids:?}");
    check!(lease.ended().is_none(), "lease ended: {:?}", lease.ended());
    wait_until("retired workers are reaped", || {
        process_gone(pids[0]) && process_gone(pids[3])
    })?;
    drop(lease);
    m.stop_blocking();
    check!(process_gone(pids[6]), "last worker {} left behind", pids[6]);
    Ok(())
}

/// The pipes this process has open (`pipe:[inode]`). Earlier scenarios
/// may still be closing theirs, so a scenario compares the pipes it saw
/// at its start with those left at its end: none may be new.
fn open_pipes() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .map(|target| target.to_string_lossy().into_owned())
                .filter(|target| target.starts_with("pipe:"))
                .collect()
        })
        .unwrap_or_default()
}

fn no_children_after_stop() -> Outcome {
    let pipes_before = open_pipes();
    let m = manager("lp-stop", ProcessBackend::new(), 2, 2);
    m.start_blocking().map_err(|e| e.to_string())?;
    let a = lease_on(&m)?;
    let b = lease_on(&m)?;
    let handles: Vec<_> = [&a, &a, &b, &b]
        .into_iter()
        .map(|lease| lease.submit_call(pid_after, 300).unwrap())
        .collect();
    let mut pids = Vec::new();
    for handle in handles {
        pids.push(wait(handle).map_err(|e| e.to_string())?);
    }
    pids.sort_unstable();
    pids.dedup();
    check!(pids.len() == 4, "expected 4 workers, saw {pids:?}");
    // Calls running at stop finish; a queued one is cancelled.
    let running = [
        a.submit_call(sleep_ms, 200).unwrap(),
        a.submit_call(sleep_ms, 200).unwrap(),
    ];
    let queued = a.submit_call(sleep_ms, 200).unwrap();
    drop((a, b));
    m.stop_blocking();
    for pid in &pids {
        check!(process_gone(*pid), "worker {pid} still exists after stop");
    }
    for handle in running {
        let got = wait(handle);
        check!(got == Ok(200), "a running call: {got:?}");
    }
    let got = wait(queued);
    check!(got == Err(Error::Cancelled), "a queued call: {got:?}");
    // Every pipe to the workers is closed again.
    let left: Vec<_> = open_pipes().difference(&pipes_before).cloned().collect();
    check!(left.is_empty(), "pipes left open after stop: {left:?}");
    Ok(())
}

fn kill_on_hard_expiry() -> Outcome {
    let backend = ProcessBackend::new().kill_on_hard_expiry(true);
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .lease_grace(Duration::ZERO)
        .name_prefix("lp-expire")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = m
        .acquire()
        .lease(Duration::from_millis(500))
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    match wait(lease.submit_call(sleep_ms, 60_000).unwrap()) {
        Err(Error::Broken(reason)) => check!(reason.contains("hard expiry"), "reason: {reason}"),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(
        started.elapsed() < Duration::from_secs(20),
        "not killed promptly"
    );
    wait_until("the killed worker is reaped", || process_gone(worker))?;
    drop(lease);
    let fresh = lease_on(&m)?;
    check!(
        wait(fresh.submit_call(add, (1, 2)).unwrap()) == Ok(3),
        "new pool"
    );
    drop(fresh);
    m.stop_blocking();
    Ok(())
}

fn closures_and_bad_options_are_refused() -> Outcome {
    let got = LeasedExecutorManager::builder(ProcessBackend::new().jobs_per_worker(0))
        .max_pools(1)
        .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "jobs_per_worker",
                ..
            })
        ),
        "jobs_per_worker(0): {got:?}"
    );
    let got =
        LeasedExecutorManager::builder(ProcessBackend::new().handshake_timeout(Duration::ZERO))
            .max_pools(1)
            .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "handshake_timeout",
                ..
            })
        ),
        "handshake_timeout(0): {got:?}"
    );
    let got =
        LeasedExecutorManager::builder(ProcessBackend::new().busy_poll(Duration::from_secs(1)))
            .max_pools(1)
            .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "busy_poll",
                ..
            })
        ),
        "busy_poll(1 s): {got:?}"
    );
    // A closure task reaching a process pool (only possible through a
    // type-erased backend) fails clearly.
    let pool = ProcessBackend::new()
        .create_pool(PoolContext::detached(1, 1, "lp-detached"))
        .map_err(|e| e.to_string())?;
    let (task, handle) = Task::new(|| 1 + 1);
    pool.execute(task);
    let got = wait(handle);
    check!(
        matches!(got, Err(Error::UnsupportedBackend(_))),
        "closure: {got:?}"
    );
    let (task, handle) = Task::call(add, (1, 2));
    pool.execute(task);
    check!(wait(handle) == Ok(3), "Task::call on a detached pool");
    let pids = pool.pids();
    pool.shutdown();
    let (task, handle) = Task::call(add, (1, 2));
    pool.execute(task);
    check!(wait(handle) == Err(Error::Cancelled), "call after shutdown");
    wait_until("the detached pool's worker is reaped", || {
        pids.iter().all(|pid| process_gone(*pid))
    })?;
    Ok(())
}

/// Set in the environment of the intermediate parent of
/// `orphaned_workers_exit`.
const ORPHAN_PARENT_ENV: &str = "LP_TEST_ORPHAN_PARENT";

/// The intermediate parent: two workers, one busy for a minute and one
/// idle; prints their pids and waits to be killed.
fn orphan_parent() -> ! {
    let m = manager("lp-orphan", ProcessBackend::new(), 1, 2);
    m.start_blocking().expect("start");
    let lease = m.acquire().blocking().expect("a lease");
    // Two overlapping calls land on both workers.
    let a = lease.submit_call(pid_after, 300).expect("submit");
    let b = lease.submit_call(pid_after, 300).expect("submit");
    let (a, b) = (wait(a).expect("pid"), wait(b).expect("pid"));
    let busy = lease.submit_call(sleep_ms, 60_000).expect("submit");
    println!("{a} {b}");
    std::thread::sleep(PATIENCE);
    drop(busy);
    std::process::exit(3) // not reached: the test kills this process
}

fn orphaned_workers_exit() -> Outcome {
    use std::io::BufRead;
    let mut parent =
        std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(ORPHAN_PARENT_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the intermediate parent: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(parent.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    check!(
        pids.len() == 2 && pids[0] != pids[1],
        "worker pids: {line:?}"
    );
    check!(
        pids.iter().all(|pid| !process_exited(*pid)),
        "workers alive before the parent dies"
    );
    parent.kill().map_err(|e| e.to_string())?;
    let _ = parent.wait();
    // The idle worker sees its stdin close; the busy one (in a call of a
    // minute) notices that its parent changed.
    wait_until("both orphaned workers exit", || {
        pids.iter().all(|pid| process_exited(*pid))
    })
}

/// `call`, `acquire` and `release` awaited under every runtime the crate
/// promises to work with, none of which it depends on.
fn call_under_every_runtime() -> Outcome {
    let m = manager("lp-rt", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let body = |m: LeasedExecutorManager<ProcessBackend>| async move {
        let lease = m.acquire().timeout(PATIENCE).await?;
        let sum = lease.call(add, (40, 2)).await?;
        let text = lease.executor().call(shout, "rt".to_owned()).await?;
        lease.release().await;
        Ok::<_, Error>((sum, text))
    };
    let expected = Ok((42, "RT".to_owned()));
    let tokio_ct = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(body(m.clone()));
    check!(tokio_ct == expected, "tokio current-thread: {tokio_ct:?}");
    let tokio_mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .map_err(|e| e.to_string())?
        .block_on(body(m.clone()));
    check!(tokio_mt == expected, "tokio multi-thread: {tokio_mt:?}");
    let smol = smol::block_on(body(m.clone()));
    check!(smol == expected, "smol: {smol:?}");
    let async_std = async_std::task::block_on(body(m.clone()));
    check!(async_std == expected, "async-std: {async_std:?}");
    let plain = futures_lite::future::block_on(body(m.clone()));
    check!(plain == expected, "futures-lite block_on: {plain:?}");
    m.stop_blocking();
    Ok(())
}

/// Short calls back to back on several pools at once, with and without
/// busy-polling: every result arrives, whoever polls.
fn busy_polling_pools() -> Outcome {
    let polling = manager("lp-poll", ProcessBackend::new(), 2, 1);
    let blocking = manager(
        "lp-nopoll",
        ProcessBackend::new().busy_poll(Duration::ZERO),
        1,
        1,
    );
    polling.start_blocking().map_err(|e| e.to_string())?;
    blocking.start_blocking().map_err(|e| e.to_string())?;
    std::thread::scope(|scope| {
        let mut runs = Vec::new();
        for m in [&polling, &polling, &blocking] {
            runs.push(scope.spawn(move || -> Outcome {
                let lease = lease_on(m)?;
                for i in 0..2_000u64 {
                    check!(
                        wait(lease.submit_call(add, (i, 1)).unwrap()) == Ok(i + 1),
                        "call {i}"
                    );
                }
                Ok(())
            }));
        }
        runs.into_iter()
            .try_for_each(|run| run.join().unwrap_or_else(|_| Err("panicked".into())))
    })?;
    polling.stop_blocking();
    blocking.stop_blocking();
    Ok(())
}

// ------------------------------------------------------------- log capture

#[derive(Debug, Clone)]
struct Captured {
    level: log::Level,
    target: String,
    message: String,
    file: Option<String>,
    line: Option<u32>,
}

struct TestLogger(Mutex<Vec<Captured>>);

impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(Captured {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            file: record.file().map(str::to_owned),
            line: record.line(),
        });
    }

    fn flush(&self) {}
}

static LOGGER: TestLogger = TestLogger(Mutex::new(Vec::new()));

fn captured(target: &str) -> Vec<Captured> {
    LOGGER
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.target == target)
        .cloned()
        .collect()
}

fn log_forwarding() -> Outcome {
    let logging = ProcessLogging::new()
        .enabled(true)
        .level(log::LevelFilter::Info)
        .target("lp-test-workers")
        .stderr(true);
    let m = manager("lp-log", ProcessBackend::new().logging(logging), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    check!(
        wait(lease.submit_call(log_something, 7).unwrap()) == Ok(7),
        "call"
    );
    // The record travels before the result on the same pipe.
    let records = captured("lp-test-workers");
    let expected = format!("[worker {worker}] my_worker_target: warned 7");
    let record = records
        .iter()
        .find(|c| c.message == expected)
        .ok_or_else(|| format!("no forwarded record {expected:?} in {records:?}"))?;
    check!(record.level == log::Level::Warn, "level {:?}", record.level);
    check!(
        record
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("process.rs"))
            && record.line.is_some(),
        "location {record:?}"
    );
    check!(
        !records
            .iter()
            .any(|c| c.message.contains("below the level")),
        "a debug record was forwarded: {records:?}"
    );
    check!(
        wait(
            lease
                .submit_call(to_stderr, "to stderr 123".to_owned())
                .unwrap()
        ) == Ok(()),
        "stderr call"
    );
    let expected = format!("[worker {worker}] stderr: to stderr 123");
    wait_until("the stderr line is forwarded", || {
        captured("lp-test-workers")
            .iter()
            .any(|c| c.message == expected)
    })?;
    // A stray println! neither corrupts the protocol nor breaks the pool:
    // it comes out on the worker's stderr.
    check!(
        wait(
            lease
                .submit_call(to_stdout, "printed 456".to_owned())
                .unwrap()
        ) == Ok(11),
        "println call"
    );
    let expected = format!("[worker {worker}] stderr: printed 456");
    wait_until("the printed line is forwarded as stderr", || {
        captured("lp-test-workers")
            .iter()
            .any(|c| c.message == expected)
    })?;
    check!(lease.ended().is_none(), "the lease survived a println!");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

/// The grinder batches `call` items into process pools: each item's own
/// result, a panic confined to its item, and a worker crash giving the
/// items that did not run a `Broken` error.
fn grinder_batches_calls() -> Outcome {
    use leasepool_core::{StopMode, WorkGrinder};
    let m = LeasedExecutorManager::builder(ProcessBackend::new())
        .max_pools(1)
        .workers_per_pool(2)
        .name_prefix("lp-grind")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(8)
        .max_wait(Duration::from_millis(20))
        .build()
        .map_err(|e| e.to_string())?;
    g.start_blocking().map_err(|e| e.to_string())?;
    let handles: Vec<_> = (0..8u64)
        .map(|x| g.enqueue_call(conformance::square, x))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for (x, handle) in handles.into_iter().enumerate() {
        let x = x as u64;
        if handle.wait() != Ok(x * x) {
            return Err(format!("item {x} got the wrong result"));
        }
    }
    let panicked = g
        .enqueue_call(conformance::panics, ())
        .map_err(|e| e.to_string())?;
    let fine = g
        .enqueue_call(conformance::square, 9)
        .map_err(|e| e.to_string())?;
    if panicked.wait() != Err(Error::Panicked("conformance boom".to_owned())) {
        return Err("a panicking item should fail with Panicked".into());
    }
    if fine.wait() != Ok(81) {
        return Err("a panic must not affect the other items".into());
    }
    if futures_lite::future::block_on(g.submit_call(conformance::square, 12)) != Ok(144) {
        return Err("submit_call".into());
    }
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
    Ok(())
}

// --------------------------------------------------------------------- main

fn main() {
    init(registry());
    // Only the parent gets here.
    if std::env::var_os(ORPHAN_PARENT_ENV).is_some() {
        orphan_parent();
    }
    log::set_logger(&LOGGER).expect("no other logger");
    log::set_max_level(log::LevelFilter::Trace);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        eprintln!("the process tests hung for 10 minutes");
        std::process::exit(2);
    });

    let scenarios: &[Scenario] = &[
        ("call_round_trip", call_round_trip),
        ("panic_and_unknown_function", panic_and_unknown_function),
        ("abort_breaks_only_its_pool", abort_breaks_only_its_pool),
        ("sigkill_mid_job", sigkill_mid_job),
        (
            "bad_initializer_breaks_the_pool",
            bad_initializer_breaks_the_pool,
        ),
        (
            "different_registry_is_refused",
            different_registry_is_refused,
        ),
        ("not_a_worker_fails_fast", not_a_worker_fails_fast),
        ("recycling_after_n_jobs", recycling_after_n_jobs),
        ("no_children_after_stop", no_children_after_stop),
        ("orphaned_workers_exit", orphaned_workers_exit),
        ("busy_polling_pools", busy_polling_pools),
        ("call_under_every_runtime", call_under_every_runtime),
        ("kill_on_hard_expiry", kill_on_hard_expiry),
        (
            "closures_and_bad_options_are_refused",
            closures_and_bad_options_are_refused,
        ),
        ("log_forwarding", log_forwarding),
        (
            "grinder_batches_calls_into_worker_processes",
            grinder_batches_calls,
        ),
        ("conformance_call_round_trip", || {
            conformance::call_round_trip(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_panics_are_contained", || {
            conformance::call_panics_are_contained(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_release_drains", || {
            conformance::call_release_drains(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_expiry_revokes", || {
            conformance::call_expiry_revokes(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_stop_shuts_down", || {
            conformance::call_stop_shuts_down(ProcessBackend::new);
            Ok(())
        }),
    ];
    runner::run(scenarios);
}
