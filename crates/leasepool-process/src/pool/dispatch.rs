//! Handing calls to idle workers and taking their answers.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use leasepool_core::{Error, RemoteCall};

use super::recycle::{recycle_reason, resident_if_bounded};
use super::{InFlight, Shared, Worker, replace_worker};
use crate::guard::{Guarded, catch, contain};
use crate::protocol::{ToWorker, encode_frame};

/// The largest frame written directly to an idle worker's (empty) stdin:
/// POSIX guarantees a pipe holds at least `PIPE_BUF` bytes (4096 on Linux,
/// 512 at least elsewhere), so such a write never blocks.
const DIRECT_WRITE_MAX: usize = if cfg!(target_os = "linux") { 4096 } else { 512 };

/// Hands queued calls to idle workers.
pub(super) fn pump(shared: &Shared) {
    loop {
        let (frame, stdin, index) = {
            let mut state = shared.lock();
            if state.closed || state.broken.is_some() || state.queue.is_empty() {
                return;
            }
            let Some(position) = state.workers.iter().position(Worker::is_idle) else {
                return;
            };
            let queued = state.queue.pop_front().expect("checked non-empty");
            if !queued.call.start() {
                drop(state);
                cancel(queued.call);
                continue;
            }
            let worker = &mut state.workers[position];
            let stdin = worker.stdin.clone().expect("an idle worker has its stdin");
            worker.in_flight = Some(InFlight {
                id: queued.id,
                call: queued.call,
                sent: Instant::now(),
            });
            let index = worker.index;
            if shared.config.backend.call_timeout.is_some() {
                shared.changed.notify_all();
            }
            (queued.frame, stdin, index)
        };
        write_call(shared, index, stdin, frame);
    }
}

/// Writes a call's frame to its worker's stdin. A failed write means the
/// worker died; its reader fails the call.
fn write_call(shared: &Shared, index: usize, stdin: Arc<ChildStdin>, frame: Vec<u8>) {
    if frame.len() <= DIRECT_WRITE_MAX {
        let _ = (&*stdin).write_all(&frame);
        return;
    }
    let frame = Arc::new(frame);
    let writer = {
        let (stdin, frame) = (stdin.clone(), frame.clone());
        let guard = shared.ctx.worker_guard();
        move || {
            let _ = (&*stdin).write_all(&frame);
            drop(stdin); // the pipe may close before the guard drops
            drop(guard);
        }
    };
    let spawned = thread::Builder::new()
        .name(format!("{}-in", shared.ctx.worker_name(index)))
        .spawn(writer);
    if let Err(e) = spawned {
        log::warn!(
            target: leasepool_core::LOG_TARGET,
            "cannot start a writer thread ({e}); writing a call of {} bytes inline",
            frame.len()
        );
        let _ = (&*stdin).write_all(&frame);
    }
}

/// Encodes call `id` as a frame. A failing or panicking `Serialize` impl of
/// the argument, or an argument too large for a frame, is an
/// `Error::Serialization` for this call alone.
pub(super) fn encode_call(id: u64, call: &RemoteCall) -> Result<Vec<u8>, Error> {
    use postcard::ser_flavors::Flavor;
    let encoded = catch(|| {
        let mut serializer = postcard::Serializer {
            output: postcard::ser_flavors::StdVec::new(),
        };
        erased_serde::serialize(call.argument(), &mut serializer)
            .map_err(|e| e.to_string())
            .and_then(|()| serializer.output.finalize().map_err(|e| e.to_string()))
    });
    let argument = match encoded {
        Ok(Ok(argument)) => argument,
        Ok(Err(e)) => {
            return Err(Error::Serialization(format!(
                "cannot encode the argument of {}: {e}",
                call.function()
            )));
        }
        Err(panic) => {
            return Err(Error::Serialization(format!(
                "the Serialize impl of the argument of {} panicked: {panic}",
                call.function()
            )));
        }
    };
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

/// Hands `bytes` (an encoded result) to `call`'s caller. The result type's
/// `Deserialize` impl runs here, on a reader thread: a panic inside the
/// deserializer fails the call with `Error::Serialization`; any other panic
/// is contained (logged) so the reader serves on.
pub(super) fn deliver(call: RemoteCall, bytes: &[u8]) {
    let function = call.function();
    contain(
        || format!("delivering the result of {function}"),
        move || {
            let mut de = postcard::Deserializer::from_bytes(bytes);
            call.deliver(&mut <dyn erased_serde::Deserializer<'_>>::erase(Guarded {
                inner: &mut de,
                what: "the result of",
                function,
            }));
        },
    );
}

/// Drops `call` (its caller gets `Error::Cancelled`), containing a panic
/// of its argument's `Drop`.
pub(super) fn cancel(call: RemoteCall) {
    let function = call.function();
    contain(
        || format!("cancelling a call of {function}"),
        move || drop(call),
    );
}

/// Ends `call` with `error`, containing a panic of its argument's `Drop`.
pub(super) fn fail(call: RemoteCall, error: Error) {
    let function = call.function();
    contain(
        || format!("failing a call of {function}"),
        move || call.fail(error),
    );
}

/// A worker finished call `id`.
pub(super) fn on_done(
    shared: &Arc<Shared>,
    index: usize,
    pid: u32,
    id: u64,
    outcome: Result<Vec<u8>, crate::protocol::WorkerError>,
) {
    let resident = resident_if_bounded(&shared.config.backend, pid);
    let (call, retire, stdin) = {
        let mut state = shared.lock();
        let open = !state.closed && state.broken.is_none();
        let Some(worker) = state.workers.iter_mut().find(|w| w.index == index) else {
            return;
        };
        let call = match worker.in_flight.take() {
            Some(in_flight) if in_flight.id == id => {
                record_service_time(shared, in_flight.sent.elapsed());
                Some(in_flight.call)
            }
            other => {
                worker.in_flight = other;
                None
            }
        };
        worker.jobs += 1;
        let reason = open
            .then(|| recycle_reason(&shared.config.backend, worker, resident))
            .flatten();
        let retire = reason.is_some();
        if let Some(reason) = reason {
            log::debug!(target: leasepool_core::LOG_TARGET, "recycling worker process {pid}: {reason}");
            worker.retiring = true;
        }
        (
            call,
            retire,
            if retire { worker.stdin.take() } else { None },
        )
    };
    drop(stdin); // a recycled worker exits once its stdin closes
    if let Some(call) = call {
        match outcome {
            Ok(bytes) => deliver(call, &bytes),
            Err(error) => fail(call, error.into()),
        }
    }
    if retire {
        replace_worker(shared, "a recycled worker");
    }
    pump(shared);
}

/// Folds one call's service time (from dispatch until its answer was read)
/// into the pool's moving average.
fn record_service_time(shared: &Shared, took: Duration) {
    let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
    let average = shared.service_nanos.load(Ordering::Relaxed);
    let average = if average == 0 {
        sample
    } else {
        average - average / 8 + sample / 8
    };
    shared
        .service_nanos
        .store(average.max(1), Ordering::Relaxed);
}
