//! The parent side of a pool: spawning workers, the handshake, dispatching
//! calls, one reader thread per worker, and reaping.
//!
//! Threads per worker: a *reader* (holds the worker's `WorkerGuard`, reads
//! its frames, reaps it), a *writer* (owns its stdin, so `execute` and
//! `shutdown` never block on a pipe) and, with stderr forwarding, a stderr
//! reader. No leasepool job is completed while the pool's lock is held.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use leasepool_core::{
    BackendPool, BrokenSignal, Error, PoolContext, RemoteCall, Task, WorkerGuard,
};

use crate::ProcessBackend;
use crate::protocol::{
    FromWorker, LOG_LEVEL_ENV, PROTOCOL_VERSION, ToWorker, WORKER_ENV, encode_frame, read_frame,
};
use crate::registry::Fnv1a;
use crate::worker::{is_worker_process, parent_registry};

/// How long a worker whose stdout closed may take to exit before it is
/// killed (it normally exits within milliseconds).
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// One pool of the process backend: `workers_per_pool` worker processes.
pub struct ProcessPool {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ProcessPool")
            .field("pool", &self.shared.ctx.pool_seq())
            .field(
                "pids",
                &state.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
            )
            .field("queued", &state.queue.len())
            .field("closed", &state.closed)
            .field("broken", &state.broken)
            .finish()
    }
}

/// What a pool's threads share.
struct Shared {
    state: Mutex<State>,
    ctx: PoolContext,
    broken_signal: BrokenSignal,
    config: Config,
}

/// The backend options a pool needs, fixed at creation.
struct Config {
    program: PathBuf,
    backend: ProcessBackend,
    token: String,
    expected_fingerprint: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Shut down: no new work, no replacements.
    closed: bool,
    /// Revoked with `kill_on_hard_expiry`: the workers were killed.
    revoked: bool,
    /// Set once when the pool breaks; later calls fail with it.
    broken: Option<String>,
    queue: VecDeque<RemoteCall>,
    workers: Vec<Worker>,
    next_call: u64,
    next_worker: usize,
}

/// The parent's view of one worker process.
struct Worker {
    index: usize,
    pid: u32,
    child: Arc<Mutex<Option<Child>>>,
    /// Frames for the writer thread; `None` once stdin is to be closed.
    frames: Option<Sender<Vec<u8>>>,
    /// Handshake done: may take calls.
    ready: bool,
    in_flight: Option<(u64, RemoteCall)>,
    jobs: usize,
    /// Told to exit (recycling): takes no more calls, its exit is expected.
    retiring: bool,
}

impl Worker {
    fn is_idle(&self) -> bool {
        self.ready && !self.retiring && self.in_flight.is_none() && self.frames.is_some()
    }
}

/// A started worker whose handshake is pending.
struct Pending {
    pid: u32,
    child: Arc<Mutex<Option<Child>>>,
    hello: Receiver<Result<(), String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kill(child: &Mutex<Option<Child>>) {
    if let Some(child) = lock(child).as_mut() {
        let _ = child.kill();
    }
}

impl ProcessPool {
    pub(crate) fn spawn(backend: &ProcessBackend, ctx: PoolContext) -> Result<Self, Error> {
        if is_worker_process() {
            return Err(Error::Broken(
                "this process was started as a leasepool worker but did not call \
                 leasepool::process::init first in main; refusing to start workers from it"
                    .to_owned(),
            ));
        }
        let program = match &backend.program {
            Some(program) => program.clone(),
            None => {
                if parent_registry().is_none() {
                    return Err(Error::Broken(
                        "the process backend re-executes this binary as its workers: \
                         call leasepool::process::init(registry) first in main"
                            .to_owned(),
                    ));
                }
                std::env::current_exe().map_err(|e| {
                    Error::Broken(format!("cannot find the current executable: {e}"))
                })?
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            broken_signal: ctx.broken_signal(),
            config: Config {
                token: new_token(ctx.pool_seq()),
                expected_fingerprint: parent_registry().map(|p| p.fingerprint),
                program,
                backend: backend.clone(),
            },
            ctx,
        });
        let deadline = Instant::now() + backend.handshake_timeout;
        let mut pending = Vec::new();
        for _ in 0..shared.ctx.workers() {
            match start_worker(&shared) {
                Ok(Some(worker)) => pending.push(worker),
                Ok(None) => unreachable!("a new pool is not closed"),
                Err(error) => {
                    abandon(&shared);
                    return Err(error);
                }
            }
        }
        for worker in pending {
            if let Err(reason) = await_handshake(&shared, &worker, deadline) {
                abandon(&shared);
                return Err(Error::Broken(reason));
            }
        }
        log::debug!(
            target: "leasepool",
            "process pool {} started {} workers",
            shared.ctx.pool_seq(),
            shared.ctx.workers()
        );
        Ok(ProcessPool { shared })
    }

