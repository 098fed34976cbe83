//! Cancellation at every await point, under contention (in the spirit of
//! deadpool's `tests/managed_cancellation.rs`).
//!
//! Await points of an acquire: dropped before its first poll, dropped while
//! queued, dropped at the moment a pool is handed to it (by a release or by
//! a pool creation). Await points of a `run`: dropped before its first
//! poll, dropped while its job is queued behind another job, dropped while
//! its job runs. After each: the pool is not stranded (the next waiter gets
//! it within `PATIENCE`), waiters are served in arrival order, and the
//! counts stay consistent.
//!
//! Futures are moved to the wanted state by hand: polled once with a no-op
//! waker, then dropped or polled again.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use leasepool::{
    AcquireFuture, Error, ExecutorBackend, ExecutorLease, LeasedExecutorManager, LocalBackend,
    PoolContext, ThreadBackend, ThreadPool,
};

use crate::common::*;

/// Polls `future` once, with a waker that does nothing.
fn poll_now<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Awaits `future`, failing the test if it takes longer than `PATIENCE`.
fn within<F: Future>(what: &str, future: F) -> F::Output {
    smol::block_on(futures_lite::future::or(
        async { Some(future.await) },
        async {
            smol::Timer::after(PATIENCE).await;
            None
        },
    ))
    .unwrap_or_else(|| panic!("timed out waiting for: {what}"))
}

/// A started manager whose pools are all leased, by "holder0", "holder1"...
fn contended(prefix: &str, max_pools: usize) -> (LeasedExecutorManager, Vec<ExecutorLease>) {
    let m = builder(prefix).max_pools(max_pools).build().unwrap();
    m.start_blocking().unwrap();
    let holders: Vec<_> = (0..max_pools)
        .map(|i| {
            m.acquire()
                .owner(format!("holder{i}"))
                .timeout(PATIENCE)
                .blocking()
                .unwrap()
        })
        .collect();
    check_counts(&m, max_pools, 0);
    assert_eq!(m.leased_count(), max_pools);
    (m, holders)
}

/// An acquire polled once: it is queued (Pending).
fn queued<B: LocalBackend>(m: &LeasedExecutorManager<B>, owner: &str) -> AcquireFuture<B> {
    let mut future = m.acquire().owner(owner).into_future();
    assert!(poll_now(&mut future).is_pending(), "{owner} got a pool");
    future
}

/// `available + leased == total <= max_pools`, one stats entry per lease,
/// and `waiting` waiters.
fn check_counts<B: LocalBackend>(m: &LeasedExecutorManager<B>, max_pools: usize, waiting: usize) {
    let s = m.stats();
    assert_eq!(s.available + s.leased, s.total, "{s:?}");
    assert!(s.total <= max_pools, "{s:?}");
    assert_eq!(s.leases.len(), s.leased, "{s:?}");
    assert_eq!(s.waiting, waiting, "{s:?}");
}

/// The owners of the current leases, in lease order.
fn owners<B: LocalBackend>(m: &LeasedExecutorManager<B>) -> Vec<String> {
    m.stats()
        .leases
        .into_iter()
        .map(|l| l.owner.unwrap_or_default())
        .collect()
}

/// Awaits the oldest waiter, checks it is `owner`, and that every later
/// waiter is still pending.
fn next_served<B: LocalBackend>(
    waiting: &mut Vec<(String, AcquireFuture<B>)>,
    expected_owner: &str,
) -> ExecutorLease<B> {
    let (owner, mut future) = waiting.remove(0);
    assert_eq!(owner, expected_owner, "test bookkeeping");
    let lease = within(&format!("{owner} gets a pool"), &mut future).unwrap();
    assert_eq!(lease.owner(), Some(expected_owner));
    for (later, future) in waiting.iter_mut() {
        assert!(
            poll_now(future).is_pending(),
            "{later} was served before {expected_owner}"
        );
    }
    lease
}

/// Releases everything and proves no pool was stranded: every pool can be
/// leased again at once, a job runs on each, and stop leaves no thread.
fn finish<B: LocalBackend>(
    prefix: &str,
    m: LeasedExecutorManager<B>,
    max_pools: usize,
    leases: Vec<ExecutorLease<B>>,
) {
    drop(leases);
    eventually("all leases finalised", || m.leased_count() == 0);
    check_counts(&m, max_pools, 0);
    let fresh: Vec<_> = (0..max_pools)
        .map(|i| {
            m.acquire()
                .owner(format!("fresh{i}"))
                .timeout(PATIENCE)
                .blocking()
                .unwrap_or_else(|e| panic!("pool {i} stranded: {e}"))
        })
        .collect();
    for (i, lease) in fresh.iter().enumerate() {
        assert_eq!(lease.submit(move || i).unwrap().wait(), Ok(i));
    }
    assert!(matches!(
        m.acquire().wait(false).blocking(),
        Err(Error::Unavailable { .. })
    ));
    drop(fresh);
    m.stop_blocking();
    eventually("threads gone", || threads_named(prefix).is_empty());
}

