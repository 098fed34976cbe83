//! `ManagerBuilder`: every option, validated at `build()`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ManagerConfig};
use crate::observe::Observer;
use crate::state::Fairness;
use crate::{Error, ExecutorBackend, LeasedExecutorManager};

/// Builds a [`LeasedExecutorManager`]. Created by
/// [`LeasedExecutorManager::builder`].
///
/// Every value is checked by [`build`](Self::build), which fails with
/// [`Error::InvalidConfig`] naming the option and the rule. Nothing is
/// clamped.
///
/// | option | default | rule |
/// |---|---|---|
/// | `max_pools` | required | > 0 |
/// | `min_pools` | 1 | > 0 and <= `max_pools` |
/// | `units_per_pool` | 10 | > 0 |
/// | `size_provider` | none (0 units) | a panic counts as 0 |
/// | `check_interval` | 120 s | > 0 |
/// | `default_lease` | 300 s | > 0 |
/// | `lease_grace` | 15 s | >= 0 |
/// | `acquire_timeout` | none (wait as long as it takes) | > 0 |
/// | `workers_per_pool` | 4 | > 0 |
/// | `name_prefix` | "leasepool" | not empty, no NUL byte |
/// | `priority_aging` | none (a lane is never promoted) | > 0 |
/// | `max_leases_per_owner` | none (no limit) | > 0 |
/// | `owner_limit(owner, n)` | `max_leases_per_owner` | n > 0, owner not empty |
///
/// Durations must also leave `now + duration` representable.
pub struct ManagerBuilder<B> {
    backend: B,
    max_pools: Option<usize>,
    min_pools: usize,
    units_per_pool: usize,
    size_provider: Option<config::SizeProvider>,
    check_interval: Duration,
    default_lease: Duration,
    lease_grace: Duration,
    acquire_timeout: Option<Duration>,
    priority_aging: Option<Duration>,
    max_leases_per_owner: Option<usize>,
    owner_limits: Vec<(String, usize)>,
    workers_per_pool: usize,
    name_prefix: String,
    observer: Option<Arc<dyn Observer>>,
}

impl<B> fmt::Debug for ManagerBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("max_pools", &self.max_pools)
            .field("min_pools", &self.min_pools)
            .field("units_per_pool", &self.units_per_pool)
            .field("check_interval", &self.check_interval)
            .field("default_lease", &self.default_lease)
            .field("lease_grace", &self.lease_grace)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("priority_aging", &self.priority_aging)
            .field("max_leases_per_owner", &self.max_leases_per_owner)
            .field("owner_limits", &self.owner_limits)
            .field("workers_per_pool", &self.workers_per_pool)
            .field("name_prefix", &self.name_prefix)
            .field("observer", &self.observer)
            .finish_non_exhaustive()
    }
}

impl<B> ManagerBuilder<B> {
    /// The validated priority aging and owner limits.
    fn fairness(&self) -> Result<Fairness, Error> {
        let aging = self
            .priority_aging
            .map(|d| config::duration("priority_aging", d, false))
            .transpose()?;
        let default_limit = self
            .max_leases_per_owner
            .map(|n| config::positive("max_leases_per_owner", n))
            .transpose()?;
        let mut owner_limits = HashMap::new();
        for (owner, n) in &self.owner_limits {
            if owner.is_empty() {
                return Err(Error::invalid(
                    "owner_limit",
                    "the owner must not be empty (a lease without an owner has no limit)",
                ));
            }
            let n = config::positive("owner_limit", *n)?;
            owner_limits.insert(Arc::from(owner.as_str()), n);
        }
        Ok(Fairness {
            aging,
            default_limit,
            owner_limits,
        })
    }
}

impl<B: ExecutorBackend> ManagerBuilder<B> {
    pub(crate) fn new(backend: B) -> Self {
        ManagerBuilder {
            backend,
            max_pools: None,
            min_pools: 1,
            units_per_pool: 10,
            size_provider: None,
            check_interval: Duration::from_secs(120),
            default_lease: Duration::from_secs(300),
            lease_grace: Duration::from_secs(15),
            acquire_timeout: None,
            priority_aging: None,
            max_leases_per_owner: None,
            owner_limits: Vec::new(),
            workers_per_pool: 4,
            name_prefix: "leasepool".to_owned(),
            observer: None,
        }
    }

    /// The most pools the manager owns at once (required, > 0).
    pub fn max_pools(mut self, n: usize) -> Self {
        self.max_pools = Some(n);
        self
    }

    /// The fewest pools kept while started (default 1).
    pub fn min_pools(mut self, n: usize) -> Self {
        self.min_pools = n;
        self
    }

    /// Units of the size signal that one pool serves (default 10).
    pub fn units_per_pool(mut self, n: usize) -> Self {
        self.units_per_pool = n;
        self
    }

