//! User code that fights the manager: size providers that block or panic,
//! backends that panic in `create_pool`, `execute`, `revoke` or `shutdown`,
//! jobs that ignore a graceful shutdown. None of it may stall the checker, hang a
//! call that promises to return, or leave the manager unusable.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use leasepool::{
    BackendPool, Error, ExecutorBackend, LeaseEnd, LocalBackend, PoolContext, StopMode, Task,
    ThreadBackend, ThreadPool, WorkGrinder,
};

use crate::common::*;

/// What a [`Hostile`] backend does wrong, and what it saw.
#[derive(Default)]
struct Faults {
    creations: AtomicUsize,
    /// The 1-based creation that panics (0: none).
    panic_on_creation: AtomicUsize,
    panic_in_shutdown: AtomicBool,
    panic_in_revoke: AtomicBool,
    panic_in_execute: AtomicBool,
    revokes: AtomicUsize,
}

/// The thread backend with faults injected around it.
#[derive(Clone)]
struct Hostile {
    inner: ThreadBackend,
    faults: Arc<Faults>,
}

impl Hostile {
    fn new() -> (Self, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let backend = Hostile {
            inner: ThreadBackend::new(),
            faults: faults.clone(),
        };
        (backend, faults)
    }
}

struct HostilePool {
    pool: ThreadPool,
    faults: Arc<Faults>,
}

impl ExecutorBackend for Hostile {
    type Pool = HostilePool;

    fn name(&self) -> &'static str {
        "hostile"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<HostilePool, Error> {
        let n = self.faults.creations.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.faults.panic_on_creation.load(Ordering::SeqCst) {
            panic!("create_pool number {n} panics");
        }
        Ok(HostilePool {
            pool: self.inner.create_pool(ctx)?,
            faults: self.faults.clone(),
        })
    }
}

impl LocalBackend for Hostile {}

impl BackendPool for HostilePool {
    fn execute(&self, task: Task) {
        if self.faults.panic_in_execute.load(Ordering::SeqCst) {
            panic!("execute panics");
        }
        self.pool.execute(task);
    }

    fn shutdown(&self) {
        self.pool.shutdown();
        if self.faults.panic_in_shutdown.load(Ordering::SeqCst) {
            panic!("shutdown panics");
        }
    }

    fn revoke(&self) {
        self.faults.revokes.fetch_add(1, Ordering::SeqCst);
        if self.faults.panic_in_revoke.load(Ordering::SeqCst) {
            panic!("revoke panics");
        }
    }
}

fn hostile(prefix: &str) -> (leasepool::ManagerBuilder<Hostile>, Arc<Faults>) {
    let (backend, faults) = Hostile::new();
    let builder = leasepool::LeasedExecutorManager::builder(backend)
        .name_prefix(prefix)
        .workers_per_pool(1);
    (builder, faults)
}

/// Runs `f` on a thread and returns its result, or panics with `what` if it
/// has not returned within `PATIENCE` (so a hang fails instead of hanging).
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return within {PATIENCE:?}"))
}

/// A size provider that answers `units` until `block` is set, then blocks
/// until `release` is set.
#[derive(Default)]
struct Gate {
    blocked: Mutex<bool>,
    changed: std::sync::Condvar,
    inside: AtomicUsize,
}