fn waiters<B: LocalBackend>(
    m: &LeasedExecutorManager<B>,
    names: &[&str],
) -> Vec<(String, AcquireFuture<B>)> {
    names
        .iter()
        .map(|&name| (name.to_owned(), queued(m, name)))
        .collect()
}

// ----- acquire ----------------------------------------------------------

fn acquire_dropped_before_first_poll(prefix: &str, max_pools: usize) {
    let (m, mut holders) = contended(prefix, max_pools);
    let mut waiting = waiters(&m, &["w1"]);
    let ghost = m.acquire().owner("ghost").into_future();
    waiting.extend(waiters(&m, &["w2", "w3"]));
    check_counts(&m, max_pools, 3);
    drop(ghost);
    check_counts(&m, max_pools, 3);

    drop(holders.remove(0));
    let w1 = next_served(&mut waiting, "w1");
    check_counts(&m, max_pools, 2);
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    drop(w2);
    let w3 = next_served(&mut waiting, "w3");
    check_counts(&m, max_pools, 0);
    assert!(!owners(&m).iter().any(|o| o == "ghost"));
    holders.push(w3);
    finish(prefix, m, max_pools, holders);
}

#[test]
fn acquire_dropped_before_first_poll_1() {
    acquire_dropped_before_first_poll("cx-ab1", 1);
}

#[test]
fn acquire_dropped_before_first_poll_2() {
    acquire_dropped_before_first_poll("cx-ab2", 2);
}

fn acquire_dropped_while_queued(prefix: &str, max_pools: usize) {
    let (m, mut holders) = contended(prefix, max_pools);
    let mut waiting = waiters(&m, &["w0", "w1", "w2", "w3", "w4"]);
    check_counts(&m, max_pools, 5);
    // Leave from the front, the middle and the back of the queue.
    for gone in ["w0", "w2", "w4"] {
        let index = waiting.iter().position(|(o, _)| o == gone).unwrap();
        drop(waiting.remove(index));
    }
    check_counts(&m, max_pools, 2);

    drop(holders.remove(0));
    let w1 = next_served(&mut waiting, "w1");
    check_counts(&m, max_pools, 1);
    if max_pools > 1 {
        // Another pool frees up: the next waiter in line gets it.
        drop(holders.remove(0));
        holders.push(w1);
    } else {
        drop(w1);
    }
    let w3 = next_served(&mut waiting, "w3");
    check_counts(&m, max_pools, 0);
    assert!(owners(&m).iter().any(|o| o == "w3"));
    holders.push(w3);
    finish(prefix, m, max_pools, holders);
}

#[test]
fn acquire_dropped_while_queued_1() {
    acquire_dropped_while_queued("cx-aq1", 1);
}

#[test]
fn acquire_dropped_while_queued_2() {
    acquire_dropped_while_queued("cx-aq2", 2);
}

fn acquire_dropped_when_handed_a_pool(prefix: &str, max_pools: usize) {
    let (m, mut holders) = contended(prefix, max_pools);
    let mut waiting = waiters(&m, &["w1", "w2", "w3"]);

    // holder0's pool goes to w1 at once; w1 is not polled again.
    drop(holders.remove(0));
    check_counts(&m, max_pools, 2);
    assert!(owners(&m).iter().any(|o| o == "w1"), "{:?}", owners(&m));
    let (_, w1) = waiting.remove(0);
    drop(w1);
    // The pool it was handed goes to w2, not to the idle set.
    let w2 = next_served(&mut waiting, "w2");
    assert!(!owners(&m).iter().any(|o| o == "w1"), "{:?}", owners(&m));
    check_counts(&m, max_pools, 1);
    assert_eq!(m.available_count(), 0);
    assert_eq!(w2.submit(|| "w2 runs").unwrap().wait(), Ok("w2 runs"));

    // Once more with the last waiter: the pool returns to the idle set.
    drop(w2);
    check_counts(&m, max_pools, 0);
    let (_, w3) = waiting.remove(0);
    assert!(owners(&m).iter().any(|o| o == "w3"));
    drop(w3);
    check_counts(&m, max_pools, 0);
    assert!(!owners(&m).iter().any(|o| o == "w3"));
    assert_eq!(m.leased_count(), max_pools - 1);
    finish(prefix, m, max_pools, holders);
}

