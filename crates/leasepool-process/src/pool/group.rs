//! A worker and the processes it starts: each worker runs in a process
//! group of its own (on Unix), every kill takes the whole group down, and
//! reaping a worker kills what is left of its group first, so no process a
//! worker started outlives it.
//!
//! The group is killed while the worker is not yet reaped (alive or a
//! zombie): until then its pid, which is the group's id, cannot be reused.

use std::process::{Child, Command};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::lock;

/// How long a worker whose stdout closed may take to exit before it is
/// killed (it normally exits within milliseconds).
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Starts the worker in a new process group of its own (its pid is the
/// group id), so a signal to the group reaches what it starts too.
pub(super) fn own_group(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(not(unix))]
    let _ = command;
}

/// Kills the worker's process group (`SIGKILL`), if it is not reaped yet.
pub(super) fn kill(child: &Mutex<Option<Child>>) {
    if let Some(process) = lock(child).as_mut() {
        kill_group(process);
    }
}

/// Kills `process` and every process left in its group.
fn kill_group(process: &mut Child) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        let group = i32::try_from(process.id()).ok().and_then(Pid::from_raw);
        if let Some(group) = group {
            // Fails only if nothing is left in the group.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
    let _ = process.kill();
}

/// True if `process` has exited, without reaping it (its pid stays
/// reserved, so its group can still be killed safely).
#[cfg(unix)]
fn exited(process: &mut Child) -> std::io::Result<bool> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let Some(pid) = i32::try_from(process.id()).ok().and_then(Pid::from_raw) else {
        return Ok(true);
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    Ok(waitid(WaitId::Pid(pid), options)?.is_some())
}

/// Without a way to peek, an exit is seen by reaping (`wait` then returns
/// the status at once).
#[cfg(not(unix))]
fn exited(process: &mut Child) -> std::io::Result<bool> {
    Ok(process.try_wait()?.is_some())
}

/// Waits for a worker whose stdout closed to exit (killing it if it
/// lingers), kills what is left of its process group, and reaps it.
/// Returns its exit status as text.
pub(super) fn reap(child: &Mutex<Option<Child>>) -> String {
    let deadline = Instant::now() + EXIT_GRACE;
    let mut pause = Duration::from_millis(1);
    loop {
        {
            let mut slot = lock(child);
            let Some(process) = slot.as_mut() else {
                return "already reaped".to_owned();
            };
            let lingered = Instant::now() >= deadline;
            let done = exited(process).unwrap_or(true);
            if done || lingered {
                // Whatever it started goes with it.
                kill_group(process);
                let status = process.wait();
                *slot = None;
                return match status {
                    Ok(status) if lingered && !done => {
                        format!("{status} (killed: it closed its stdout but did not exit)")
                    }
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown status ({e})"),
                };
            }
        }
        // The process is exiting (its stdout closed): a short, bounded wait.
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
