//! Helpers shared by the scenarios: a manager, a lease, bounded waits,
//! process checks.

use super::*;

pub(crate) use crate::procfs::{
    exited, lease_on, open_pipes, reaped, start_orphan_parent, wait_until,
};

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

pub(crate) fn wait<T>(mut handle: JobHandle<T>) -> Result<T, Error> {
    handle
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|| panic!("a job did not end within {PATIENCE:?}"))
}