impl Gate {
    fn set(&self, blocked: bool) {
        *self.blocked.lock().unwrap() = blocked;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut blocked = self.blocked.lock().unwrap();
        while *blocked {
            self.inside.fetch_add(1, Ordering::SeqCst);
            blocked = self.changed.wait(blocked).unwrap();
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_blocking_size_provider_stalls_neither_time_outs_nor_expiry_nor_stop() {
    let gate = Arc::new(Gate::default());
    let provider_gate = gate.clone();
    let m = builder("hm-size")
        .max_pools(1)
        .min_pools(1)
        .lease_grace(Duration::ZERO)
        .size_provider(move || {
            provider_gate.pass();
            1
        })
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    gate.set(true);
    m.notify_scale_changed();
    eventually("the size provider blocks", || {
        gate.inside.load(Ordering::SeqCst) == 1
    });

    // Hard expiry is still enforced...
    let short = m
        .acquire()
        .lease(Duration::from_millis(50))
        .blocking()
        .unwrap();
    eventually("the short lease is revoked at hard expiry", || {
        short.ended() == Some(LeaseEnd::Expired)
    });
    let held = m.acquire().blocking().unwrap();
    let timed_out = m.acquire().timeout(Duration::from_millis(20)).blocking();
    assert!(matches!(timed_out, Err(Error::Timeout(_))), "{timed_out:?}");
    drop(held);

    // stop() returns although the provider is still stuck.
    let stopper = m.clone();
    returns("stop()", move || stopper.stop_blocking());
    assert!(!m.is_started());
    assert_eq!(gate.inside.load(Ordering::SeqCst), 1, "still inside");

    // Once the provider returns, its thread exits too.
    gate.set(false);
    eventually("the sizer thread exits", || {
        threads_named("hm-size").is_empty()
    });
}

#[test]
fn a_size_provider_that_blocks_from_the_start_does_not_hang_start() {
    let gate = Arc::new(Gate::default());
    gate.set(true);
    let provider_gate = gate.clone();
    let m = builder("hm-size0")
        .max_pools(3)
        .min_pools(1)
        .units_per_pool(1)
        .size_provider(move || {
            provider_gate.pass();
            3
        })
        .build()
        .unwrap();
    let starter = m.clone();
    returns("start()", move || starter.start_blocking()).unwrap();
    assert_eq!(m.total_count(), 1, "min_pools until the provider answers");
    gate.set(false);
    eventually("the first answer is applied", || m.total_count() == 3);
    assert_eq!(m.stats().desired, 3);
    m.stop_blocking();
    eventually("every thread exits", || {
        threads_named("hm-size0").is_empty()
    });
}

#[test]
fn a_panicking_create_pool_fails_start_and_the_manager_stays_usable() {
    let (builder, faults) = hostile("hm-cp");
    faults.panic_on_creation.store(2, Ordering::SeqCst);
    let m = builder.max_pools(3).min_pools(2).build().unwrap();
    let starter = m.clone();
    let started = returns("start()", move || starter.start_blocking());
    match started {
        Err(Error::Broken(message)) => {
            assert!(message.contains("panicked"), "{message}");
            assert!(message.contains("create_pool number 2 panics"), "{message}");
        }
        other => panic!("expected a broken error, got {other:?}"),
    }
    assert!(!m.is_started());
    assert_eq!(m.total_count(), 0);
    eventually("the first pool's worker exits", || {
        threads_named("hm-cp").is_empty()
    });

    // Creations 3 and 4 succeed: the manager starts and serves.
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit(|| 6 * 7).unwrap().wait(), Ok(42));
    drop(lease);
    m.stop_blocking();
    eventually("every thread exits", || threads_named("hm-cp").is_empty());
}

#[test]
fn a_panicking_create_pool_on_demand_fails_only_the_waiter_it_would_serve() {
    let (builder, faults) = hostile("hm-cpd");
    faults.panic_on_creation.store(2, Ordering::SeqCst);
    let m = builder.max_pools(2).min_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let first = m.acquire().blocking().unwrap();
    let waiter = m.clone();
    let second = returns("an acquire served by a panicking creation", move || {
        waiter.acquire().blocking().map(drop)
    });
    match second {
        Err(Error::Broken(message)) => assert!(message.contains("panicked"), "{message}"),
        other => panic!("expected a broken error, got {other:?}"),
    }
    // The checker survived: the next creation (number 3) serves.
    let third = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(third.submit(|| "ok").unwrap().wait(), Ok("ok"));
    assert_eq!(m.total_count(), 2);
    drop((first, third));
    m.stop_blocking();
    eventually("every thread exits", || threads_named("hm-cpd").is_empty());
}

#[test]
fn a_backend_that_panics_in_shutdown_and_revoke_does_not_kill_the_checker() {
    let (builder, faults) = hostile("hm-sd");
    faults.panic_in_shutdown.store(true, Ordering::SeqCst);
    faults.panic_in_revoke.store(true, Ordering::SeqCst);
    let m = builder
        .max_pools(1)
        .min_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    // The checker revokes this lease, and both backend calls panic.
    let short = m
        .acquire()
        .lease(Duration::from_millis(30))
        .blocking()
        .unwrap();
    eventually("the lease is revoked", || {
        short.ended() == Some(LeaseEnd::Expired)
    });
    assert_eq!(faults.revokes.load(Ordering::SeqCst), 1);
    // The checker is alive: it replaces the pool and times waiters out.
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let waiter = m.acquire().timeout(Duration::from_millis(20)).blocking();
    assert!(matches!(waiter, Err(Error::Timeout(_))), "{waiter:?}");
    drop(lease);
    let stopper = m.clone();
    returns("stop()", move || stopper.stop_blocking());
    eventually("every thread exits", || threads_named("hm-sd").is_empty());
}

#[test]
fn shutdown_revokes_held_leases_at_the_deadline_as_hard_expiry_does() {
    let (builder, faults) = hostile("hm-rv");
    let m = builder.max_pools(1).min_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let shutter = m.clone();
    let report = returns("shutdown()", move || {
        shutter.shutdown_blocking(Duration::from_millis(50))
    });
    assert_eq!(lease.ended(), Some(LeaseEnd::Expired));
    assert_eq!(
        faults.revokes.load(Ordering::SeqCst),
        1,
        "revoke() ran once"
    );
    assert_eq!(report.leases_at_start, 1);
    assert_eq!(report.revoked_at_deadline, 1);
    assert_eq!(report.jobs_still_running, 0);
    assert_eq!(report.workers_still_running, 0);
    eventually("every thread exits", || threads_named("hm-rv").is_empty());
}

#[test]
fn shutdown_returns_soon_after_its_deadline_and_reports_what_it_left() {
    let m = builder("hm-stuck").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    // A job that ignores the shutdown: it waits for the test alone.
    let job = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            "done"
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let shutter = m.clone();
    let began = Instant::now();
    let report = returns("shutdown()", move || {
        shutter.shutdown_blocking(Duration::from_millis(100))
    });
    assert!(
        began.elapsed() < PATIENCE,
        "shutdown waited for the stuck job"
    );
    assert_eq!(report.revoked_at_deadline, 1);
    assert_eq!(report.jobs_still_running, 1, "{report:?}");
    assert!(report.workers_still_running >= 1, "{report:?}");
    assert_eq!(lease.ended(), Some(LeaseEnd::Expired));

    // The job still gets its own outcome, and stop() then waits for it.
    release_tx.send(()).unwrap();
    assert_eq!(job.wait(), Ok("done"));
    m.stop_blocking();
    eventually("every thread exits", || {
        threads_named("hm-stuck").is_empty()
    });
}

#[test]
fn stop_called_from_inside_a_job_of_its_own_pool_returns() {
    let m = builder("hm-self").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let inside = m.clone();
    let job = lease
        .submit(move || {
            inside.stop_blocking();
            inside.is_started()
        })
        .unwrap();
    let outcome = returns("the job that calls stop()", move || job.wait());
    assert_eq!(outcome, Ok(false), "stopped, and the job got its outcome");
    assert_eq!(lease.ended(), Some(LeaseEnd::Stopped));
    // From outside, stop() still waits for every worker.
    let outside = m.clone();
    returns("stop() from outside", move || outside.stop_blocking());
    eventually("every thread exits", || threads_named("hm-self").is_empty());
}

#[test]
fn shutdown_called_from_inside_a_job_of_its_own_pool_returns() {
    let m = builder("hm-selfsd").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let inside = m.clone();
    let job = lease
        .submit(move || inside.shutdown_blocking(Duration::from_millis(50)))
        .unwrap();
    let report = returns("the job that calls shutdown()", move || job.wait()).unwrap();
    assert_eq!(report.leases_at_start, 1);
    assert_eq!(report.revoked_at_deadline, 1);
    let outside = m.clone();
    returns("stop() from outside", move || outside.stop_blocking());
    eventually("every thread exits", || {
        threads_named("hm-selfsd").is_empty()
    });
}

#[test]
fn a_backend_that_panics_in_execute_loses_no_outcome_and_is_replaced() {
    let (builder, faults) = hostile("hm-ex");
    let m = builder.max_pools(1).min_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    faults.panic_in_execute.store(true, Ordering::SeqCst);
    let handle = lease.submit(|| "never runs").unwrap();
    assert_eq!(handle.wait(), Err(Error::Cancelled));
    eventually("the lease is retired as broken", || {
        lease.ended() == Some(LeaseEnd::Broken)
    });
    faults.panic_in_execute.store(false, Ordering::SeqCst);
    let replacement = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(replacement.submit(|| 7).unwrap().wait(), Ok(7));
    assert_eq!(m.stats().counters.pools_broken, 1);
    drop((lease, replacement));

    // Through the grinder, whose threads make the calls: every item gets
    // an outcome and stop() returns.
    faults.panic_in_execute.store(true, Ordering::SeqCst);
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(4)
        .max_wait(Duration::from_millis(5))
        .build()
        .unwrap();
    grinder.start_blocking().unwrap();
    let items: Vec<_> = (0..8)
        .map(|i| grinder.enqueue(move || i).unwrap())
        .collect();
    for item in items {
        let outcome = returns("a grinder item on a panicking backend", move || item.wait());
        assert!(
            matches!(
                outcome,
                Err(Error::Cancelled | Error::Broken(_) | Error::LeaseExpired { .. })
            ),
            "{outcome:?}"
        );
    }
    let stopper = grinder.clone();
    returns("grinder stop", move || {
        stopper.stop_blocking(StopMode::Cancel)
    });
    let stopper = m.clone();
    returns("stop()", move || stopper.stop_blocking());
    eventually("every thread exits", || threads_named("hm-ex").is_empty());
}

/// An observer that panics everywhere it can, and hands out job contexts
/// that panic on entry, never run the job, or panic when dropped.
struct PanickingObserver {
    contexts: AtomicUsize,
}

struct SkipsTheJob;
impl leasepool::observe::JobContext for SkipsTheJob {
    fn scope(&self, _job: &mut dyn FnMut()) {}
}

struct PanicsOnEntry;
impl leasepool::observe::JobContext for PanicsOnEntry {
    fn scope(&self, _job: &mut dyn FnMut()) {
        panic!("a job context that panics on entry");
    }
}

struct PanicsOnDrop;
impl leasepool::observe::JobContext for PanicsOnDrop {
    fn scope(&self, job: &mut dyn FnMut()) {
        job();
    }
}
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a job context that panics when dropped");
        }
    }
}

