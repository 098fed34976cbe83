//! The process backend against hostile user code: `Serialize` and
//! `Deserialize` impls that panic, results over the frame limit, frozen
//! workers, workers that start processes of their own, stderr that never
//! stops, and the resource controls that bound a worker.
//!
//! No test harness, as in `process.rs`: `main` first calls
//! `leasepool_process::init`, so a copy of this binary started as a worker
//! serves calls instead of running the scenarios. Every wait is a poll
//! against a deadline, never a sleep that hopes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leasepool_core::{
    Error, ExecutorLease, JobHandle, LeasedExecutorManager, StopMode, WorkGrinder,
};
use leasepool_process::{ProcessBackend, Registry, init};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Every wait in this file is bounded by this.
const PATIENCE: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ hostile types

/// Decodes by panicking inside its visitor (the common shape: a derived
/// type with a hostile field).
#[derive(Debug)]
struct PanicsInVisitor(u8);

impl Serialize for PanicsInVisitor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for PanicsInVisitor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PanicsInVisitor;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a u8")
            }
            fn visit_u8<E>(self, _: u8) -> Result<PanicsInVisitor, E> {
                panic!("hostile Deserialize")
            }
        }
        d.deserialize_u8(V)
    }
}

/// A derived result with a hostile field.
#[derive(Debug, Serialize, Deserialize)]
struct Nested {
    ok: u32,
    bad: PanicsInVisitor,
}

/// Panics in the body of `deserialize`, before touching the deserializer.
#[derive(Debug, Serialize)]
struct PanicsInBody;

impl<'de> Deserialize<'de> for PanicsInBody {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("hostile Deserialize body")
    }
}

/// Panics when serialised.
#[derive(Debug, Deserialize)]
struct PanicsOnEncode(u8);

impl Serialize for PanicsOnEncode {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("hostile Serialize")
    }
}

// ---------------------------------------------------------------- functions

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn returns_hostile_nested(ok: u32) -> Nested {
    Nested {
        ok,
        bad: PanicsInVisitor(1),
    }
}

fn returns_hostile_body(_: ()) -> PanicsInBody {
    PanicsInBody
}

fn takes_hostile(_: PanicsInVisitor) -> u8 {
    1
}

fn returns_unencodable(x: u8) -> PanicsOnEncode {
    PanicsOnEncode(x)
}

fn takes_unencodable(x: PanicsOnEncode) -> u8 {
    x.0
}

/// A few bytes more than the frame limit (64 MiB) once framed (a string
/// encodes in one piece, fast even in a debug build).
fn oversized(_: ()) -> String {
    "x".repeat(64 << 20)
}

/// Starts `sleep secs` (in the worker's process group) and returns its pid
/// without waiting for it.
fn spawn_grandchild(secs: u32) -> u32 {
    std::process::Command::new("sleep")
        .arg(secs.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(|child| child.id())
        .unwrap_or(0)
}

/// Starts `sleep 60` (see [`spawn_grandchild`]), waits `ms`, returns its
/// pid.
fn grandchild_after(ms: u64) -> u32 {
    let grandchild = spawn_grandchild(60);
    std::thread::sleep(Duration::from_millis(ms));
    grandchild
}

/// Starts a shell that writes `tick` to the (inherited) stderr every 20 ms;
/// with `escape`, in a process group of its own, out of reach of the
/// worker's group. Returns its pid.
fn spawn_ticker(escape: bool) -> u32 {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "while :; do echo tick >&2; sleep 0.02; done"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if escape {
        command.process_group(0);
    }
    command.spawn().map(|child| child.id()).unwrap_or(0)
}

/// Allocates `mib` MiB, touches every page (so it is resident) and leaks
/// it; returns the worker's pid.
fn hog(mib: usize) -> u32 {
    let block = vec![1u8; mib << 20];
    std::mem::forget(block);
    std::process::id()
}

/// True if `mib` MiB could be reserved (fails under `memory_limit`).
fn try_alloc(mib: usize) -> bool {
    Vec::<u8>::new().try_reserve_exact(mib << 20).is_ok()
}

/// The soft `Max address space` limit of this process, from
/// `/proc/self/limits` (`None`: unlimited or unreadable).
fn address_space_limit(_: ()) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn text_len(text: String) -> usize {
    text.len()
}

fn registry() -> Registry {
    Registry::new()
        .register(add)
        .register(pid)
        .register(sleep_ms)
        .register(returns_hostile_nested)
        .register(returns_hostile_body)
        .register(takes_hostile)
        .register(returns_unencodable)
        .register(takes_unencodable)
        .register(oversized)
        .register(text_len)
        .register(spawn_grandchild)
        .register(spawn_ticker)
        .register(grandchild_after)
        .register(hog)
        .register(try_alloc)
        .register(address_space_limit)
}

// ------------------------------------------------------------------ helpers

type Outcome = Result<(), String>;

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
    workers: usize,
) -> LeasedExecutorManager<ProcessBackend> {
    LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(workers)
        .name_prefix(name)
        .build()
        .expect("valid configuration")
}