    /// The process ids of the pool's live workers.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.lock().workers.iter().map(|w| w.pid).collect()
    }
}

impl BackendPool for ProcessPool {
    fn execute(&self, task: Task) {
        let call = match task.into_remote() {
            Ok(call) => call,
            Err(task) => {
                task.fail(Error::UnsupportedBackend(
                    "the process backend runs registered functions: use call(f, arg), \
                     not submit/run"
                        .to_owned(),
                ));
                return;
            }
        };
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.broken {
                let error = Error::Broken(reason.clone());
                drop(state);
                call.fail(error);
                return;
            }
            if state.closed {
                drop(state);
                drop(call); // cancelled
                return;
            }
            state.queue.push_back(call);
        }
        pump(&self.shared);
    }

    fn shutdown(&self) {
        let (queued, senders) = {
            let mut state = self.shared.lock();
            state.closed = true;
            let queued: Vec<RemoteCall> = state.queue.drain(..).collect();
            let senders: Vec<_> = state
                .workers
                .iter_mut()
                .filter_map(|w| w.frames.take())
                .collect();
            (queued, senders)
        };
        // Closing stdin: each worker exits after its current call, and its
        // reader reaps it.
        drop(senders);
        drop(queued); // cancelled
    }

    fn revoke(&self) {
        if !self.shared.config.backend.kill_on_hard_expiry {
            return;
        }
        let children: Vec<_> = {
            let mut state = self.shared.lock();
            state.revoked = true;
            state.workers.iter().map(|w| w.child.clone()).collect()
        };
        for child in children {
            kill(&child);
        }
    }
}

impl Drop for ProcessPool {
    /// A pool dropped without `shutdown` (outside a manager) still lets its
    /// workers go.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn program(&self) -> String {
        self.config.program.display().to_string()
    }
}

/// Spawns one worker process and its threads; `None` if the pool closed.
fn start_worker(shared: &Arc<Shared>) -> Result<Option<Pending>, Error> {
    let backend = &shared.config.backend;
    let index = {
        let mut state = shared.lock();
        if state.closed || state.broken.is_some() {
            return Ok(None);
        }
        state.next_worker += 1;
        state.next_worker - 1
    };
    let mut command = Command::new(&shared.config.program);
    command
        .args(&backend.args)
        .envs(backend.env.iter().map(|(k, v)| (k, v)))
        .env(WORKER_ENV, &shared.config.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if backend.logging.stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if backend.logging.enabled {
        command.env(LOG_LEVEL_ENV, backend.logging.level.to_string());
    } else {
        command.env_remove(LOG_LEVEL_ENV);
    }
    let mut child = command.spawn().map_err(|e| {
        Error::Broken(format!(
            "cannot start worker process {}: {e}",
            shared.program()
        ))
    })?;
    let pid = child.id();
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(Some(child)));
    let name = shared.ctx.worker_name(index);

    // The writer owns stdin: dropping the sender closes it.
    let (frames, frame_rx) = channel::<Vec<u8>>();
    let writer = thread::Builder::new()
        .name(format!("{name}-in"))
        .spawn(move || write_frames(stdin, frame_rx));
    if let Some(stderr) = stderr {
        let logging = backend.logging.clone();
        let _ = thread::Builder::new()
            .name(format!("{name}-err"))
            .spawn(move || logging.forward_stderr(pid, stderr));
    }
    let (hello_tx, hello) = channel();
    {
        let mut state = shared.lock();
        let frames = (!state.closed).then_some(frames);
        state.workers.push(Worker {
            index,
            pid,
            child: child.clone(),
            frames,
            ready: false,
            in_flight: None,
            jobs: 0,
            retiring: false,
        });
    }
    let reader = {
        let shared = shared.clone();
        let child = child.clone();
        let guard = shared.ctx.worker_guard();
        thread::Builder::new()
            .name(name)
            .spawn(move || read_worker(shared, index, pid, child, stdout, hello_tx, guard))
    };
    if let Err(e) = writer.and(reader) {
        kill(&child);
        let mut state = shared.lock();
        state.workers.retain(|w| w.index != index);
        drop(state);
        if let Some(mut child) = lock(&child).take() {
            let _ = child.wait(); // killed: returns at once
        }
        return Err(Error::Broken(format!(
            "cannot start a thread for worker process {pid}: {e}"
        )));
    }
    Ok(Some(Pending { pid, child, hello }))
}

