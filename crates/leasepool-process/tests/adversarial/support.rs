//! Helpers: managers, bounded waits, and what `/proc` says about
//! processes, threads and pipes.

use std::sync::Mutex;

use leasepool_core::{Error, JobHandle, LeasedExecutorManager};
use leasepool_process::ProcessBackend;

pub(crate) use crate::procfs::{
    exited, lease_on, open_pipes, process_state, reaped, start_orphan_parent, wait_until,
};
use crate::{Outcome, PATIENCE};

// ------------------------------------------------------------------ helpers

pub(crate) fn manager(
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

pub(crate) fn started(
    name: &str,
    backend: ProcessBackend,
    workers: usize,
) -> Result<LeasedExecutorManager<ProcessBackend>, String> {
    let m = manager(name, backend, workers);
    m.start_blocking().map_err(|e| e.to_string())?;
    Ok(m)
}

/// The job's outcome, or a test failure if it has none within [`PATIENCE`].
pub(crate) fn outcome<T>(mut handle: JobHandle<T>) -> Result<Result<T, Error>, String> {
    handle
        .wait_timeout(PATIENCE)
        .ok_or_else(|| format!("a job had no outcome within {PATIENCE:?}"))
}

/// Runs `f` on a thread and fails if it does not return within
/// [`PATIENCE`] (a hung `stop()` fails the test instead of hanging it).
pub(crate) fn within<T: Send + 'static>(
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
pub(crate) fn stop(m: LeasedExecutorManager<ProcessBackend>) -> Outcome {
    within("stop()", move || m.stop_blocking())
}

/// Stops `m`; then no child of this process may be left, running or
/// unreaped.
pub(crate) fn stop_clean(m: LeasedExecutorManager<ProcessBackend>) -> Outcome {
    stop(m)?;
    let left = children_left();
    check!(left.is_empty(), "children left after stop(): {left:?}");
    Ok(())
}

/// The pids of this process's children, alive or zombie (exited, never
/// reaped). After `stop()` there must be none: no worker left running, none
/// left unreaped.
pub(crate) fn children_left() -> Vec<u32> {
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

pub(crate) fn signal(pid: u32, signal: &str) -> Outcome {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    check!(status.success(), "kill {signal} {pid}: {status}");
    Ok(())
}

/// Fails if a pipe opened since `before` is still open.
pub(crate) fn no_pipes_left(before: &std::collections::BTreeSet<String>) -> Outcome {
    let left: Vec<_> = open_pipes().difference(before).cloned().collect();
    check!(left.is_empty(), "pipes left open: {left:?}");
    Ok(())
}

/// The names of this process's threads that start with `prefix`.
pub(crate) fn threads_named(prefix: &str) -> Vec<String> {
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
pub(crate) struct Captured(Mutex<Vec<String>>);

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

pub(crate) static LOGGER: Captured = Captured(Mutex::new(Vec::new()));

/// How many `tick` lines from worker `pid` were forwarded.
pub(crate) fn ticks_from(pid: u32) -> usize {
    let needle = format!("[worker {pid}] stderr: tick");
    LOGGER
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|m| m.contains(&needle))
        .count()
}

pub(crate) fn is_serialization(
    got: &Result<impl std::fmt::Debug, Error>,
    needles: &[&str],
) -> bool {
    matches!(got, Err(Error::Serialization(message)) if needles.iter().all(|n| message.contains(n)))
}
