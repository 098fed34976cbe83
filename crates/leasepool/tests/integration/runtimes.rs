//! One scenario, every way of running it: tokio (current-thread and
//! multi-thread), smol, async-std, `futures_lite::future::block_on`, and
//! plain threads through the blocking API. leasepool depends on no runtime,
//! so its futures must complete (and wake correctly across threads) under
//! each of them.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasepool::{Error, ExecutorLease, LeaseEnd, LeasedExecutorManager};

use crate::common::*;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Starts `task` on the runtime under test at once and returns a future
/// that completes when the task has.
type Spawner = fn(BoxFuture) -> BoxFuture;

/// Waits (from async code, without blocking the executor thread) until
/// `condition` holds, for conditions with no event to wait on.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        futures_lite::future::yield_now().await;
    }
}

fn current_thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

fn assert_consistent(m: &LeasedExecutorManager, max_pools: usize) {
    let s = m.stats();
    assert_eq!(s.available + s.leased, s.total, "{s:?}");
    assert!(s.total <= max_pools, "{s:?}");
    assert_eq!(s.leases.len(), s.leased, "{s:?}");
}

/// The shared scenario: max_pools = 2, two leases, fail-fast, timeout,
/// results and panics, a drained lease handed to a spawned waiter, release
/// by id, stop with a waiter queued, and no thread left behind.
async fn scenario(prefix: &'static str, spawn: Spawner) {
    let m = builder(prefix).max_pools(2).build().unwrap();
    assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
    m.start().await.unwrap();
    m.start().await.unwrap(); // a second start is a no-op
    assert!(m.is_started());

    // Two leases; the second pool is created on demand.
    let a = m.acquire().owner("a").await.unwrap();
    let b = m.acquire().owner("b").timeout(PATIENCE).await.unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!((m.leased_count(), m.total_count()), (2, 2));

    // Both pools leased: fail fast, and time out.
    match m.acquire().wait(false).await {
        Err(Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let asked = Duration::from_millis(30);
    let t0 = Instant::now();
    match m.acquire().owner("impatient").timeout(asked).await {
        Err(Error::Timeout(d)) => assert_eq!(d, asked),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t0.elapsed() >= asked, "timed out early: {:?}", t0.elapsed());
    assert_eq!(m.stats().waiting, 0, "a timed-out waiter stays queued");

    // Results, on the pool's own threads; a panic; the worker lives on.
    assert_eq!(a.run(|| 6 * 7).await, Ok(42));
    let worker = a.run(current_thread_name).await.unwrap();
    assert!(worker.starts_with(&format!("{prefix}-")), "{worker}");
    match b.run(|| -> u32 { panic!("scenario boom") }).await {
        Err(Error::Panicked(msg)) => assert_eq!(msg, "scenario boom"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(b.run(|| 7).await, Ok(7));
    let (x, y) = futures_lite::future::zip(a.run(|| 1u8), b.run(|| 2u8)).await;
    assert_eq!((x, y), (Ok(1), Ok(2)));
    let handle = b.executor().submit(|| "via executor").unwrap();
    assert_eq!(handle.await, Ok("via executor"));

    // A job holds `a`'s pool; a spawned waiter queues for a pool.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let held = a
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "held"
        })
        .unwrap();
    started_rx.await.unwrap();
    assert!(!held.is_finished());

    let (got_tx, got_rx) = oneshot::channel::<(String, String, usize)>();
    let m2 = m.clone();
    let waiter = spawn(Box::pin(async move {
        let lease = m2.acquire().owner("waiter").await.unwrap();
        let name = lease.run(current_thread_name).await.unwrap();
        let sum = lease.run(|| (1..=10).sum::<usize>()).await.unwrap();
        got_tx
            .send((lease.owner().unwrap().to_owned(), name, sum))
            .unwrap();
        lease.release().await;
    }));
    until("the waiter is queued", || m.stats().waiting == 1).await;

    // Releasing `a` while its job runs drains it: the waiter must not get
    // the pool until the job is over.
    a.release().await;
    let s = m.stats();
    assert_eq!((s.leased, s.waiting), (2, 1), "{s:?}");
    let drained = s
        .leases
        .iter()
        .find(|l| l.owner.as_deref() == Some("a"))
        .expect("a is draining");
    assert!(drained.draining && drained.pending_jobs == 1, "{s:?}");
    go_tx.send(()).unwrap();
    assert_eq!(held.await, Ok("held"));
    let (owner, name, sum) = got_rx.await.unwrap();
    assert_eq!(owner, "waiter");
    assert!(name.starts_with(&format!("{prefix}-")), "{name}");
    assert_eq!(sum, 55);
    waiter.await;

    // Release by id through the manager; idempotent.
    let b_id = *b.id();
    m.release(&b_id).await;
    assert_eq!(b.ended(), Some(LeaseEnd::Released));
    match b.run(|| 0).await {
        Err(Error::LeaseExpired {
            id,
            reason: LeaseEnd::Released,
        }) => assert_eq!(id, b_id),
        other => panic!("expected LeaseExpired, got {other:?}"),
    }
    m.release(&b_id).await;
    drop(b);
    until("every lease is back", || m.leased_count() == 0).await;
    assert_consistent(&m, 2);
    assert_eq!(m.stats().waiting, 0);

    // Stop with both pools leased and a waiter queued.
    let c = m.acquire().owner("c").timeout(PATIENCE).await.unwrap();
    let d = m.acquire().owner("d").timeout(PATIENCE).await.unwrap();
    let (late_tx, late_rx) = oneshot::channel::<Result<(), Error>>();
    let m3 = m.clone();
    let late = spawn(Box::pin(async move {
        let outcome = m3.acquire().owner("late").await.map(drop);
        late_tx.send(outcome).unwrap();
    }));
    until("the late waiter is queued", || m.stats().waiting == 1).await;
    m.stop().await;
    assert!(!m.is_started());
    assert_eq!(late_rx.await.unwrap(), Err(Error::ShuttingDown));
    late.await;
    for lease in [&c, &d] {
        assert_eq!(lease.ended(), Some(LeaseEnd::Stopped));
        assert!(matches!(
            lease.run(|| 1).await,
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Stopped,
                ..
            })
        ));
    }
    drop((c, d));
    assert_eq!(m.acquire().await.unwrap_err(), Error::NotStarted);
    assert_eq!((m.total_count(), m.leased_count()), (0, 0));
    until("no thread of the manager is left", || {
        threads_named(prefix).is_empty()
    })
    .await;
}

