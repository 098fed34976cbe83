//! Helpers shared by the scenarios: a manager, a lease, bounded waits,
//! process checks.

use super::*;

pub(crate) fn manager(
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
pub(crate) fn lease_on(
    m: &LeasedExecutorManager<ProcessBackend>,
) -> Result<ExecutorLease<ProcessBackend>, String> {
    m.acquire()
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())
}

pub(crate) fn wait<T>(mut handle: JobHandle<T>) -> Result<T, Error> {
    handle
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|| panic!("a job did not end within {PATIENCE:?}"))
}

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

pub(crate) fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
}

/// Gone, or a zombie waiting for whoever adopted it (an orphan's new
/// parent may be slow to reap, or never reap in a minimal container).
pub(crate) fn process_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