impl leasepool::observe::Observer for PanickingObserver {
    fn max_level(&self) -> Option<leasepool::observe::Level> {
        Some(leasepool::observe::Level::Trace)
    }
    fn event(&self, _event: &leasepool::observe::Event) {
        panic!("an observer that panics on every event");
    }
    fn wants_snapshots(&self) -> bool {
        true
    }
    fn snapshot(&self, _snapshot: &leasepool::observe::Snapshot) {
        panic!("an observer that panics on every snapshot");
    }
    fn capture(&self) -> Option<Box<dyn leasepool::observe::JobContext>> {
        match self.contexts.fetch_add(1, Ordering::SeqCst) % 4 {
            0 => panic!("an observer that panics in capture"),
            1 => Some(Box::new(SkipsTheJob)),
            2 => Some(Box::new(PanicsOnEntry)),
            _ => Some(Box::new(PanicsOnDrop)),
        }
    }
}

#[test]
fn a_panicking_observer_loses_its_records_and_nothing_else() {
    let m = builder("hm-observer")
        .max_pools(1)
        .observer(Arc::new(PanickingObserver {
            contexts: AtomicUsize::new(0),
        }))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    // Every job runs exactly once and gives its outcome, whatever its
    // context does.
    let runs = Arc::new(AtomicUsize::new(0));
    for i in 0..8u32 {
        let runs = runs.clone();
        let job = lease.submit(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            i
        });
        assert_eq!(job.unwrap().wait(), Ok(i));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 8);
    // The counters (and so the state) are intact.
    assert_eq!(m.stats().counters.jobs_completed, 8, "{:?}", m.stats());
    let grinder = WorkGrinder::builder(m.clone())
        .max_wait(Duration::from_millis(1))
        .build()
        .unwrap();
    grinder.start_blocking().unwrap();
    drop(lease);
    for i in 0..4u32 {
        assert_eq!(block_on(grinder.submit(move || i)), Ok(i));
    }
    grinder.stop_blocking(StopMode::Drain);
    returns("stop with a panicking observer", move || m.stop_blocking());
}
