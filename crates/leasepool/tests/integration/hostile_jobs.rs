//! Hostile user code: a panic payload, a result or a closure's captured
//! state that panics when the library drops it, and grinder items that stop
//! their own grinder. Whatever the job does, it gets exactly one outcome, no
//! worker dies, the pool is not broken (the next job runs on the same
//! worker thread of the same pool), on the thread and rayon backends.
//!
//! Every wait is bounded by `PATIENCE`: a missing outcome fails the test
//! instead of hanging it.

use std::panic::panic_any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use leasepool::{
    Error, ExecutorBackend, JobHandle, LeasedExecutorManager, LocalBackend, StopMode,
    ThreadBackend, WorkGrinder,
};

use crate::common::*;
use crate::stats_logs::{log_mark, logs_since};

/// What `Error::Panicked` says for a payload that is not a string.
const NON_STRING: &str = "a panic with a non-string payload";

/// Panics when dropped, after counting the drop. (Never while the thread
/// is already unwinding: that would abort the test binary.)
struct Bomb {
    drops: Arc<AtomicUsize>,
}

impl Bomb {
    fn new(drops: &Arc<AtomicUsize>) -> Self {
        Bomb {
            drops: drops.clone(),
        }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("hostile: a Drop that panics");
        }
    }
}

fn drops() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(drops: &AtomicUsize) -> usize {
    drops.load(Ordering::SeqCst)
}

fn thread_manager(prefix: &str) -> LeasedExecutorManager<ThreadBackend> {
    let m = builder(prefix).max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    m
}

