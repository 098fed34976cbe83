//! `acquire()`: the request builder and its future.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::config;
use crate::manager::Inner;
use crate::state::{AcquireRequest, AcquireStep, LeaseTerms, Resolution};
use crate::wait::WakeSlot;
use crate::{Error, ExecutorBackend, ExecutorLease, LeasedExecutorManager, Priority};

/// A request for a lease, returned by
/// [`LeasedExecutorManager::acquire`]. Set what you need, then `.await` it
/// (or call [`blocking`](Self::blocking) on a plain thread).
///
/// | method | default |
/// |---|---|
/// | [`owner`](Self::owner) | none |
/// | [`lease`](Self::lease) | the manager's `default_lease` |
/// | [`timeout`](Self::timeout) | the manager's `acquire_timeout`, else wait as long as it takes |
/// | [`wait`](Self::wait) | `true`; `false` fails fast with [`Error::Unavailable`] |
/// | [`priority`](Self::priority) | [`Priority::Normal`] |
///
/// `.wait(false)` together with `.timeout(d)` is a contradiction, refused
/// with [`Error::InvalidConfig`] rather than a time-out silently ignored.
///
/// Waiters are served first come, first served within their priority lane,
/// the highest lane first (see [`Priority`] for the rule and its aging).
/// Dropping the future while it waits removes the waiter; if a pool was
/// handed to it at that moment, the pool goes to the next waiter.
#[must_use = "an Acquire does nothing until it is awaited or `.blocking()` is called"]
pub struct Acquire<'a, B: ExecutorBackend> {
    manager: &'a LeasedExecutorManager<B>,
    owner: Option<String>,
    lease: Option<Duration>,
    timeout: Option<Duration>,
    wait: bool,
    priority: Priority,
}

impl<B: ExecutorBackend> fmt::Debug for Acquire<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .field("wait", &self.wait)
            .field("priority", &self.priority)
            .finish()
    }
}

impl<'a, B: ExecutorBackend> Acquire<'a, B> {
    pub(crate) fn new(manager: &'a LeasedExecutorManager<B>) -> Self {
        Acquire {
            manager,
            owner: None,
            lease: None,
            timeout: None,
            wait: true,
            priority: Priority::Normal,
        }
    }

    /// A label for the holder, shown in stats and logs.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// The lease duration (soft expiry); validated like `default_lease`.
    pub fn lease(mut self, duration: Duration) -> Self {
        self.lease = Some(duration);
        self
    }

    /// Wait at most this long for a pool, then fail with
    /// [`Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `false`: fail at once with [`Error::Unavailable`] when no pool is
    /// free and none can be created.
    pub fn wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// The lane this acquire waits in if no pool is free (default
    /// [`Priority::Normal`]). A freed pool goes to the oldest waiter of the
    /// highest non-empty lane; see [`Priority`].
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Acquires from a plain thread, blocking it while waiting.
    ///
    /// Do not call this from async code: `.await` the request instead.
    pub fn blocking(self) -> Result<ExecutorLease<B>, Error> {
        futures_lite::future::block_on(self.into_future())
    }

    fn request(&self) -> Result<AcquireRequest, Error> {
        let config = &self.manager.inner.config;
        let duration = match self.lease {
            Some(lease) => config::lease_duration("lease", lease, config.lease_grace)?,
            None => config.default_lease,
        };
        if !self.wait && self.timeout.is_some() {
            return Err(Error::invalid(
                "timeout",
                "has no effect with wait(false), which never waits: drop one of the two",
            ));
        }
        let timeout = self.timeout.or(config.acquire_timeout);
        let deadline = match (self.wait, timeout) {
            (true, Some(timeout)) => {
                let at = Instant::now().checked_add(timeout).ok_or_else(|| {
                    Error::invalid(
                        "timeout",
                        format!("{timeout:?} overflows the monotonic clock"),
                    )
                })?;
                Some((at, timeout))
            }
            _ => None,
        };
        Ok(AcquireRequest {
            terms: LeaseTerms {
                owner: self.owner.as_deref().map(Arc::from),
                duration,
                grace: config.lease_grace,
                lane: self.priority.lane(),
            },
            wait: self.wait,
            deadline,
        })
    }
}

impl<B: ExecutorBackend> IntoFuture for Acquire<'_, B> {
    type Output = Result<ExecutorLease<B>, Error>;
    type IntoFuture = AcquireFuture<B>;

    fn into_future(self) -> AcquireFuture<B> {
        let stage = match self.request() {
            Ok(request) => Stage::Init(request),
            Err(error) => Stage::Failed(error),
        };
        AcquireFuture {
            inner: self.manager.inner.clone(),
            stage,
        }
    }
}

enum Stage {
    Init(AcquireRequest),
    Failed(Error),
    Waiting { id: u64, slot: Arc<WakeSlot> },
    Done,
}

/// The future of an [`Acquire`] request. It owns a handle to the manager,
/// so it is `'static` and can be spawned.
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture<B: ExecutorBackend> {
    inner: Arc<Inner<B>>,
    stage: Stage,
}

impl<B: ExecutorBackend> fmt::Debug for AcquireFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match &self.stage {
            Stage::Init(_) => "init",
            Stage::Failed(_) => "failed",
            Stage::Waiting { .. } => "waiting",
            Stage::Done => "done",
        };
        f.debug_struct("AcquireFuture")
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}

impl<B: ExecutorBackend> AcquireFuture<B> {
    /// Makes all the progress possible without sleeping. `None`: queued,
    /// nothing resolved yet.
    fn step(&mut self) -> Option<Result<ExecutorLease<B>, Error>> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Init(request) => {
                let mut created = None;
                let step = self.inner.transition(|state, fx| {
                    state.acquire(
                        request,
                        Instant::now(),
                        || {
                            let slot = Arc::new(WakeSlot::default());
                            created = Some(slot.clone());
                            slot
                        },
                        fx,
                    )
                });
                match step {
                    Ok(AcquireStep::Granted(grant)) => {
                        Some(Ok(ExecutorLease::new(self.inner.clone(), grant)))
                    }
                    Ok(AcquireStep::Queued(id)) => {
                        let slot = created.expect("a queued waiter has a wake slot");
                        self.stage = Stage::Waiting { id, slot };
                        // The resolution may already be there (a pool was
                        // created or released between the two calls).
                        self.step()
                    }
                    Err(error) => Some(Err(error)),
                }
            }
            Stage::Failed(error) => Some(Err(error)),
            Stage::Waiting { id, slot } => {
                let resolution = self.inner.core().state.take_resolution(id);
                match resolution {
                    Some(Resolution::Granted(grant)) => {
                        Some(Ok(ExecutorLease::new(self.inner.clone(), grant)))
                    }
                    Some(Resolution::Failed(error)) => Some(Err(error)),
                    None => {
                        self.stage = Stage::Waiting { id, slot };
                        None
                    }
                }
            }
            Stage::Done => Some(Err(Error::NotStarted)),
        }
    }
}

impl<B: ExecutorBackend> Future for AcquireFuture<B> {
    type Output = Result<ExecutorLease<B>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(result) = self.step() {
                return Poll::Ready(result);
            }
            if let Stage::Waiting { slot, .. } = &self.stage {
                if !slot.register_waker(cx.waker()) {
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<B: ExecutorBackend> Drop for AcquireFuture<B> {
    fn drop(&mut self) {
        if let Stage::Waiting { id, .. } = self.stage {
            self.inner
                .transition(|state, fx| state.cancel_waiter(id, Instant::now(), fx));
        }
    }
}
