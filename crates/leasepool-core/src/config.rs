//! Manager configuration and its validation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;

/// Returns the adaptive size signal, in units (see `units_per_pool`).
pub(crate) type SizeProvider = Arc<dyn Fn() -> usize + Send + Sync>;

/// A validated manager configuration (built by
/// [`ManagerBuilder`](crate::ManagerBuilder)).
#[derive(Clone)]
pub struct ManagerConfig {
    pub(crate) max_pools: usize,
    pub(crate) min_pools: usize,
    pub(crate) units_per_pool: usize,
    pub(crate) size_provider: Option<SizeProvider>,
    pub(crate) check_interval: Duration,
    pub(crate) default_lease: Duration,
    pub(crate) lease_grace: Duration,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) workers_per_pool: usize,
    pub(crate) name_prefix: Arc<str>,
    /// Priority aging and owner limits.
    pub(crate) fairness: crate::state::Fairness,
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("max_pools", &self.max_pools)
            .field("min_pools", &self.min_pools)
            .field("units_per_pool", &self.units_per_pool)
            .field("size_provider", &self.size_provider.as_ref().map(|_| ".."))
            .field("check_interval", &self.check_interval)
            .field("default_lease", &self.default_lease)
            .field("lease_grace", &self.lease_grace)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("workers_per_pool", &self.workers_per_pool)
            .field("name_prefix", &self.name_prefix)
            .field("priority_aging", &self.fairness.aging)
            .field("max_leases_per_owner", &self.fairness.default_limit)
            .field("owner_limits", &self.fairness.owner_limits)
            .finish()
    }
}

impl ManagerConfig {
    /// The adaptive target for `units` of the size signal: `min(max_pools,
    /// max(min_pools, ceil(units / units_per_pool)))`.
    pub(crate) fn desired_for(&self, units: usize) -> usize {
        units
            .div_ceil(self.units_per_pool)
            .clamp(self.min_pools, self.max_pools)
    }

    /// The most pools the manager will own at once.
    pub fn max_pools(&self) -> usize {
        self.max_pools
    }
    /// The fewest pools the manager keeps while started.
    pub fn min_pools(&self) -> usize {
        self.min_pools
    }
    /// Units of the size signal one pool serves.
    pub fn units_per_pool(&self) -> usize {
        self.units_per_pool
    }
    /// How often the checker runs at the latest.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }
    /// The lease duration used when `acquire` does not give one.
    pub fn default_lease(&self) -> Duration {
        self.default_lease
    }
    /// Time between soft and hard expiry.
    pub fn lease_grace(&self) -> Duration {
        self.lease_grace
    }
    /// The time-out of acquires that set none (`None`: wait as long as it
    /// takes).
    pub fn acquire_timeout(&self) -> Option<Duration> {
        self.acquire_timeout
    }
    /// Workers in each pool.
    pub fn workers_per_pool(&self) -> usize {
        self.workers_per_pool
    }
    /// Prefix of worker names: `{prefix}-{pool}_{worker}`.
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }
    /// How long a waiter waits before it is served as if in the highest
    /// lane (`None`: never).
    pub fn priority_aging(&self) -> Option<Duration> {
        self.fairness.aging
    }
    /// The lease limit of every owner without one of its own (`None`: no
    /// limit).
    pub fn max_leases_per_owner(&self) -> Option<usize> {
        self.fairness.default_limit
    }
    /// The most leases `owner` may hold at once (`None`: no limit).
    pub fn owner_limit(&self, owner: &str) -> Option<usize> {
        self.fairness.limit_of(Some(&Arc::from(owner)))
    }
}

pub(crate) use crate::validate::{duration, positive};

/// Validates a lease duration together with the grace that follows it.
pub(crate) fn lease_duration(
    field: &'static str,
    lease: Duration,
    grace: Duration,
) -> Result<Duration, Error> {
    let lease = duration(field, lease, false)?;
    let fits = lease
        .checked_add(grace)
        .and_then(|total| Instant::now().checked_add(total))
        .is_some();
    if !fits {
        return Err(Error::invalid(
            field,
            format!("{lease:?} plus the lease grace {grace:?} overflows the monotonic clock"),
        ));
    }
    Ok(lease)
}