fn write_frames(mut stdin: ChildStdin, frames: Receiver<Vec<u8>>) {
    for frame in frames {
        if stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            break; // the worker is gone; its reader sees that
        }
    }
}

/// Waits until `deadline` for `worker`'s handshake; kills it on failure.
fn await_handshake(shared: &Shared, worker: &Pending, deadline: Instant) -> Result<(), String> {
    let wait = deadline.saturating_duration_since(Instant::now());
    let result = match worker.hello.recv_timeout(wait) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(not_a_worker(
            shared,
            worker.pid,
            &format!(
                "no handshake within {:?}",
                shared.config.backend.handshake_timeout
            ),
        )),
        Err(RecvTimeoutError::Disconnected) => Err(format!(
            "worker process {} ended without a handshake",
            worker.pid
        )),
    };
    if result.is_err() {
        kill(&worker.child);
    }
    result
}

fn not_a_worker(shared: &Shared, pid: u32, detail: &str) -> String {
    format!(
        "worker process {pid} ({}) is not a leasepool worker: \
         call leasepool::process::init first in main ({detail})",
        shared.program()
    )
}

/// A pool whose creation failed: close it and kill what was started (the
/// readers reap the workers).
fn abandon(shared: &Shared) {
    let children: Vec<_> = {
        let mut state = shared.lock();
        state.closed = true;
        for worker in &mut state.workers {
            worker.frames = None;
        }
        state.workers.iter().map(|w| w.child.clone()).collect()
    };
    for child in children {
        kill(&child);
    }
}

/// The reader thread of one worker: handshake, frames, reaping.
fn read_worker(
    shared: Arc<Shared>,
    index: usize,
    pid: u32,
    child: Arc<Mutex<Option<Child>>>,
    stdout: ChildStdout,
    hello: Sender<Result<(), String>>,
    guard: WorkerGuard,
) {
    let mut input = BufReader::new(stdout);
    let handshake = handshake(&shared, pid, &mut input);
    let detail = match handshake {
        Ok(()) => {
            let ready = {
                let mut state = shared.lock();
                match state.workers.iter_mut().find(|w| w.index == index) {
                    Some(worker) => {
                        worker.ready = true;
                        true
                    }
                    None => false,
                }
            };
            let _ = hello.send(Ok(()));
            drop(hello);
            if ready {
                pump(&shared);
                serve_frames(&shared, index, pid, &child, &mut input)
            } else {
                None
            }
        }
        Err(detail) => {
            // Garbage or a bad handshake: this process will not serve.
            kill(&child);
            let status = reap(&child);
            let message = match detail {
                HandshakeError::NotAWorker(detail) => {
                    not_a_worker(&shared, pid, &format!("{detail}; it exited: {status}"))
                }
                HandshakeError::Refused(message) => message,
            };
            let _ = hello.send(Err(message));
            None
        }
    };
    let status = reap(&child);
    worker_ended(&shared, index, pid, &status, detail);
    drop(guard);
}

enum HandshakeError {
    /// The process does not speak the protocol at all.
    NotAWorker(String),
    /// A leasepool worker that cannot serve this parent.
    Refused(String),
}

fn handshake(
    shared: &Shared,
    pid: u32,
    input: &mut BufReader<ChildStdout>,
) -> Result<(), HandshakeError> {
    match read_frame::<FromWorker>(input) {
        Ok(Some(FromWorker::Hello {
            protocol,
            token,
            fingerprint,
            init_error,
        })) => {
            if protocol != PROTOCOL_VERSION {
                return Err(HandshakeError::Refused(format!(
                    "worker process {pid} speaks protocol version {protocol}, this process \
                     speaks {PROTOCOL_VERSION}: build workers and parent with the same leasepool"
                )));
            }
            if token != shared.config.token {
                return Err(HandshakeError::NotAWorker(
                    "it answered with a handshake token of another pool".to_owned(),
                ));
            }
            if let Some(error) = init_error {
                return Err(HandshakeError::Refused(format!(
                    "worker process {pid}: {error}"
                )));
            }
            match shared.config.expected_fingerprint {
                Some(expected) if expected != fingerprint => Err(HandshakeError::Refused(format!(
                    "worker process {pid} ({}) was built from a different registry \
                         (fingerprint {fingerprint:016x}, this process has {expected:016x}): \
                         register the same functions in the parent and its workers",
                    shared.program()
                ))),
                _ => Ok(()),
            }
        }
        Ok(Some(_)) => Err(HandshakeError::NotAWorker(
            "its first frame was not a handshake".to_owned(),
        )),
        Ok(None) => Err(HandshakeError::NotAWorker(
            "it closed its stdout without a handshake".to_owned(),
        )),
        Err(e) => Err(HandshakeError::NotAWorker(format!(
            "it wrote something else to stdout: {e}"
        ))),
    }
}