fn started(
    name: &str,
    backend: ProcessBackend,
    workers: usize,
) -> Result<LeasedExecutorManager<ProcessBackend>, String> {
    let m = manager(name, backend, workers);
    m.start_blocking().map_err(|e| e.to_string())?;
    Ok(m)
}

fn lease_on(
    m: &LeasedExecutorManager<ProcessBackend>,
) -> Result<ExecutorLease<ProcessBackend>, String> {
    m.acquire()
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())
}

/// The job's outcome, or a test failure if it has none within [`PATIENCE`].
fn outcome<T>(mut handle: JobHandle<T>) -> Result<Result<T, Error>, String> {
    handle
        .wait_timeout(PATIENCE)
        .ok_or_else(|| format!("a job had no outcome within {PATIENCE:?}"))
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

/// Runs `f` on a thread and fails if it does not return within
/// [`PATIENCE`] (a hung `stop()` fails the test instead of hanging it).
fn within<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .map_err(|_| format!("{what} did not return within {PATIENCE:?}"))
}

/// Stops `m`, failing if that hangs.
fn stop(m: LeasedExecutorManager<ProcessBackend>) -> Outcome {
    within("stop()", move || m.stop_blocking())
}

/// Stops `m`; then no child of this process may be left, running or
/// unreaped.
fn stop_clean(m: LeasedExecutorManager<ProcessBackend>) -> Outcome {
    stop(m)?;
    let left = children_left();
    check!(left.is_empty(), "children left after stop(): {left:?}");
    Ok(())
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), `None` if
/// it does not exist.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Gone and reaped (a zombie still has a `/proc` entry).
fn reaped(pid: u32) -> bool {
    process_state(pid).is_none()
}

/// The pids of this process's children, alive or zombie (exited, never
/// reaped). After `stop()` there must be none: no worker left running, none
/// left unreaped.
fn children_left() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
                rest.split_whitespace().nth(1) == Some(me.as_str())
            })
        })
        .collect()
}

/// Gone, or a zombie waiting for whoever adopted it (an orphan's new
/// parent may be slow to reap, or never reap in a minimal container).
fn exited(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z' | 'X'))
}

fn signal(pid: u32, signal: &str) -> Outcome {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    check!(status.success(), "kill {signal} {pid}: {status}");
    Ok(())
}

/// The pipes this process has open (each worker has two or three).
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

/// Fails if a pipe opened since `before` is still open.
fn no_pipes_left(before: &std::collections::BTreeSet<String>) -> Outcome {
    let left: Vec<_> = open_pipes().difference(before).cloned().collect();
    check!(left.is_empty(), "pipes left open: {left:?}");
    Ok(())
}

/// The names of this process's threads that start with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Forwarded stderr lines, captured from the `log` records.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        if message.contains("stderr: ") {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message);
        }
    }

    fn flush(&self) {}
}

static LOGGER: Captured = Captured(Mutex::new(Vec::new()));

/// How many `tick` lines from worker `pid` were forwarded.
fn ticks_from(pid: u32) -> usize {
    let needle = format!("[worker {pid}] stderr: tick");
    LOGGER
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m.contains(&needle))
        .count()
}

fn is_serialization(got: &Result<impl std::fmt::Debug, Error>, needles: &[&str]) -> bool {
    matches!(got, Err(Error::Serialization(message)) if needles.iter().all(|n| message.contains(n)))
}