#[cfg(feature = "rayon")]
fn rayon_manager(prefix: &str) -> LeasedExecutorManager<leasepool::RayonBackend> {
    let m = LeasedExecutorManager::builder(leasepool::RayonBackend::new())
        .name_prefix(prefix)
        .workers_per_pool(1)
        .max_pools(1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    m
}

/// Runs `$test` once per backend, each in a module named after it.
macro_rules! on_every_backend {
    ($test:ident, $prefix:literal) => {
        mod $test {
            #[test]
            fn thread() {
                super::$test(super::thread_manager(concat!($prefix, "t")));
            }

            #[cfg(feature = "rayon")]
            #[test]
            fn rayon() {
                super::$test(super::rayon_manager(concat!($prefix, "r")));
            }
        }
    };
}

fn worker_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

/// The job's outcome, or a test failure if it has none within `PATIENCE`.
fn outcome<T>(mut handle: JobHandle<T>) -> Result<T, Error> {
    handle
        .wait_timeout(PATIENCE)
        .expect("the job got no outcome")
}

/// The name of the one worker of the manager's one pool.
fn the_worker<B: LocalBackend>(m: &LeasedExecutorManager<B>) -> String {
    let lease = m.acquire().blocking().unwrap();
    outcome(lease.submit(worker_name).unwrap()).unwrap()
}

/// The pool's one worker, and a mark in the captured logs, taken before
/// the hostile part of a test.
struct Watch {
    worker: String,
    mark: usize,
}

impl Watch {
    fn new<B: LocalBackend>(m: &LeasedExecutorManager<B>) -> Self {
        Watch {
            worker: the_worker(m),
            mark: log_mark(),
        }
    }
}

/// The pool is still the healthy one it was: not retired (a replacement
/// would have a new name), its worker alive, the next job runs, and no
/// panic escaped a job on its worker (rayon would survive one, and log it).
fn assert_same_healthy_pool<B: LocalBackend>(m: &LeasedExecutorManager<B>, watch: &Watch) {
    eventually("the lease to be released", || m.leased_count() == 0);
    assert_eq!(m.total_count(), 1);
    assert_eq!(the_worker(m), watch.worker, "the pool was replaced");
    assert_eq!(m.total_count(), 1);
    let escaped: Vec<_> = logs_since(watch.mark)
        .into_iter()
        .filter(|r| r.thread.as_deref() == Some(&watch.worker) && r.message.contains("escaped"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
}

// ---- jobs on a lease ----

fn a_payload_that_panics_on_drop_still_gives_panicked<B: LocalBackend>(
    m: LeasedExecutorManager<B>,
) {
    let worker = Watch::new(&m);
    let lease = m.acquire().blocking().unwrap();
    let dropped = drops();
    let payload = Bomb::new(&dropped);
    let job = lease.submit(move || -> u32 { panic_any(payload) }).unwrap();
    assert_eq!(outcome(job), Err(Error::Panicked(NON_STRING.to_owned())));
    assert_eq!(count(&dropped), 1, "the payload is dropped exactly once");
    assert_eq!(lease.ended(), None);
    assert_eq!(outcome(lease.submit(|| 7).unwrap()), Ok(7));
    drop(lease);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(a_payload_that_panics_on_drop_still_gives_panicked, "hj1");

fn a_result_that_panics_on_drop_leaves_the_worker_alive<B: LocalBackend>(
    m: LeasedExecutorManager<B>,
) {
    let worker = Watch::new(&m);
    let lease = m.acquire().blocking().unwrap();
    let dropped = drops();
    let result = Bomb::new(&dropped);
    let (go, gate) = mpsc::channel::<()>();
    let job = lease
        .submit(move || {
            gate.recv().unwrap();
            result
        })
        .unwrap();
    // The handle goes first: the library drops the result.
    drop(job);
    go.send(()).unwrap();
    eventually("the library to drop the result", || count(&dropped) == 1);
    assert_eq!(
        outcome(lease.submit(worker_name).unwrap()),
        Ok(worker.worker.clone())
    );
    assert_eq!(lease.ended(), None);
    drop(lease);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(a_result_that_panics_on_drop_leaves_the_worker_alive, "hj2");

fn a_cancelled_closure_whose_state_panics_on_drop<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    let worker = Watch::new(&m);
    let lease = m.acquire().blocking().unwrap();
    let (go, gate) = mpsc::channel::<()>();
    let blocker = lease.submit(move || gate.recv().unwrap()).unwrap();
    let dropped = drops();
    let state = Bomb::new(&dropped);
    let hostile = lease
        .submit(move || {
            let _state = &state;
            1
        })
        .unwrap();
    assert!(hostile.cancel());
    assert_eq!(outcome(hostile), Err(Error::Cancelled));
    go.send(()).unwrap();
    assert_eq!(outcome(blocker), Ok(()));
    // The worker finds the cancelled task and drops its closure.
    eventually("the library to drop the closure", || count(&dropped) == 1);
    assert_eq!(
        outcome(lease.submit(worker_name).unwrap()),
        Ok(worker.worker.clone())
    );
    assert_eq!(lease.ended(), None);
    drop(lease);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(a_cancelled_closure_whose_state_panics_on_drop, "hj3");

fn a_queued_closure_dropped_by_stop_panics_on_drop<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    let lease = m.acquire().blocking().unwrap();
    let (go, gate) = mpsc::channel::<()>();
    let (running, started) = mpsc::channel::<()>();
    let blocker = lease
        .submit(move || {
            running.send(()).unwrap();
            gate.recv().unwrap();
        })
        .unwrap();
    let dropped = drops();
    let state = Bomb::new(&dropped);
    let hostile = lease
        .submit(move || {
            let _state = &state;
            1
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    // stop() shuts the pool down: the queued job is cancelled and its
    // closure dropped by the library, while the blocker still runs.
    let stopper = {
        let m = m.clone();
        std::thread::spawn(move || m.stop_blocking())
    };
    assert_eq!(outcome(hostile), Err(Error::Cancelled));
    assert_eq!(count(&dropped), 1);
    go.send(()).unwrap();
    assert_eq!(outcome(blocker), Ok(()));
    assert!(stopper.join().is_ok(), "stop() panicked");
    // A stopped manager starts again and runs jobs.
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(outcome(lease.submit(|| 3).unwrap()), Ok(3));
    drop(lease);
    m.stop_blocking();
}
on_every_backend!(a_queued_closure_dropped_by_stop_panics_on_drop, "hj4");

/// The `call` form's hostile value: an argument or result that panics
/// when dropped (the counter and the gate stay in this process).
#[derive(serde::Serialize, serde::Deserialize)]
struct CallBomb {
    #[serde(skip)]
    drops: Arc<AtomicUsize>,
    #[serde(skip)]
    gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
}

impl Drop for CallBomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("hostile: a Drop that panics");
        }
    }
}

/// Waits for the argument's gate, if any, and hands the argument back.
fn hand_back(bomb: CallBomb) -> CallBomb {
    if let Some(gate) = &bomb.gate {
        gate.lock().unwrap().recv().unwrap();
    }
    bomb
}

fn a_call_whose_argument_and_result_panic_on_drop<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    let worker = Watch::new(&m);
    let lease = m.acquire().blocking().unwrap();
    // A result the library drops (its handle went first).
    let dropped = drops();
    let (go, gate) = mpsc::channel::<()>();
    let argument = CallBomb {
        drops: dropped.clone(),
        gate: Some(Arc::new(Mutex::new(gate))),
    };
    drop(lease.submit_call(hand_back, argument).unwrap());
    go.send(()).unwrap();
    eventually("the library to drop the result", || count(&dropped) == 1);
    // An argument the library drops (its job was cancelled while queued).
    let (go, gate) = mpsc::channel::<()>();
    let blocker = lease.submit(move || gate.recv().unwrap()).unwrap();
    let dropped = drops();
    let argument = CallBomb {
        drops: dropped.clone(),
        gate: None,
    };
    let cancelled = lease.submit_call(hand_back, argument).unwrap();
    assert!(cancelled.cancel());
    assert_eq!(outcome(cancelled).err(), Some(Error::Cancelled));
    go.send(()).unwrap();
    assert_eq!(outcome(blocker), Ok(()));
    eventually("the library to drop the argument", || count(&dropped) == 1);
    assert_eq!(lease.ended(), None);
    drop(lease);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(a_call_whose_argument_and_result_panic_on_drop, "hjB");

// ---- grinder items ----

fn grinder<B: ExecutorBackend>(m: &LeasedExecutorManager<B>, threshold: usize) -> WorkGrinder<B> {
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(threshold)
        .max_wait(Duration::from_secs(3600))
        .owner_prefix("hostile")
        .build()
        .unwrap();
    g.start_blocking().unwrap();
    g
}

fn a_grinder_item_with_a_hostile_payload_does_not_cancel_the_rest<B: LocalBackend>(
    m: LeasedExecutorManager<B>,
) {
    let worker = Watch::new(&m);
    let g = grinder(&m, 3);
    let dropped = drops();
    let payload = Bomb::new(&dropped);
    let a = g.enqueue(move || -> u32 { panic_any(payload) }).unwrap();
    let b = g.enqueue(|| 2).unwrap();
    let c = g.enqueue(|| 3).unwrap();
    assert_eq!(outcome(a), Err(Error::Panicked(NON_STRING.to_owned())));
    assert_eq!(outcome(b), Ok(2));
    assert_eq!(outcome(c), Ok(3));
    assert_eq!(count(&dropped), 1);
    g.stop_blocking(StopMode::Drain);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(
    a_grinder_item_with_a_hostile_payload_does_not_cancel_the_rest,
    "hj5"
);

fn a_grinder_item_whose_dropped_result_panics_does_not_cancel_the_rest<B: LocalBackend>(
    m: LeasedExecutorManager<B>,
) {
    let worker = Watch::new(&m);
    let g = grinder(&m, 3);
    let dropped = drops();
    let result = Bomb::new(&dropped);
    // Detached before its batch starts: the library drops the result.
    drop(g.enqueue(move || result).unwrap());
    let b = g.enqueue(|| 2).unwrap();
    let c = g.enqueue(|| 3).unwrap();
    assert_eq!(outcome(b), Ok(2));
    assert_eq!(outcome(c), Ok(3));
    eventually("the library to drop the result", || count(&dropped) == 1);
    g.stop_blocking(StopMode::Drain);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(
    a_grinder_item_whose_dropped_result_panics_does_not_cancel_the_rest,
    "hj6"
);

fn cancelled_grinder_items_whose_state_panics_on_drop<B: LocalBackend>(
    m: LeasedExecutorManager<B>,
) {
    let worker = Watch::new(&m);
    let g = grinder(&m, 100);
    let dropped = drops();
    let (one, two) = (Bomb::new(&dropped), Bomb::new(&dropped));
    let by_handle = g
        .enqueue(move || {
            let _state = &one;
        })
        .unwrap();
    let by_stop = g
        .enqueue(move || {
            let _state = &two;
        })
        .unwrap();
    // Cancelling a pending item drops it on this thread, inside the
    // library: neither call may panic.
    assert!(by_handle.cancel());
    assert_eq!(outcome(by_handle), Err(Error::Cancelled));
    assert_eq!(count(&dropped), 1);
    assert_eq!(g.stats().pending, 1);
    g.stop_blocking(StopMode::Cancel);
    assert_eq!(outcome(by_stop), Err(Error::Cancelled));
    assert_eq!(count(&dropped), 2);
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}
on_every_backend!(cancelled_grinder_items_whose_state_panics_on_drop, "hj7");

// ---- stopping a grinder ----

fn stop_from_inside_an_item<B: LocalBackend>(m: LeasedExecutorManager<B>, mode: StopMode) {
    let worker = Watch::new(&m);
    let g = grinder(&m, 2);
    let inside = g.clone();
    let stopper = g
        .enqueue(move || {
            inside.stop_blocking(mode);
            "stopped from inside"
        })
        .unwrap();
    // Same batch, behind the stopper on the pool's one worker.
    let next = g.enqueue(|| 2).unwrap();
    assert_eq!(outcome(stopper), Ok("stopped from inside"));
    let expected = match mode {
        StopMode::Drain => Ok(2),
        StopMode::Cancel => Err(Error::Cancelled),
    };
    assert_eq!(outcome(next), expected);
    eventually("the grinder to stop", || !g.stats().started);
    assert!(matches!(g.enqueue(|| 0), Err(Error::NotStarted)));
    assert_same_healthy_pool(&m, &worker);
    m.stop_blocking();
}

fn drain_stop_from_inside_an_item_does_not_hang<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    stop_from_inside_an_item(m, StopMode::Drain);
}
on_every_backend!(drain_stop_from_inside_an_item_does_not_hang, "hj8");

fn cancel_stop_from_inside_an_item_does_not_hang<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    stop_from_inside_an_item(m, StopMode::Cancel);
}
on_every_backend!(cancel_stop_from_inside_an_item_does_not_hang, "hj9");

fn cancel_stop_does_not_wait_for_a_running_item<B: LocalBackend>(m: LeasedExecutorManager<B>) {
    let worker = Watch::new(&m);
    let g = grinder(&m, 3);
    let (go, gate) = mpsc::channel::<()>();
    let (running, started) = mpsc::channel::<()>();
    let first = g
        .enqueue(move || {
            running.send(()).unwrap();
            gate.recv().unwrap();
            1
        })
        .unwrap();
    let second = g.enqueue(|| 2).unwrap();
    let third = g.enqueue(|| 3).unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    // The first item runs, the other two wait behind it on the one worker.
    let (stopped, returned) = mpsc::channel::<()>();
    let stopping = g.clone();
    std::thread::spawn(move || {
        stopping.stop_blocking(StopMode::Cancel);
        let _ = stopped.send(());
    });
    let result = returned.recv_timeout(PATIENCE);
    if result.is_err() {
        let _ = go.send(());
        panic!("stop(Cancel) waited for the running item");
    }
    assert!(!g.stats().started);
    // Items that had not started are cancelled at once...
    assert_eq!(outcome(second), Err(Error::Cancelled));
    assert_eq!(outcome(third), Err(Error::Cancelled));
    // ...the running one delivers its own outcome when it ends.
    go.send(()).unwrap();
    assert_eq!(outcome(first), Ok(1));
    assert_same_healthy_pool(&m, &worker);
    // A stopped grinder starts again.
    g.start_blocking().unwrap();
    let again: Vec<_> = (0..3).map(|i| g.enqueue(move || i).unwrap()).collect();
    let results: Vec<_> = again.into_iter().map(outcome).collect();
    assert_eq!(results, vec![Ok(0), Ok(1), Ok(2)]);
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}
on_every_backend!(cancel_stop_does_not_wait_for_a_running_item, "hjA");

// ---- rayon's own handlers ----

/// A panic in a rayon start handler reaches rayon's panic handler, and
/// rayon aborts the process if that handler unwinds: the payload (which
/// panics when dropped) must be dropped safely there.
#[cfg(feature = "rayon")]
#[test]
fn a_rayon_start_handler_panicking_with_a_hostile_payload() {
    let dropped = drops();
    let in_handler = dropped.clone();
    let backend =
        leasepool::RayonBackend::new().start_handler(move |_| panic_any(Bomb::new(&in_handler)));
    let m = LeasedExecutorManager::builder(backend)
        .name_prefix("hjC")
        .workers_per_pool(2)
        .max_pools(1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(outcome(lease.submit(|| 5).unwrap()), Ok(5));
    eventually("both payloads dropped", || count(&dropped) == 2);
    drop(lease);
    m.stop_blocking();
}