#[test]
fn acquire_dropped_when_handed_a_pool_1() {
    acquire_dropped_when_handed_a_pool("cx-ah1", 1);
}

#[test]
fn acquire_dropped_when_handed_a_pool_2() {
    acquire_dropped_when_handed_a_pool("cx-ah2", 2);
}

/// The pool handed over is a new one, created by the checker for the
/// waiter; the waiter is dropped before it sees it.
#[test]
fn acquire_dropped_when_handed_a_created_pool() {
    let prefix = "cx-ahc";
    // A backend whose pool creation waits on a gate holds the creation for
    // w1 back until both waiters are queued, so the created pool is handed
    // to w1 while w1 is not being polled.
    let gate = Arc::new(Gate::default());
    let backend = GatedCreation {
        inner: ThreadBackend::new(),
        gate: gate.clone(),
    };
    let m = LeasedExecutorManager::builder(backend)
        .name_prefix(prefix)
        .workers_per_pool(1)
        .max_pools(2)
        .min_pools(1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let holder = m.acquire().owner("holder").blocking().unwrap();
    assert_eq!(m.total_count(), 1);
    gate.set(false);
    let mut waiting = waiters(&m, &["w1", "w2"]);
    eventually("the creation for w1 waits at the gate", || {
        gate.waiting.load(Ordering::SeqCst)
    });
    gate.set(true);
    eventually("a pool is created for w1", || m.leased_count() == 2);
    check_counts(&m, 2, 1);
    assert!(owners(&m).iter().any(|o| o == "w1"));
    let (_, w1) = waiting.remove(0);
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    check_counts(&m, 2, 0);
    assert_eq!(w2.submit(|| 2).unwrap().wait(), Ok(2));
    finish(prefix, m, 2, vec![holder, w2]);
}

/// Opens and closes pool creation for [`GatedCreation`].
#[derive(Default)]
struct Gate {
    closed: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    waiting: AtomicBool,
}

impl Gate {
    fn set(&self, open: bool) {
        *self.closed.lock().unwrap() = !open;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            self.waiting.store(true, Ordering::SeqCst);
            closed = self.changed.wait(closed).unwrap();
        }
    }
}

/// The thread backend, whose `create_pool` waits while the gate is closed.
struct GatedCreation {
    inner: ThreadBackend,
    gate: Arc<Gate>,
}

impl ExecutorBackend for GatedCreation {
    type Pool = ThreadPool;

    fn name(&self) -> &'static str {
        "gated"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<ThreadPool, Error> {
        self.gate.pass();
        self.inner.create_pool(ctx)
    }
}

impl LocalBackend for GatedCreation {}

/// A waiter with a timeout, dropped while queued, does not fire a timeout
/// into someone else's slot, and the waiters behind it still get served.
#[test]
fn acquire_with_timeout_dropped_while_queued() {
    let prefix = "cx-atq";
    let (m, mut holders) = contended(prefix, 1);
    let mut short = m
        .acquire()
        .owner("short")
        .timeout(Duration::from_millis(20))
        .into_future();
    assert!(poll_now(&mut short).is_pending());
    let mut waiting = waiters(&m, &["w1", "w2"]);
    drop(short);
    check_counts(&m, 1, 2);
    // A waiter that times out while others queue leaves only itself.
    let timed = m
        .acquire()
        .owner("timed")
        .timeout(Duration::from_millis(20))
        .into_future();
    assert!(matches!(
        within("the timeout fires", timed),
        Err(Error::Timeout(_))
    ));
    check_counts(&m, 1, 2);
    drop(holders.remove(0));
    let w1 = next_served(&mut waiting, "w1");
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    finish(prefix, m, 1, vec![w2]);
}

// ----- run --------------------------------------------------------------

/// Starts a job on `lease` that holds its (single) worker until `go`
/// is sent; returns once it is running.
fn blocker(lease: &ExecutorLease) -> (mpsc::Sender<()>, leasepool::JobHandle<&'static str>) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let handle = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "blocker"
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).expect("blocker started");
    (go_tx, handle)
}

fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn pending_jobs(m: &LeasedExecutorManager, owner: &str) -> Option<usize> {
    m.stats()
        .leases
        .into_iter()
        .find(|l| l.owner.as_deref() == Some(owner))
        .map(|l| l.pending_jobs)
}