// ---------------------------------------------------------------- scenarios

/// 1. Panicking `Deserialize`/`Serialize` impls on either side fail their
///    own call with `Error::Serialization`; the same worker serves on and
///    is reaped at stop.
fn hostile_serde_impls_fail_only_their_call() -> Outcome {
    let pipes = open_pipes();
    let m = started("lpa-serde", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;

    // The result's Deserialize panics in the parent, on the reader thread.
    let got = outcome(lease.submit_call(returns_hostile_nested, 5).unwrap())?;
    check!(
        is_serialization(
            &got,
            &["returns_hostile_nested", "panicked", "hostile Deserialize"]
        ),
        "a result whose Deserialize panics: {got:?}"
    );
    // The argument's Deserialize panics in the worker.
    let got = outcome(
        lease
            .submit_call(takes_hostile, PanicsInVisitor(3))
            .unwrap(),
    )?;
    check!(
        is_serialization(&got, &["takes_hostile", "panicked", "hostile Deserialize"]),
        "an argument whose Deserialize panics in the worker: {got:?}"
    );
    // The result's Serialize panics in the worker.
    let got = outcome(lease.submit_call(returns_unencodable, 3).unwrap())?;
    check!(
        is_serialization(
            &got,
            &["returns_unencodable", "panicked", "hostile Serialize"]
        ),
        "a result whose Serialize panics in the worker: {got:?}"
    );
    // The argument's Serialize panics in the parent, in execute.
    let got = outcome(
        lease
            .submit_call(takes_unencodable, PanicsOnEncode(1))
            .unwrap(),
    )?;
    check!(
        is_serialization(
            &got,
            &["takes_unencodable", "panicked", "hostile Serialize"]
        ),
        "an argument whose Serialize panics in the parent: {got:?}"
    );
    // The same worker is still idle and serving: nothing hangs.
    for i in 0..3 {
        let got = outcome(lease.submit_call(add, (i, 1)).unwrap())?;
        check!(got == Ok(i + 1), "call {i} after the hostile ones: {got:?}");
    }
    let same = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        same == worker,
        "the worker was replaced ({worker} -> {same})"
    );
    drop(lease);
    stop(m)?;
    check!(
        reaped(worker),
        "worker {worker} not reaped after stop ({:?})",
        process_state(worker)
    );
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 1 (rest). A result whose `Deserialize` panics in its own body, outside
/// any deserializer method: the process backend keeps its reader and the
/// worker alive, but the outcome itself is decided in leasepool-core
/// (`RemoteCall::deliver`), which must catch the panic. Run it by name.
fn hostile_deserialize_body() -> Outcome {
    let m = started("lpa-body", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let got = outcome(lease.submit_call(returns_hostile_body, ()).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m) | Error::Panicked(m)) if m.contains("hostile Deserialize body")),
        "a result whose Deserialize body panics: {got:?}"
    );
    let got = outcome(lease.submit_call(add, (1, 1)).unwrap())?;
    check!(got == Ok(2), "the worker serves on: {got:?}");
    drop(lease);
    stop_clean(m)
}

