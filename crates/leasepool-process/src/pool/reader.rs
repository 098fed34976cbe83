//! The reader thread of one worker: the handshake, then every frame the
//! worker sends, then reaping it.

use std::io::BufReader;
use std::process::{Child, ChildStdout};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use leasepool_core::WorkerGuard;

use super::dispatch::{on_done, pump};
use super::group::{kill, reap};
use super::linger::linger;
use super::spawn::{handshake, not_a_worker};
use super::{Shared, worker_ended};
use crate::protocol::{FromWorker, HandshakeError, read_frame};

/// The reader thread of one worker: handshake, frames, reaping.
pub(super) fn read_worker(
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
    // The pipe closes before the guard drops: once `stop()` returns, no
    // pipe to the worker is open.
    drop(input);
    let status = reap(&child);
    worker_ended(&shared, index, pid, &status, detail);
    drop(guard);
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
        if input.buffer().is_empty() {
            linger(shared, input.get_ref());
        }
        match read_frame::<FromWorker>(input) {
            Ok(Some(FromWorker::Done { id, outcome })) => {
                on_done(shared, index, pid, id, outcome);
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
            Ok(Some(FromWorker::Hello(_))) => {
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