/// Whether the job runs depends on where it is when its `Run` is dropped;
/// `poll_first` decides whether the future is polled once before.
fn run_dropped_behind_busy_worker(prefix: &str, max_pools: usize, poll_first: bool) {
    let (m, mut holders) = contended(prefix, max_pools);
    let mut waiting = waiters(&m, &["w1", "w2"]);
    let lease = holders.remove(0);
    let (go, mut blocked) = blocker(&lease);

    let ran = flag();
    let ran2 = ran.clone();
    let mut run = lease.run(move || ran2.store(true, Ordering::SeqCst));
    if poll_first {
        assert!(poll_now(&mut run).is_pending());
        assert_eq!(pending_jobs(&m, "holder0"), Some(2));
    }
    drop(run);
    assert_eq!(pending_jobs(&m, "holder0"), Some(1), "cancel not counted");

    go.send(()).unwrap();
    assert_eq!(blocked.wait_timeout(PATIENCE), Some(Ok("blocker")));
    // FIFO, one worker: once this runs, the dropped job had its turn.
    assert_eq!(lease.submit(|| "after").unwrap().wait(), Ok("after"));
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
    assert_eq!(pending_jobs(&m, "holder0"), Some(0));

    // The pool is not stranded: it goes to the oldest waiter.
    drop(lease);
    let w1 = next_served(&mut waiting, "w1");
    assert_eq!(w1.submit(|| 1).unwrap().wait(), Ok(1));
    check_counts(&m, max_pools, 1);
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    holders.push(w2);
    finish(prefix, m, max_pools, holders);
}

#[test]
fn run_dropped_before_poll_behind_busy_worker_1() {
    run_dropped_behind_busy_worker("cx-rb1", 1, false);
}

#[test]
fn run_dropped_before_poll_behind_busy_worker_2() {
    run_dropped_behind_busy_worker("cx-rb2", 2, false);
}

#[test]
fn run_dropped_while_queued_1() {
    run_dropped_behind_busy_worker("cx-rq1", 1, true);
}

#[test]
fn run_dropped_while_queued_2() {
    run_dropped_behind_busy_worker("cx-rq2", 2, true);
}

fn run_dropped_while_running(prefix: &str, max_pools: usize) {
    let (m, mut holders) = contended(prefix, max_pools);
    let mut waiting = waiters(&m, &["w1", "w2"]);
    let lease = holders.remove(0);

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let finished = flag();
    let finished2 = finished.clone();
    let mut run = lease.run(move || {
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        finished2.store(true, Ordering::SeqCst);
    });
    assert!(poll_now(&mut run).is_pending());
    started_rx.recv_timeout(PATIENCE).expect("job started");
    drop(run);
    // The job runs on; the lease still counts it.
    assert_eq!(pending_jobs(&m, "holder0"), Some(1));

    // Released while the job runs: the lease drains, nobody gets the pool.
    drop(lease);
    let s = m.stats();
    let draining = s
        .leases
        .iter()
        .find(|l| l.owner.as_deref() == Some("holder0"))
        .expect("holder0 drains");
    assert!(draining.draining && draining.pending_jobs == 1, "{s:?}");
    check_counts(&m, max_pools, 2);
    for (name, future) in waiting.iter_mut() {
        assert!(poll_now(future).is_pending(), "{name} got a busy pool");
    }

    go_tx.send(()).unwrap();
    let w1 = next_served(&mut waiting, "w1");
    assert!(finished.load(Ordering::SeqCst), "the job was cut short");
    assert!(!owners(&m).iter().any(|o| o == "holder0"));
    assert_eq!(w1.submit(|| "w1").unwrap().wait(), Ok("w1"));
    check_counts(&m, max_pools, 1);
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    holders.push(w2);
    finish(prefix, m, max_pools, holders);
}

#[test]
fn run_dropped_while_running_1() {
    run_dropped_while_running("cx-rr1", 1);
}

#[test]
fn run_dropped_while_running_2() {
    run_dropped_while_running("cx-rr2", 2);
}