fn tokio_spawner(task: BoxFuture) -> BoxFuture {
    let handle = tokio::spawn(task);
    Box::pin(async move { handle.await.unwrap() })
}

fn smol_spawner(task: BoxFuture) -> BoxFuture {
    Box::pin(smol::spawn(task))
}

fn async_std_spawner(task: BoxFuture) -> BoxFuture {
    Box::pin(async_std::task::spawn(task))
}

/// No runtime at all: the task runs on its own thread under
/// `futures_lite::future::block_on`; completion comes back through a
/// runtime-free oneshot channel.
fn thread_spawner(task: BoxFuture) -> BoxFuture {
    let (tx, rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        futures_lite::future::block_on(task);
        tx.send(()).unwrap();
    });
    Box::pin(async move { rx.await.expect("the task thread panicked") })
}

#[test]
fn tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario("rt-tcur", tokio_spawner));
}

#[test]
fn tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The scenario itself runs as a spawned task, so it must be Send.
    rt.block_on(async { tokio::spawn(scenario("rt-tmul", tokio_spawner)).await })
        .unwrap();
}

#[test]
fn smol_block_on_and_spawn() {
    smol::block_on(scenario("rt-smol", smol_spawner));
    smol::block_on(smol::spawn(scenario("rt-smo2", smol_spawner)));
}

#[test]
fn async_std_block_on_and_spawn() {
    async_std::task::block_on(scenario("rt-astd", async_std_spawner));
    async_std::task::block_on(async_std::task::spawn(scenario(
        "rt-ast2",
        async_std_spawner,
    )));
}

#[test]
fn futures_lite_block_on() {
    futures_lite::future::block_on(scenario("rt-flit", thread_spawner));
}