/// Reads frames until the worker's stdout closes. Returns a detail for
/// the exit message if the stream ended abnormally.
fn serve_frames(
    shared: &Arc<Shared>,
    index: usize,
    pid: u32,
    child: &Mutex<Option<Child>>,
    input: &mut BufReader<ChildStdout>,
) -> Option<String> {
    loop {
        match read_frame::<FromWorker>(input) {
            Ok(Some(FromWorker::Done { id, outcome })) => {
                on_done(shared, index, id, outcome);
            }
            Ok(Some(FromWorker::Log {
                level,
                target,
                message,
                module_path,
                file,
                line,
            })) => shared
                .config
                .backend
                .logging
                .forward(crate::logging::Forwarded {
                    pid,
                    level,
                    target: &target,
                    message: &message,
                    module_path: module_path.as_deref(),
                    file: file.as_deref(),
                    line,
                }),
            Ok(Some(FromWorker::Hello { .. })) => {
                kill(child);
                return Some("after a second handshake frame".to_owned());
            }
            Ok(None) => return None,
            Err(e) => {
                kill(child);
                return Some(format!("after a protocol error: {e}"));
            }
        }
    }
}

/// A worker finished call `id`.
fn on_done(
    shared: &Arc<Shared>,
    index: usize,
    id: u64,
    outcome: Result<Vec<u8>, crate::protocol::WorkerError>,
) {
    let (call, retire, stdin) = {
        let mut state = shared.lock();
        let open = !state.closed && state.broken.is_none();
        let limit = shared.config.backend.jobs_per_worker;
        let Some(worker) = state.workers.iter_mut().find(|w| w.index == index) else {
            return;
        };
        let call = match worker.in_flight.take() {
            Some((call_id, call)) if call_id == id => Some(call),
            other => {
                worker.in_flight = other;
                None
            }
        };
        worker.jobs += 1;
        let retire = open && limit.is_some_and(|n| worker.jobs >= n);
        if retire {
            worker.retiring = true;
        }
        (
            call,
            retire,
            if retire { worker.frames.take() } else { None },
        )
    };
    drop(stdin); // a recycled worker exits once its stdin closes
    if let Some(call) = call {
        match outcome {
            Ok(bytes) => {
                let mut de = postcard::Deserializer::from_bytes(&bytes);
                call.deliver(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de));
            }
            Err(error) => call.fail(error.into()),
        }
    }
    if retire {
        replace_worker(shared);
    }
    pump(shared);
}

/// Starts a worker in place of a recycled one, breaking the pool if that
/// fails.
fn replace_worker(shared: &Arc<Shared>) {
    let deadline = Instant::now() + shared.config.backend.handshake_timeout;
    let result = match start_worker(shared) {
        Ok(None) => Ok(()),
        Ok(Some(pending)) => await_handshake(shared, &pending, deadline),
        Err(error) => Err(match error {
            Error::Broken(reason) => reason,
            other => other.to_string(),
        }),
    };
    if let Err(reason) = result {
        break_pool(
            shared,
            format!("cannot replace a recycled worker: {reason}"),
        );
    }
}

/// Marks the pool broken (once): reports it, fails every queued call and
/// kills every worker (their in-flight calls fail as the readers see them
/// go).
fn break_pool(shared: &Shared, reason: String) {
    let (queued, children) = {
        let mut state = shared.lock();
        if state.broken.is_some() || state.closed {
            return;
        }
        state.broken = Some(reason.clone());
        let queued: Vec<RemoteCall> = state.queue.drain(..).collect();
        let children: Vec<_> = state.workers.iter().map(|w| w.child.clone()).collect();
        for worker in &mut state.workers {
            worker.frames = None;
        }
        (queued, children)
    };
    log::warn!(target: "leasepool", "process pool {} is broken: {reason}", shared.ctx.pool_seq());
    // Report first, so a caller woken by the failure sees its lease ended.
    shared.broken_signal.report(&reason);
    for call in queued {
        call.fail(Error::Broken(reason.clone()));
    }
    for child in children {
        kill(&child);
    }
}