/// 2. Through the grinder: an argument whose `Serialize` panics fails its
///    item alone; later items run and `stop()` returns.
fn grinder_survives_hostile_argument() -> Outcome {
    let m = started("lpa-grind", ProcessBackend::new(), 2)?;
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(4)
        .max_wait(Duration::from_millis(10))
        .build()
        .map_err(|e| e.to_string())?;
    g.start_blocking().map_err(|e| e.to_string())?;
    let before = g.enqueue_call(add, (1, 1)).map_err(|e| e.to_string())?;
    let hostile = g
        .enqueue_call(takes_unencodable, PanicsOnEncode(1))
        .map_err(|e| e.to_string())?;
    let after: Vec<_> = (0..6u64)
        .map(|i| g.enqueue_call(add, (i, 10)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let got = outcome(hostile)?;
    check!(
        is_serialization(
            &got,
            &["takes_unencodable", "panicked", "hostile Serialize"]
        ),
        "the hostile item: {got:?}"
    );
    check!(outcome(before)? == Ok(2), "the item before");
    for (i, handle) in (0..6u64).zip(after) {
        let got = outcome(handle)?;
        check!(got == Ok(i + 10), "item {i} after the hostile one: {got:?}");
    }
    // A later batch still runs.
    let late = g.enqueue_call(add, (40, 2)).map_err(|e| e.to_string())?;
    check!(outcome(late)? == Ok(42), "a later batch");
    within("the grinder's stop()", move || {
        g.stop_blocking(StopMode::Drain)
    })?;
    stop_clean(m)
}

/// 3. A result over the frame limit fails its call with
///    `Error::Serialization` naming the limit; the worker serves on.
fn oversized_result_fails_only_its_call() -> Outcome {
    let m = started("lpa-big", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let got = outcome(lease.submit_call(oversized, ()).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m)) if m.contains("oversized") && m.contains("frame limit of 64 MiB")),
        "an oversized result: {:?}",
        got.map(|v| v.len())
    );
    // The same limit, the same kind of message, for an argument (refused
    // in the parent, before anything is sent).
    let got = outcome(lease.submit_call(text_len, "x".repeat(64 << 20)).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m)) if m.contains("argument of") && m.contains("text_len") && m.contains("frame limit of 64 MiB")),
        "an oversized argument: {got:?}"
    );
    let same = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(same == worker, "the worker was lost ({worker} -> {same})");
    drop(lease);
    stop_clean(m)?;
    check!(reaped(worker), "worker {worker} not reaped");
    Ok(())
}

/// 4. A frozen worker (`SIGSTOP`) does not hold `stop()`: after
///    `shutdown_grace` it is killed and reaped, and its call fails.
fn frozen_worker_is_killed_after_the_grace() -> Outcome {
    let pipes = open_pipes();
    let backend = ProcessBackend::new().shutdown_grace(Duration::from_millis(300));
    let m = started("lpa-frozen", backend, 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let pending = lease.submit_call(sleep_ms, 2_000).unwrap();
    signal(worker, "-STOP")?;
    wait_until("the worker is stopped", || {
        process_state(worker) == Some('T')
    })?;
    drop(lease); // draining: the call is still pending
    let took = Instant::now();
    stop(m)?;
    let took = took.elapsed();
    check!(took < Duration::from_secs(10), "stop() took {took:?}");
    let got = outcome(pending)?;
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("shutdown_grace") && m.contains("300ms")),
        "the frozen worker's call: {got:?}"
    );
    check!(
        reaped(worker),
        "worker {worker} not reaped: {:?}",
        process_state(worker)
    );
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 5. A process a worker started dies with it: at `stop()`, and when a
///    lease's hard expiry kills the workers.
fn grandchildren_do_not_survive() -> Outcome {
    let m = started("lpa-grand", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let grandchild =
        outcome(lease.submit_call(spawn_grandchild, 60).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        grandchild != 0 && !exited(grandchild),
        "the grandchild runs"
    );
    drop(lease);
    stop(m)?;
    wait_until("the grandchild is killed at stop()", || exited(grandchild))?;

    let backend = ProcessBackend::new().kill_on_hard_expiry(true);
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .lease_grace(Duration::ZERO)
        .name_prefix("lpa-grand2")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = m
        .acquire()
        .lease(Duration::from_millis(500))
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())?;
    let grandchild =
        outcome(lease.submit_call(spawn_grandchild, 60).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        grandchild != 0 && !exited(grandchild),
        "the second grandchild runs"
    );
    let got = outcome(lease.submit_call(sleep_ms, 60_000).unwrap())?;
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("hard expiry")),
        "the call killed at hard expiry: {got:?}"
    );
    wait_until("the grandchild is killed at hard expiry", || {
        exited(grandchild)
    })?;
    drop(lease);
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// Set in the environment of the intermediate parent of
/// `orphaned_workers_take_their_grandchildren`.
const ORPHAN_PARENT_ENV: &str = "LPA_ORPHAN_PARENT";