/// The same scenario from plain threads: `start_blocking`, `.blocking()`,
/// `JobHandle::wait`/`wait_timeout`, `release_now`, `stop_blocking`.
#[test]
fn plain_threads_blocking() {
    let prefix = "rt-blk";
    let m = builder(prefix).max_pools(2).build().unwrap();
    assert_eq!(m.acquire().blocking().unwrap_err(), Error::NotStarted);
    m.start_blocking().unwrap();
    m.start_blocking().unwrap();
    assert!(m.is_started());

    let a = m.acquire().owner("a").blocking().unwrap();
    let b = m.acquire().owner("b").timeout(PATIENCE).blocking().unwrap();
    assert_eq!((m.leased_count(), m.total_count()), (2, 2));
    match m.acquire().wait(false).blocking() {
        Err(Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let asked = Duration::from_millis(30);
    let t0 = Instant::now();
    match m.acquire().timeout(asked).blocking() {
        Err(Error::Timeout(d)) => assert_eq!(d, asked),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t0.elapsed() >= asked);

    assert_eq!(a.submit(|| 6 * 7).unwrap().wait(), Ok(42));
    let worker = a.submit(current_thread_name).unwrap().wait().unwrap();
    assert!(worker.starts_with(&format!("{prefix}-")), "{worker}");
    match b
        .submit(|| -> u32 { panic!("blocking boom") })
        .unwrap()
        .wait()
    {
        Err(Error::Panicked(msg)) => assert_eq!(msg, "blocking boom"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(b.submit(|| 7).unwrap().wait(), Ok(7));

    // A held job, a waiter thread, draining, hand-off.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let mut held = a
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "held"
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(held.wait_timeout(Duration::from_millis(5)), None);
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || {
        let lease = m2.acquire().owner("waiter").blocking().unwrap();
        let name = lease.submit(current_thread_name).unwrap().wait().unwrap();
        (lease.owner().unwrap().to_owned(), name)
    });
    eventually("the waiter thread is queued", || m.stats().waiting == 1);
    drop(a); // releases; drains while `held` runs
    let s = m.stats();
    assert_eq!((s.leased, s.waiting), (2, 1), "{s:?}");
    go_tx.send(()).unwrap();
    assert_eq!(held.wait_timeout(PATIENCE), Some(Ok("held")));
    let (owner, name) = waiter.join().unwrap();
    assert_eq!(owner, "waiter");
    assert!(name.starts_with(&format!("{prefix}-")), "{name}");

    let b_id = *b.id();
    m.release_now(&b_id);
    assert_eq!(b.ended(), Some(LeaseEnd::Released));
    assert!(matches!(
        b.submit(|| 0),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    m.release_now(&b_id);
    drop(b);
    eventually("every lease is back", || m.leased_count() == 0);
    assert_consistent(&m, 2);

    // Stop with both pools leased and a waiter thread blocked.
    let c = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let d = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let m3 = m.clone();
    let late = std::thread::spawn(move || m3.acquire().owner("late").blocking().map(drop));
    eventually("the late waiter is queued", || m.stats().waiting == 1);
    m.stop_blocking();
    assert_eq!(late.join().unwrap(), Err(Error::ShuttingDown));
    assert_eq!(c.ended(), Some(LeaseEnd::Stopped));
    assert!(matches!(
        d.submit(|| 1),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Stopped,
            ..
        })
    ));
    drop((c, d));
    eventually("no thread of the manager is left", || {
        threads_named(prefix).is_empty()
    });
}

fn assert_send<T: Send>(_: &T) {}

fn assert_spawnable<T: Future + Send + 'static>(_: &T)
where
    T::Output: Send + 'static,
{
}

/// Compile-time only: every future of the API is `Send` (and the ones that
/// own their inputs are `'static`), so it can go to a work-stealing
/// executor.
fn _futures_are_send(m: &LeasedExecutorManager, lease: &ExecutorLease) {
    assert_send(&m.start());
    assert_send(&m.stop());
    assert_send(&m.release(lease.id()));
    assert_spawnable(&m.acquire().owner("x").into_future());
    assert_spawnable(&lease.run(|| 1));
    assert_spawnable(&lease.submit(|| 1).unwrap());
    assert_spawnable(&lease.executor().run(|| 1));
}

#[test]
fn futures_are_send_and_tokio_spawnable() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = builder("rt-send").max_pools(1).build().unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.start().await })
            .await
            .unwrap()
            .unwrap();
        assert!(m.is_started());

        let acquire = m.acquire().owner("send").into_future();
        assert_spawnable(&acquire);
        let lease = tokio::spawn(acquire).await.unwrap().unwrap();
        assert_eq!(lease.owner(), Some("send"));

        let run = lease.run(|| 1 + 1);
        assert_spawnable(&run);
        assert_eq!(tokio::spawn(run).await.unwrap(), Ok(2));

        let handle = lease.submit(|| "handle").unwrap();
        assert_spawnable(&handle);
        assert_eq!(tokio::spawn(handle).await.unwrap(), Ok("handle"));

        // A lease moves into a task and is released there.
        let out = tokio::spawn(async move {
            let out = lease.run(|| 3).await;
            lease.release().await;
            out
        })
        .await
        .unwrap();
        assert_eq!(out, Ok(3));
        assert_eq!(m.leased_count(), 0);

        // A stop future dropped unpolled does nothing.
        let stop = m.stop();
        assert_send(&stop);
        drop(stop);
        assert!(m.is_started());
        let m3 = m.clone();
        tokio::spawn(async move { m3.stop().await }).await.unwrap();
        assert!(!m.is_started());
        until("no thread of the manager is left", || {
            threads_named("rt-send").is_empty()
        })
        .await;
    });
}
