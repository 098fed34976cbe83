//! The worker side: [`init`] and the serve loop.

use std::io::{self, BufReader, Write};
use std::sync::{Arc, Mutex, OnceLock};

use crate::Registry;
use crate::limits::{apply_memory_limit, parse_memory_limit};
use crate::logging::{SharedOut, install_worker_logger};
use crate::protocol::{
    FromWorker, Hello, LOG_LEVEL_ENV, MEMORY_LIMIT_ENV, PROTOCOL_VERSION, Signature, ToWorker,
    WORKER_ENV, WorkerError, encode_frame, read_frame,
};

/// What the parent process remembers of its own registry.
#[derive(Debug)]
pub(crate) struct ParentRegistry {
    pub(crate) functions: Vec<Signature>,
    pub(crate) errors: Vec<String>,
}

static PARENT: OnceLock<ParentRegistry> = OnceLock::new();

/// The registry `init` was given in this (parent) process, if it was called.
pub(crate) fn parent_registry() -> Option<&'static ParentRegistry> {
    PARENT.get()
}

/// True if this process was started as a worker (whether or not it called
/// `init`).
pub(crate) fn is_worker_process() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Makes this executable usable as a process-backend worker. Call it first
/// in `main`, before anything else runs or prints.
///
/// - In a process started by a [`ProcessBackend`](crate::ProcessBackend)
///   pool (the environment variable `LEASEPOOL_PROCESS_WORKER` is set), it
///   never returns: it runs the registry's initializer, answers the
///   parent's handshake, serves calls on stdin/stdout until the parent shuts
///   it down or goes away, and exits the process.
/// - Anywhere else it remembers the registry (the handshake checks that
///   workers were built with the same one) and returns at once.
///
/// In a worker, the original stdout belongs to the protocol. On Unix,
/// `init` gives the protocol its own copy and points stdout at stderr, so
/// a stray `println!` in a worker function ends up on stderr; elsewhere
/// worker functions must not print to stdout. Prefer `log` (see
/// [`ProcessLogging`](crate::ProcessLogging)) or stderr.
///
/// ```no_run
/// use leasepool_process::{Registry, init};
///
/// fn count_primes(limit: u64) -> usize {
///     (2..limit).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0)).count()
/// }
///
/// fn main() {
///     init(Registry::new().register(count_primes));
///     // ... the application: build a manager with ProcessBackend::new() ...
/// }
/// ```
pub fn init(registry: Registry) {
    match std::env::var(WORKER_ENV) {
        Ok(token) => serve(registry, token),
        Err(_) => {
            let _ = PARENT.set(ParentRegistry {
                functions: registry.signatures(),
                errors: registry.errors().to_vec(),
            });
        }
    }
}

/// Runs this process as a worker until the parent lets go; never returns.
fn serve(mut registry: Registry, token: String) -> ! {
    let out: SharedOut = Arc::new(Mutex::new(protocol_output()));
    install_worker_logger(&out, std::env::var(LOG_LEVEL_ENV).ok());
    watch_parent();

    let init_error = registry
        .registry_error()
        .or_else(memory_limit_error)
        .or_else(|| {
            let init = registry.take_initializer()?;
            init()
                .err()
                .map(|e| format!("the worker initializer failed: {e}"))
        });
    let failed = init_error.is_some();
    let hello = FromWorker::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        token,
        functions: registry.signatures(),
        init_error,
    });
    if send(&out, &hello).is_err() || failed {
        std::process::exit(1);
    }

    let mut input = BufReader::new(io::stdin().lock());
    loop {
        match read_frame::<ToWorker>(&mut input) {
            Ok(Some(ToWorker::Call {
                id,
                function,
                argument,
            })) => {
                let outcome = match registry.handler(&function) {
                    Some(handler) => handler(&argument),
                    None => Err(WorkerError::UnknownFunction(function.clone())),
                };
                drop(argument);
                let frame = done_frame(id, &function, outcome);
                if frame.and_then(|frame| send_frame(&out, &frame)).is_err() {
                    // The parent is gone.
                    leave(1);
                }
            }
            // Shut down, or the parent closed our stdin (or died).
            Ok(Some(ToWorker::Shutdown)) | Ok(None) => {
                await_reparenting();
                leave(0)
            }
            Err(_) => leave(1),
        }
    }
}

/// Applies the memory limit the parent asked for, if any; the error, if it
/// cannot.
fn memory_limit_error() -> Option<String> {
    let value = std::env::var(MEMORY_LIMIT_ENV).ok()?;
    parse_memory_limit(&value)
        .and_then(apply_memory_limit)
        .err()
        .map(|e| format!("the worker cannot start: {e}"))
}