/// A future does nothing until it is polled: a `run` future dropped before
/// its first poll must not run its job, even on an idle worker.
#[test]
fn run_dropped_before_first_poll_never_runs() {
    let prefix = "cx-rlz";
    let (m, mut holders) = contended(prefix, 1);
    let mut waiting = waiters(&m, &["w1"]);
    let lease = holders.remove(0);
    let ran = flag();
    let ran2 = ran.clone();
    let run = lease.run(move || ran2.store(true, Ordering::SeqCst));
    // One worker, FIFO: once this job is done, any job submitted before it
    // has had its turn.
    assert_eq!(lease.submit(|| "barrier").unwrap().wait(), Ok("barrier"));
    drop(run);
    let ran_unpolled = ran.load(Ordering::SeqCst);
    drop(lease);
    let w1 = next_served(&mut waiting, "w1");
    finish(prefix, m, 1, vec![w1]);
    assert!(
        !ran_unpolled,
        "the job of a `run` future that was never polled ran: `run` submits \
         eagerly instead of on first poll"
    );
}

/// Dropping the lease while a `run` future is queued behind another job:
/// the lease drains, the queued job still runs (it was submitted before the
/// release), and the pool then goes to the next waiter.
#[test]
fn lease_dropped_while_run_queued() {
    let prefix = "cx-lrq";
    let (m, mut holders) = contended(prefix, 1);
    let mut waiting = waiters(&m, &["w1", "w2"]);
    let lease = holders.remove(0);
    let (go, mut blocked) = blocker(&lease);
    let mut queued_run = lease.run(|| "queued");
    assert!(poll_now(&mut queued_run).is_pending());
    drop(lease);
    assert_eq!(pending_jobs(&m, "holder0"), Some(2));
    go.send(()).unwrap();
    assert_eq!(blocked.wait_timeout(PATIENCE), Some(Ok("blocker")));
    assert_eq!(within("the queued job", &mut queued_run), Ok("queued"));
    let w1 = next_served(&mut waiting, "w1");
    drop(w1);
    let w2 = next_served(&mut waiting, "w2");
    finish(prefix, m, 1, vec![w2]);
}

// ----- jobs cancelled by the manager --------------------------------------

/// `stop()` cancels the jobs still queued on a pool (docs/guide.md, "Lifecycle"). Their callers
/// must learn it when the pool is shut down, not only once the job running
/// ahead of them ends (which may be much later).
#[test]
fn stop_cancels_queued_jobs_promptly() {
    let prefix = "cx-sqc";
    let (m, mut holders) = contended(prefix, 1);
    let lease = holders.remove(0);
    let (go, mut blocked) = blocker(&lease);
    let ran = flag();
    let ran2 = ran.clone();
    let mut queued = lease
        .submit(move || ran2.store(true, Ordering::SeqCst))
        .unwrap();
    let m2 = m.clone();
    let stopper = std::thread::spawn(move || m2.stop_blocking());
    eventually("stop has begun", || !m.is_started());
    let early = queued.wait_timeout(PATIENCE / 4);
    go.send(()).unwrap();
    assert_eq!(blocked.wait_timeout(PATIENCE), Some(Ok("blocker")));
    stopper.join().unwrap();
    eventually("threads gone", || threads_named(prefix).is_empty());
    assert!(!ran.load(Ordering::SeqCst), "a job queued at stop ran");
    assert_eq!(
        early,
        Some(Err(Error::Cancelled)),
        "a job queued behind a running job was not cancelled when stop() \
         shut its pool down; its caller waited until the running job ended"
    );
}

/// Revocation at hard expiry shuts the pool down and cancels its queued
/// jobs (docs/guide.md, "Expiry"), promptly, while the job ahead of them still runs.
#[test]
fn revocation_cancels_queued_jobs_promptly() {
    let prefix = "cx-rqc";
    let m = builder(prefix)
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(50))
        .blocking()
        .unwrap();
    let (go, mut blocked) = blocker(&lease);
    let ran = flag();
    let ran2 = ran.clone();
    let mut queued = lease
        .submit(move || ran2.store(true, Ordering::SeqCst))
        .unwrap();
    eventually("the lease is revoked", || {
        lease.ended() == Some(leasepool::LeaseEnd::Expired)
    });
    let early = queued.wait_timeout(PATIENCE / 4);
    go.send(()).unwrap();
    assert_eq!(blocked.wait_timeout(PATIENCE), Some(Ok("blocker")));
    drop(lease);
    // The replacement pool serves the next lease.
    let next = m.acquire().timeout(PATIENCE).blocking().unwrap();
    assert_eq!(next.submit(|| 1).unwrap().wait(), Ok(1));
    finish(prefix, m, 1, vec![next]);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job queued at revocation ran"
    );
    assert_eq!(
        early,
        Some(Err(Error::Cancelled)),
        "a job queued behind a running job was not cancelled when its lease \
         was revoked; its caller waited until the running job ended"
    );
}
