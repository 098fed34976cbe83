//! Helpers shared by the harness-less test binaries: bounded waits, a
//! lease, what `/proc` says about processes and pipes, and an intermediate
//! parent to orphan workers with. Each binary
//! defines its own `PATIENCE`, the bound of every wait.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use leasepool_core::{ExecutorLease, LeasedExecutorManager};
use leasepool_process::ProcessBackend;

use crate::PATIENCE;
use crate::runner::Outcome;

/// A lease on `m`, waiting at most [`PATIENCE`] for it.
pub(crate) fn lease_on(
    m: &LeasedExecutorManager<ProcessBackend>,
) -> Result<ExecutorLease<ProcessBackend>, String> {
    m.acquire()
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())
}

/// Polls `done` until it holds, failing after [`PATIENCE`].
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Outcome {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), `None` if
/// it does not exist.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Gone and reaped (a zombie still has a `/proc` entry).
pub(crate) fn reaped(pid: u32) -> bool {
    process_state(pid).is_none()
}

/// Gone, or a zombie waiting for whoever adopted it (an orphan's new
/// parent may be slow to reap, or never reap in a minimal container).
pub(crate) fn exited(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z' | 'X'))
}

/// The pipes this process has open (`pipe:[inode]`; each worker has two or
/// three).
pub(crate) fn open_pipes() -> BTreeSet<String> {
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

/// Starts this test binary again as an intermediate parent (it sees `env`
/// set, starts a pool and prints two pids on one line) and returns it with
/// the pids it printed.
pub(crate) fn start_orphan_parent(env: &str) -> Result<(std::process::Child, Vec<u32>), String> {
    use std::io::BufRead;
    let mut parent =
        std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(env, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the intermediate parent: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(parent.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let pids = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    Ok((parent, pids))
}