/// A worker's reader is done and the process reaped: forget the worker,
/// fail its in-flight call, and break the pool if the exit was unexpected.
fn worker_ended(shared: &Shared, index: usize, pid: u32, status: &str, detail: Option<String>) {
    let (worker, unexpected, revoked) = {
        let mut state = shared.lock();
        let Some(position) = state.workers.iter().position(|w| w.index == index) else {
            return;
        };
        let worker = state.workers.remove(position);
        let unexpected = worker.ready && !worker.retiring && !state.closed && !state.revoked;
        (worker, unexpected, state.revoked)
    };
    let detail = detail.map(|d| format!(" {d}")).unwrap_or_default();
    let reason = format!("worker process {pid} exited: {status}{detail}");
    if unexpected {
        break_pool(shared, reason.clone());
    }
    if let Some((_, call)) = worker.in_flight {
        let error = if revoked {
            Error::Broken(format!(
                "worker process {pid} was killed because its lease passed its hard expiry"
            ))
        } else {
            // The pool's first failure, if it broke, else this exit.
            let broken = shared.lock().broken.clone();
            Error::Broken(broken.unwrap_or(reason))
        };
        call.fail(error);
    }
}

/// Waits for a worker whose stdout closed to exit; kills it if it lingers.
/// Returns its exit status as text.
fn reap(child: &Mutex<Option<Child>>) -> String {
    let deadline = Instant::now() + EXIT_GRACE;
    let mut pause = Duration::from_millis(1);
    loop {
        {
            let mut slot = lock(child);
            let Some(process) = slot.as_mut() else {
                return "already reaped".to_owned();
            };
            match process.try_wait() {
                Ok(Some(status)) => {
                    *slot = None;
                    return status.to_string();
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = process.kill();
                    let status = process.wait();
                    *slot = None;
                    return match status {
                        Ok(status) => format!("{status} (killed: it closed its stdout)"),
                        Err(e) => format!("unknown status ({e})"),
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    *slot = None;
                    return format!("unknown status ({e})");
                }
            }
        }
        // The process is exiting (its stdout closed): a short, bounded wait.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Hands queued calls to idle workers.
fn pump(shared: &Shared) {
    loop {
        let mut cancelled = None;
        let mut failed = None;
        {
            let mut state = shared.lock();
            if state.closed || state.broken.is_some() || state.queue.is_empty() {
                return;
            }
            let Some(position) = state.workers.iter().position(Worker::is_idle) else {
                return;
            };
            let call = state.queue.pop_front().expect("checked non-empty");
            if !call.start() {
                cancelled = Some(call);
            } else {
                let id = state.next_call;
                state.next_call += 1;
                match encode_call(id, &call) {
                    Err(error) => failed = Some((call, error)),
                    Ok(frame) => {
                        let worker = &mut state.workers[position];
                        let sent = worker.frames.as_ref().map(|tx| tx.send(frame));
                        // A failed send means the writer is gone (the worker
                        // died); its reader fails the call.
                        let _ = sent;
                        worker.in_flight = Some((id, call));
                    }
                }
            }
        }
        drop(cancelled);
        if let Some((call, error)) = failed {
            call.fail(error);
        }
    }
}

fn encode_call(id: u64, call: &RemoteCall) -> Result<Vec<u8>, Error> {
    use postcard::ser_flavors::Flavor;
    let mut serializer = postcard::Serializer {
        output: postcard::ser_flavors::StdVec::new(),
    };
    erased_serde::serialize(call.argument(), &mut serializer).map_err(|e| {
        Error::Serialization(format!(
            "cannot encode the argument of {}: {e}",
            call.function()
        ))
    })?;
    let argument = serializer
        .output
        .finalize()
        .map_err(|e| Error::Serialization(e.to_string()))?;
    encode_frame(&ToWorker::Call {
        id,
        function: call.function().to_owned(),
        argument,
    })
    .map_err(|e| {
        Error::Serialization(format!(
            "cannot send the argument of {}: {e}",
            call.function()
        ))
    })
}

/// A handshake token, unique enough to tell this pool's workers apart.
fn new_token(seq: u64) -> String {
    let mut hash = Fnv1a::new();
    hash.write(&std::process::id().to_le_bytes());
    hash.write(&seq.to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hash.write(&now.as_nanos().to_le_bytes());
    let local = 0u8;
    hash.write(&format!("{:p}", &local).into_bytes());
    format!("{:016x}-{seq}", hash.finish())
}
