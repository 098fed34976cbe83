//! When a worker is recycled: after `jobs_per_worker` calls, once older
//! than `max_worker_age`, or once its resident memory reaches
//! `max_memory_per_worker` (checked each time it finishes a call).

use crate::ProcessBackend;
use crate::limits::resident_bytes;

use super::Worker;

/// The worker's resident memory, read only if a memory bound is set (so the
/// common case reads no file).
pub(super) fn resident_if_bounded(backend: &ProcessBackend, pid: u32) -> Option<u64> {
    backend
        .max_memory_per_worker
        .and_then(|_| resident_bytes(pid))
}

/// Why `worker`, which just finished a call, should be replaced, if it
/// should; `resident` is its resident memory in bytes, if known.
pub(super) fn recycle_reason(
    backend: &ProcessBackend,
    worker: &Worker,
    resident: Option<u64>,
) -> Option<String> {
    if let Some(n) = backend.jobs_per_worker {
        if worker.jobs >= n {
            return Some(format!("it ran {n} calls (jobs_per_worker)"));
        }
    }
    if let Some(age) = backend.max_worker_age {
        if worker.started.elapsed() >= age {
            return Some(format!("it is older than {age:?} (max_worker_age)"));
        }
    }
    if let (Some(limit), Some(resident)) = (backend.max_memory_per_worker, resident) {
        if resident >= limit {
            return Some(format!(
                "its resident memory of {resident} bytes reached {limit} bytes \
                 (max_memory_per_worker)"
            ));
        }
    }
    None
}