    /// The adaptive size signal: the desired pool count is
    /// `ceil(size_provider() / units_per_pool)`, within
    /// `min_pools..=max_pools`. Called by the checker and by
    /// `desired_executor_count`; a panic counts as 0 units.
    pub fn size_provider<F>(mut self, provider: F) -> Self
    where
        F: Fn() -> usize + Send + Sync + 'static,
    {
        self.size_provider = Some(Arc::new(provider));
        self
    }

    /// How often the checker runs at the latest (default 120 s). It also
    /// runs at every hard expiry and on `notify_scale_changed`.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// The lease duration when `acquire` does not give one (default 300 s).
    pub fn default_lease(mut self, lease: Duration) -> Self {
        self.default_lease = lease;
        self
    }

    /// Time between soft and hard expiry (default 15 s; zero allowed).
    pub fn lease_grace(mut self, grace: Duration) -> Self {
        self.lease_grace = grace;
        self
    }

    /// The time-out of acquires that set none (default: none, an acquire
    /// waits as long as it takes). An acquire's own `.timeout(d)` wins;
    /// `.wait(false)` acquires never wait.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Bounds starvation across priority lanes: a waiter that has waited
    /// `d` or longer is served as if it were in the highest lane (oldest
    /// first among those and the `High` lane). Default: none, a lower lane
    /// waits while a higher one has waiters. See [`Priority`](crate::Priority).
    pub fn priority_aging(mut self, d: Duration) -> Self {
        self.priority_aging = Some(d);
        self
    }

    /// The most leases one owner may hold at once, for every owner without
    /// an [`owner_limit`](Self::owner_limit) of its own (default: no
    /// limit). A lease without an owner counts against no limit.
    ///
    /// An acquire whose owner is at its limit waits (or, with
    /// `wait(false)`, fails with [`Error::Unavailable`] naming the limit)
    /// without holding back the waiters behind it: they are served as if
    /// it were not there.
    pub fn max_leases_per_owner(mut self, n: usize) -> Self {
        self.max_leases_per_owner = Some(n);
        self
    }

    /// The most leases `owner` may hold at once; overrides
    /// [`max_leases_per_owner`](Self::max_leases_per_owner) for it. Call it
    /// once per owner (a later call for the same owner wins).
    pub fn owner_limit(mut self, owner: impl Into<String>, n: usize) -> Self {
        self.owner_limits.push((owner.into(), n));
        self
    }

    /// Workers in each pool (default 4).
    pub fn workers_per_pool(mut self, n: usize) -> Self {
        self.workers_per_pool = n;
        self
    }

    /// Prefix for worker names, `{prefix}-{pool}_{worker}` (default
    /// "leasepool").
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// The [`Observer`] told of this manager's events and state, and asked
    /// for each job's context at submit. Default: the backend's choice
    /// ([`ExecutorBackend::observer`]), else
    /// [`LogObserver`](crate::observe::LogObserver).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Validates every option and builds the (stopped) manager.
    pub fn build(self) -> Result<LeasedExecutorManager<B>, Error> {
        let max_pools = self.max_pools.ok_or_else(|| {
            Error::invalid("max_pools", "is required: call .max_pools(n) with n > 0")
        })?;
        let max_pools = config::positive("max_pools", max_pools)?;
        let min_pools = config::positive("min_pools", self.min_pools)?;
        if min_pools > max_pools {
            return Err(Error::invalid(
                "min_pools",
                format!("must be <= max_pools ({min_pools} > {max_pools})"),
            ));
        }
        let units_per_pool = config::positive("units_per_pool", self.units_per_pool)?;
        let workers_per_pool = config::positive("workers_per_pool", self.workers_per_pool)?;
        let check_interval = config::duration("check_interval", self.check_interval, false)?;
        let lease_grace = config::duration("lease_grace", self.lease_grace, true)?;
        let default_lease =
            config::lease_duration("default_lease", self.default_lease, lease_grace)?;
        let acquire_timeout = self
            .acquire_timeout
            .map(|t| config::duration("acquire_timeout", t, false))
            .transpose()?;
        let fairness = self.fairness()?;
        if self.name_prefix.is_empty() {
            return Err(Error::invalid("name_prefix", "must not be empty"));
        }
        if self.name_prefix.contains('\0') {
            return Err(Error::invalid("name_prefix", "must not contain a NUL byte"));
        }
        let config = ManagerConfig {
            max_pools,
            min_pools,
            units_per_pool,
            size_provider: self.size_provider,
            check_interval,
            default_lease,
            lease_grace,
            acquire_timeout,
            workers_per_pool,
            name_prefix: Arc::from(self.name_prefix),
            fairness,
        };
        self.backend.check_config(&config)?;
        Ok(LeasedExecutorManager::from_parts(
            self.backend,
            config,
            self.observer,
        ))
    }
}
