//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use leasepool::{LeasedExecutorManager, ManagerBuilder, ThreadBackend};

/// Generous bound for anything that should happen "soon" on a loaded machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds or `PATIENCE` passes; panics with `what`
/// on timeout. For conditions that have no event to wait on (thread exit,
/// log records, checker passes).
pub(crate) fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A builder with test-friendly defaults and a unique thread-name prefix.
pub(crate) fn builder(prefix: &str) -> ManagerBuilder<ThreadBackend> {
    LeasedExecutorManager::builder(ThreadBackend::new())
        .name_prefix(prefix)
        .workers_per_pool(1)
}

/// Names of this process's live threads named `{prefix}-...` (workers
/// `{prefix}-{pool}_{n}` and the checker `{prefix}-checker`).
#[cfg(target_os = "linux")]
pub(crate) fn threads_named(prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return names;
    };
    for task in tasks.flatten() {
        if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
            let comm = comm.trim_end().to_owned();
            // Linux truncates thread names to 15 bytes.
            let short: String = format!("{prefix}-").chars().take(15).collect();
            if comm.starts_with(&short) {
                names.push(comm);
            }
        }
    }
    names
}

/// Blocks on a future from a plain thread.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}