/// The intermediate parent: two workers that each started a grandchild,
/// one then idle and one in a call of a minute; prints the grandchildren's
/// pids and waits to be killed.
fn orphan_parent() -> ! {
    let m = manager("lpa-orphan", ProcessBackend::new(), 2);
    m.start_blocking().expect("start");
    let lease = m.acquire().blocking().expect("a lease");
    // Two overlapping calls land on both workers.
    let a = lease.submit_call(grandchild_after, 300).expect("submit");
    let b = lease.submit_call(grandchild_after, 300).expect("submit");
    let (a, b) = (a.wait().expect("pid"), b.wait().expect("pid"));
    let busy = lease.submit_call(sleep_ms, 60_000).expect("submit");
    println!("{a} {b}");
    std::thread::sleep(PATIENCE);
    drop(busy);
    std::process::exit(3) // not reached: the test kills this process
}

/// 5 (rest). When the parent dies without stopping (killed), its workers
///    exit by themselves and take the processes they started with them.
fn orphaned_workers_take_their_grandchildren() -> Outcome {
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
    let grandchildren: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    check!(
        grandchildren.len() == 2 && grandchildren.iter().all(|g| *g != 0 && !exited(*g)),
        "grandchildren: {line:?}"
    );
    parent.kill().map_err(|e| e.to_string())?;
    let _ = parent.wait();
    wait_until("both grandchildren are killed", || {
        grandchildren.iter().all(|g| exited(*g))
    })
}

/// 6. The stderr forwarder ends by the time `stop()` returns, even when a
///    process that left the worker's group keeps the pipe open.
fn stderr_forwarding_ends_at_stop() -> Outcome {
    use leasepool_process::ProcessLogging;
    for escape in [false, true] {
        let pipes = open_pipes();
        let backend = ProcessBackend::new().logging(ProcessLogging::new().stderr(true));
        let m = started("lpa-err", backend, 1)?;
        let lease = lease_on(&m)?;
        let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
        let ticker = outcome(lease.submit_call(spawn_ticker, escape).unwrap())?
            .map_err(|e| e.to_string())?;
        check!(ticker != 0, "the ticker started");
        wait_until("ticks are forwarded", || ticks_from(worker) >= 2)?;
        drop(lease);
        let result = stop(m);
        let at_stop = ticks_from(worker);
        let threads = threads_named("lpa-err");
        if escape {
            signal(ticker, "-KILL")?;
        }
        result?;
        check!(
            threads.iter().all(|t| !t.ends_with("-err")),
            "escape={escape}: the stderr thread outlived stop(): {threads:?}"
        );
        if !escape {
            wait_until("the ticker dies with the worker's group", || exited(ticker))?;
        }
        wait_until("the pool's threads are gone", || {
            threads_named("lpa-err").is_empty()
        })?;
        check!(
            ticks_from(worker) == at_stop,
            "escape={escape}: lines forwarded after stop() returned ({at_stop} -> {})",
            ticks_from(worker)
        );
        no_pipes_left(&pipes)?;
        let left = children_left();
        check!(left.is_empty(), "children left: {left:?}");
    }
    Ok(())
}