/// The worker's side of the protocol's output pipe.
///
/// On Unix this is a private duplicate of the original stdout, written with
/// one `write` per frame (std's line-buffered `Stdout` would split a binary
/// frame at every `0x0A` byte, and each piece would wake the parent's
/// reader). Stdout itself then points at stderr, so a stray `println!` in a
/// worker function ends up in the worker's stderr instead of corrupting the
/// protocol.
#[cfg(unix)]
fn protocol_output() -> Box<dyn Write + Send> {
    use std::os::fd::AsFd;
    let _ = io::stdout().flush();
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => {
            // If this fails, stdout stays the protocol pipe (as elsewhere).
            let _ = rustix::stdio::dup2_stdout(io::stderr());
            Box::new(std::fs::File::from(fd))
        }
        Err(_) => Box::new(io::stdout()),
    }
}

/// The worker's side of the protocol's output pipe: stdout.
#[cfg(not(unix))]
fn protocol_output() -> Box<dyn Write + Send> {
    Box::new(io::stdout())
}

/// How often a worker checks that its parent is still alive.
#[cfg(unix)]
const PARENT_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// The parent's pid when the worker started.
#[cfg(unix)]
static PARENT_PID: OnceLock<u32> = OnceLock::new();

/// True if the parent died: on Unix an orphan is re-parented, so a changed
/// parent id means the parent died.
#[cfg(unix)]
fn orphaned() -> bool {
    PARENT_PID
        .get()
        .is_some_and(|parent| std::os::unix::process::parent_id() != *parent)
}

#[cfg(not(unix))]
fn orphaned() -> bool {
    false
}

/// How long a worker whose stdin closed waits to learn whether its parent
/// died, if it has started processes of its own.
#[cfg(unix)]
const REPARENT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// A dying parent's pipes close a moment before its children are
/// re-parented, so at the end of stdin the parent may look alive though it
/// is gone, and then nobody would kill the processes this worker started.
/// If it started any (it has children), wait briefly to see whether it is
/// orphaned. Without children there is nothing to take down: exit at once.
#[cfg(unix)]
fn await_reparenting() {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    if matches!(waitid(WaitId::All, options), Err(rustix::io::Errno::CHILD)) {
        return;
    }
    let deadline = std::time::Instant::now() + REPARENT_WAIT;
    while !orphaned() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(not(unix))]
fn await_reparenting() {}

/// Exits the worker with `code`, or as an orphan if the parent died.
fn leave(code: i32) -> ! {
    if orphaned() {
        exit_orphaned();
    }
    std::process::exit(code)
}

/// Exits a worker whose parent died, taking the processes it started with
/// it: the parent would have killed the worker's process group while
/// reaping it, and is gone. Only if the worker leads a group of its own (as
/// the parent arranges), never a group it merely belongs to, such as a
/// shell's that started it by hand.
#[cfg(unix)]
fn exit_orphaned() -> ! {
    use rustix::process::{Signal, getpgrp, getpid, kill_process_group};
    if getpgrp() == getpid() {
        // This process is in the group too: it ends here.
        let _ = kill_process_group(getpid(), Signal::KILL);
    }
    std::process::exit(1)
}

#[cfg(not(unix))]
fn exit_orphaned() -> ! {
    std::process::exit(1)
}

/// Exits the worker when its parent process dies, even in the middle of a
/// long call (an idle worker already exits when its stdin closes).
#[cfg(unix)]
fn watch_parent() {
    let _ = PARENT_PID.set(std::os::unix::process::parent_id());
    let _ = std::thread::Builder::new()
        .name("leasepool-parent-watch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(PARENT_CHECK);
                if orphaned() {
                    exit_orphaned();
                }
            }
        });
}

#[cfg(not(unix))]
fn watch_parent() {}

fn send(out: &SharedOut, frame: &FromWorker) -> io::Result<()> {
    send_frame(out, &encode_frame(frame)?)
}

fn send_frame(out: &SharedOut, frame: &[u8]) -> io::Result<()> {
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    out.write_all(frame)?;
    out.flush()
}

/// The `Done` frame of call `id`. A result too large for a frame becomes a
/// `Serialization` error naming the limit, so the call fails and the worker
/// serves on.
fn done_frame(
    id: u64,
    function: &str,
    outcome: Result<Vec<u8>, WorkerError>,
) -> io::Result<Vec<u8>> {
    encode_frame(&FromWorker::Done { id, outcome }).or_else(|e| {
        let outcome = Err(WorkerError::Serialization(format!(
            "cannot send the result of {function}: {e}"
        )));
        encode_frame(&FromWorker::Done { id, outcome })
    })
}

impl Registry {
    /// The registry's own mistakes, as one handshake error.
    fn registry_error(&self) -> Option<String> {
        (!self.errors().is_empty()).then(|| {
            format!(
                "the worker's registry is unusable: {}",
                self.errors().join("; ")
            )
        })
    }
}
