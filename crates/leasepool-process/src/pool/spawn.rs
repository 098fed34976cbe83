//! Starting a worker process: the command, its threads, the handshake,
//! and reaping it once it is done.

use std::io::BufReader;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use leasepool_core::Error;

use super::group::{kill, own_group};
use super::reader::read_worker;
use super::{Shared, Worker, lock};
use crate::protocol::{
    HandshakeError, LOG_LEVEL_ENV, MEMORY_LIMIT_ENV, WORKER_ENV, check_hello, parse_hello,
    read_raw_frame,
};
use crate::registry::Fnv1a;

/// A started worker whose handshake is pending.
pub(super) struct Pending {
    pid: u32,
    child: Arc<Mutex<Option<Child>>>,
    hello: Receiver<Result<(), String>>,
}

/// Spawns one worker process and its threads; `None` if the pool closed.
pub(super) fn start_worker(shared: &Arc<Shared>) -> Result<Option<Pending>, Error> {
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
    own_group(&mut command);
    match backend.memory_limit {
        Some(bytes) => command.env(MEMORY_LIMIT_ENV, bytes.to_string()),
        None => command.env_remove(MEMORY_LIMIT_ENV),
    };
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
    let stdin = Arc::new(child.stdin.take().expect("stdin is piped"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(Some(child)));
    let name = shared.ctx.worker_name(index);

    if let Some(stderr) = stderr {
        // Holds a guard, so `stop()` returns only once it has ended: at the
        // end of the pipe, which closes when the worker's group is killed
        // at reaping, or soon after reaping if something else holds it.
        let logging = backend.logging.clone();
        let guard = shared.ctx.worker_guard();
        let child = child.clone();
        let forwarder = move || {
            logging.forward_stderr(pid, stderr, || lock(&child).is_none());
            drop(guard);
        };
        if let Err(e) = thread::Builder::new()
            .name(format!("{name}-err"))
            .spawn(forwarder)
        {
            log::warn!(
                target: leasepool_core::LOG_TARGET,
                "cannot start the stderr thread of worker process {pid} ({e}); its stderr is dropped"
            );
        }
    }
    let (hello_tx, hello) = channel();
    {
        let mut state = shared.lock();
        let stdin = (!state.closed).then_some(stdin);
        state.workers.push(Worker {
            index,
            pid,
            child: child.clone(),
            stdin,
            ready: false,
            in_flight: None,
            jobs: 0,
            retiring: false,
            killed: None,
            started: Instant::now(),
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
    if let Err(e) = reader {
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

/// Waits until `deadline` for `worker`'s handshake; kills it on failure.
pub(super) fn await_handshake(
    shared: &Shared,
    worker: &Pending,
    deadline: Instant,
) -> Result<(), String> {
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

pub(super) fn not_a_worker(shared: &Shared, pid: u32, detail: &str) -> String {
    format!(
        "worker process {pid} ({}) is not a leasepool worker: \
         call leasepool::process::init first in main ({detail})",
        shared.program()
    )
}

/// A pool whose creation failed: close it and kill what was started (the
/// readers reap the workers).
pub(super) fn abandon(shared: &Shared) {
    let children: Vec<_> = {
        let mut state = shared.lock();
        state.closed = true;
        state.closed_at.get_or_insert_with(Instant::now);
        shared.changed.notify_all();
        for worker in &mut state.workers {
            worker.stdin = None;
        }
        state.workers.iter().map(|w| w.child.clone()).collect()
    };
    for child in children {
        kill(&child);
    }
}

/// Reads and checks a worker's handshake.
pub(super) fn handshake(
    shared: &Shared,
    pid: u32,
    input: &mut BufReader<ChildStdout>,
) -> Result<(), HandshakeError> {
    let payload = match read_raw_frame(input) {
        Ok(Some(payload)) => payload,
        Ok(None) => {
            return Err(HandshakeError::NotAWorker(
                "it closed its stdout without a handshake".to_owned(),
            ));
        }
        Err(e) => {
            return Err(HandshakeError::NotAWorker(format!(
                "it wrote something else to stdout: {e}"
            )));
        }
    };
    let expected = shared.config.expected_functions.as_deref();
    parse_hello(&payload)
        .and_then(|hello| check_hello(&hello, &shared.config.token, expected))
        .map_err(|error| match error {
            HandshakeError::Refused(detail) => HandshakeError::Refused(format!(
                "worker process {pid} ({}) {detail}",
                shared.program()
            )),
            other => other,
        })
}

/// A handshake token, unique enough to tell this pool's workers apart.
pub(super) fn new_token(seq: u64) -> String {
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