/// 7c. A call over `call_timeout` has its worker killed and fails with
///     `Error::Broken` naming the limit; the pool replaces the worker and
///     the lease serves on (a call queued behind it runs on the new one).
fn call_timeout_kills_and_replaces_the_worker() -> Outcome {
    let pipes = open_pipes();
    let backend = ProcessBackend::new().call_timeout(Duration::from_millis(300));
    let m = started("lpa-limit", backend, 1)?;
    let lease = lease_on(&m)?;
    let first = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let took = Instant::now();
    let slow = lease.submit_call(sleep_ms, 10_000).unwrap();
    let queued = lease.submit_call(add, (1, 2)).unwrap();
    let got = outcome(slow)?;
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("sleep_ms") && m.contains("call_timeout") && m.contains("300ms")),
        "the slow call: {got:?}"
    );
    check!(
        took.elapsed() < Duration::from_secs(5),
        "killed late: {:?}",
        took.elapsed()
    );
    check!(outcome(queued)? == Ok(3), "the call queued behind it");
    wait_until("the killed worker is reaped", || reaped(first))?;
    let second = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(second != first, "the worker was not replaced");
    // A call within the limit is unaffected.
    check!(
        outcome(lease.submit_call(sleep_ms, 50).unwrap())? == Ok(second),
        "a short call"
    );
    drop(lease);
    stop(m)?;
    check!(reaped(second), "worker {second} not reaped");
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 7a. A worker is recycled once its resident memory reaches
///     `max_memory_per_worker`, and once older than `max_worker_age`; no
///     call fails because of it.
fn workers_recycle_by_memory_and_age() -> Outcome {
    let backend = ProcessBackend::new().max_memory_per_worker(64 << 20);
    let m = started("lpa-rss", backend, 1)?;
    let lease = lease_on(&m)?;
    let first = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let again = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        first == again,
        "recycled below the memory bound ({first} -> {again})"
    );
    let hogged = outcome(lease.submit_call(hog, 96).unwrap())?.map_err(|e| e.to_string())?;
    check!(hogged == first, "the hog ran elsewhere");
    let fresh = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(fresh != first, "not recycled above the memory bound");
    wait_until("the recycled worker is reaped", || reaped(first))?;
    drop(lease);
    stop(m)?;

    let backend = ProcessBackend::new().max_worker_age(Duration::from_secs(1));
    let m = started("lpa-age", backend, 1)?;
    let lease = lease_on(&m)?;
    let old = outcome(lease.submit_call(sleep_ms, 1_100).unwrap())?.map_err(|e| e.to_string())?;
    let young = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(young != old, "not recycled past max_worker_age");
    wait_until("the old worker is reaped", || reaped(old))?;
    drop(lease);
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// 7b. `memory_limit` is applied by each worker to itself: its address
///     space limit is set, and a larger allocation fails in the worker.
fn memory_limit_applies_in_the_worker() -> Outcome {
    let limit = 512u64 << 20;
    let m = started("lpa-rlimit", ProcessBackend::new().memory_limit(limit), 1)?;
    let lease = lease_on(&m)?;
    let got = outcome(lease.submit_call(address_space_limit, ()).unwrap())?;
    check!(
        got == Ok(Some(limit)),
        "the worker's address space limit: {got:?}"
    );
    let got = outcome(lease.submit_call(try_alloc, 1024).unwrap())?;
    check!(got == Ok(false), "1 GiB under a 512 MiB limit: {got:?}");
    let got = outcome(lease.submit_call(try_alloc, 16).unwrap())?;
    check!(got == Ok(true), "16 MiB under a 512 MiB limit: {got:?}");
    drop(lease);
    stop_clean(m)?;
    // The parent itself is not limited.
    check!(
        address_space_limit(()) != Some(limit),
        "the parent was limited"
    );
    Ok(())
}

/// The argument given to this binary to run it as [`fake_worker`].
const FAKE_WORKER_ARG: &str = "--fake-worker-with-changed-types";

/// A worker "built separately" whose `add` takes `(u32, u32)`: it answers
/// the handshake as a leasepool worker of this protocol version would (the
/// frame is spelled out here, mirroring `protocol.rs`), then waits for its
/// stdin to close.
fn fake_worker() -> ! {
    use std::io::{Read, Write};
    #[derive(Serialize)]
    enum FromWorker {
        Hello {
            protocol: u32,
            token: String,
            functions: Vec<(String, String, String)>,
            init_error: Option<String>,
        },
    }
    let token = std::env::var("LEASEPOOL_PROCESS_WORKER").unwrap_or_default();
    let hello = FromWorker::Hello {
        protocol: 2,
        token,
        functions: vec![(
            leasepool_core::function_name(add).to_owned(),
            std::any::type_name::<(u32, u32)>().to_owned(),
            std::any::type_name::<u64>().to_owned(),
        )],
        init_error: None,
    };
    let payload = postcard::to_stdvec(&hello).expect("encodable");
    let mut out = std::io::stdout().lock();
    let len = u32::try_from(payload.len()).expect("small");
    let _ = out.write_all(&len.to_le_bytes());
    let _ = out.write_all(&payload);
    let _ = out.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0)
}

/// 7d. A worker whose function takes another argument type than the
///     parent's is refused at the handshake, with a message that says
///     which function and which types.
fn changed_argument_type_is_refused_at_handshake() -> Outcome {
    let program = std::env::current_exe().map_err(|e| e.to_string())?;
    let backend = ProcessBackend::new().worker_command(program, [FAKE_WORKER_ARG]);
    let m = manager("lpa-types", backend, 1);
    let got = m.start_blocking();
    let expected = format!(
        "{} takes (u64, u64) and returns u64 here, but takes (u32, u32) and returns u64 \
         in the worker",
        leasepool_core::function_name(add)
    );
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("different registry") && m.contains(&expected)),
        "a worker with a changed argument type: {got:?}"
    );
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// Every new option refuses values it cannot honour.
fn bad_limits_are_invalid_config() -> Outcome {
    let cases: Vec<(&str, ProcessBackend)> = vec![
        (
            "call_timeout",
            ProcessBackend::new().call_timeout(Duration::ZERO),
        ),
        (
            "call_timeout",
            ProcessBackend::new().call_timeout(Duration::MAX),
        ),
        (
            "shutdown_grace",
            ProcessBackend::new().shutdown_grace(Duration::MAX),
        ),
        (
            "max_worker_age",
            ProcessBackend::new().max_worker_age(Duration::ZERO),
        ),
        (
            "max_memory_per_worker",
            ProcessBackend::new().max_memory_per_worker(0),
        ),
        ("memory_limit", ProcessBackend::new().memory_limit(0)),
    ];
    for (field, backend) in cases {
        let got = LeasedExecutorManager::builder(backend).max_pools(1).build();
        check!(
            matches!(&got, Err(Error::InvalidConfig { field: f, .. }) if *f == field),
            "{field}: {:?}",
            got.err()
        );
    }
    Ok(())
}

// --------------------------------------------------------------------- main

type Scenario = (&'static str, fn() -> Outcome, bool);

fn main() {
    if std::env::args().any(|a| a == FAKE_WORKER_ARG) {
        fake_worker();
    }
    init(registry());
    if std::env::var_os(ORPHAN_PARENT_ENV).is_some() {
        orphan_parent();
    }
    log::set_logger(&LOGGER).expect("no other logger");
    log::set_max_level(log::LevelFilter::Warn);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("the adversarial tests hung for 5 minutes");
        std::process::exit(2);
    });
    // (name, scenario, runs by default)
    let scenarios: &[Scenario] = &[
        (
            "hostile_serde_impls_fail_only_their_call",
            hostile_serde_impls_fail_only_their_call,
            true,
        ),
        ("hostile_deserialize_body", hostile_deserialize_body, false),
        (
            "grinder_survives_hostile_argument",
            grinder_survives_hostile_argument,
            true,
        ),
        (
            "oversized_result_fails_only_its_call",
            oversized_result_fails_only_its_call,
            true,
        ),
        (
            "frozen_worker_is_killed_after_the_grace",
            frozen_worker_is_killed_after_the_grace,
            true,
        ),
        (
            "grandchildren_do_not_survive",
            grandchildren_do_not_survive,
            true,
        ),
        (
            "orphaned_workers_take_their_grandchildren",
            orphaned_workers_take_their_grandchildren,
            true,
        ),
        (
            "stderr_forwarding_ends_at_stop",
            stderr_forwarding_ends_at_stop,
            true,
        ),
        (
            "call_timeout_kills_and_replaces_the_worker",
            call_timeout_kills_and_replaces_the_worker,
            true,
        ),
        (
            "workers_recycle_by_memory_and_age",
            workers_recycle_by_memory_and_age,
            true,
        ),
        (
            "memory_limit_applies_in_the_worker",
            memory_limit_applies_in_the_worker,
            true,
        ),
        (
            "changed_argument_type_is_refused_at_handshake",
            changed_argument_type_is_refused_at_handshake,
            true,
        ),
        (
            "bad_limits_are_invalid_config",
            bad_limits_are_invalid_config,
            true,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario, by_default) in scenarios {
        let selected = if filter.is_empty() {
            *by_default
        } else {
            filter.iter().any(|f| name.contains(f.as_str()))
        };
        if !selected {
            println!("test {name} ... ignored");
            continue;
        }
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(scenario))
            .unwrap_or_else(|p| Err(leasepool_core::panic_message(p.as_ref())));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2?})", started.elapsed());
            }
            Err(why) => {
                failed += 1;
                println!("test {name} ... FAILED: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
