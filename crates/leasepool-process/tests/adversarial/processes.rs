//! Cases 4-6: frozen workers, grandchildren, orphans and stderr.

use std::time::{Duration, Instant};

use leasepool_core::{Error, LeasedExecutorManager};
use leasepool_process::ProcessBackend;

use crate::functions::*;
use crate::support::*;
use crate::{Outcome, PATIENCE};

/// 4. A frozen worker (`SIGSTOP`) does not hold `stop()`: after
///    `shutdown_grace` it is killed and reaped, and its call fails.
pub(crate) fn frozen_worker_is_killed_after_the_grace() -> Outcome {
    let pipes = open_pipes();
    let backend = ProcessBackend::new().shutdown_grace(Duration::from_millis(300));
    let m = started("lpa-frozen", backend, 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let pending = lease.submit_call(sleep_ms, 2_000).unwrap();
    signal(worker, "-STOP")?;
    wait_until("the worker is stopped", || {
        process_state(worker) == Some('T')
    })?;
    drop(lease); // draining: the call is still pending
    let took = Instant::now();
    stop(m)?;
    let took = took.elapsed();
    check!(took < Duration::from_secs(10), "stop() took {took:?}");
    let got = outcome(pending)?;
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("shutdown_grace") && m.contains("300ms")),
        "the frozen worker's call: {got:?}"
    );
    check!(
        reaped(worker),
        "worker {worker} not reaped: {:?}",
        process_state(worker)
    );
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 5. A process a worker started dies with it: at `stop()`, and when a
///    lease's hard expiry kills the workers.
pub(crate) fn grandchildren_do_not_survive() -> Outcome {
    let m = started("lpa-grand", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let grandchild =
        outcome(lease.submit_call(spawn_grandchild, 60).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        grandchild != 0 && !exited(grandchild),
        "the grandchild runs"
    );
    drop(lease);
    stop(m)?;
    wait_until("the grandchild is killed at stop()", || exited(grandchild))?;

    let backend = ProcessBackend::new().kill_on_hard_expiry(true);
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .lease_grace(Duration::ZERO)
        .name_prefix("lpa-grand2")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = m
        .acquire()
        .lease(Duration::from_millis(500))
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())?;
    let grandchild =
        outcome(lease.submit_call(spawn_grandchild, 60).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        grandchild != 0 && !exited(grandchild),
        "the second grandchild runs"
    );
    let got = outcome(lease.submit_call(sleep_ms, 60_000).unwrap())?;
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("hard expiry")),
        "the call killed at hard expiry: {got:?}"
    );
    wait_until("the grandchild is killed at hard expiry", || {
        exited(grandchild)
    })?;
    drop(lease);
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// Set in the environment of the intermediate parent of
/// `orphaned_workers_take_their_grandchildren`.
pub(crate) const ORPHAN_PARENT_ENV: &str = "LPA_ORPHAN_PARENT";

/// The intermediate parent: two workers that each started a grandchild,
/// one then idle and one in a call of a minute; prints the grandchildren's
/// pids and waits to be killed.
pub(crate) fn orphan_parent() -> ! {
    let m = manager("lpa-orphan", ProcessBackend::new(), 2);
    m.start_blocking().expect("start");
    let lease = m.acquire().blocking().expect("a lease");
    // Two overlapping calls land on both workers.
    let a = lease.submit_call(grandchild_after, 300).expect("submit");
    let b = lease.submit_call(grandchild_after, 300).expect("submit");
    let (a, b) = (a.wait().expect("pid"), b.wait().expect("pid"));
    let busy = lease.submit_call(sleep_ms, 60_000).expect("submit");
    println!("{a} {b}");
    std::thread::sleep(PATIENCE);
    drop(busy);
    std::process::exit(3) // not reached: the test kills this process
}

/// 5 (rest). When the parent dies without stopping (killed), its workers
///    exit by themselves and take the processes they started with them.
pub(crate) fn orphaned_workers_take_their_grandchildren() -> Outcome {
    let (mut parent, grandchildren) = start_orphan_parent(ORPHAN_PARENT_ENV)?;
    check!(
        grandchildren.len() == 2 && grandchildren.iter().all(|g| *g != 0 && !exited(*g)),
        "grandchildren: {grandchildren:?}"
    );
    parent.kill().map_err(|e| e.to_string())?;
    let _ = parent.wait();
    wait_until("both grandchildren are killed", || {
        grandchildren.iter().all(|g| exited(*g))
    })
}

/// 6. The stderr forwarder ends by the time `stop()` returns, even when a
///    process that left the worker's group keeps the pipe open.
pub(crate) fn stderr_forwarding_ends_at_stop() -> Outcome {
    use leasepool_process::ProcessLogging;
    for escape in [false, true] {
        let pipes = open_pipes();
        let backend = ProcessBackend::new().logging(ProcessLogging::new().stderr(true));
        let m = started("lpa-err", backend, 1)?;
        let lease = lease_on(&m)?;
        let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
        let ticker = outcome(lease.submit_call(spawn_ticker, escape).unwrap())?
            .map_err(|e| e.to_string())?;
        check!(ticker != 0, "the ticker started");
        wait_until("ticks are forwarded", || ticks_from(worker) >= 2)?;
        drop(lease);
        let result = stop(m);
        let at_stop = ticks_from(worker);
        // Every thread serving the worker closes its pipe before it drops
        // its guard, so all are closed once stop() has returned.
        let open_at_stop = no_pipes_left(&pipes);
        if escape {
            signal(ticker, "-KILL")?;
        }
        result?;
        open_at_stop.map_err(|e| format!("escape={escape}: when stop() returned, {e}"))?;
        if !escape {
            wait_until("the ticker dies with the worker's group", || exited(ticker))?;
        }
        wait_until("the pool's threads are gone", || {
            threads_named("lpa-err").is_empty()
        })?;
        check!(
            ticks_from(worker) == at_stop,
            "escape={escape}: lines forwarded after stop() returned ({at_stop} -> {})",
            ticks_from(worker)
        );
        let left = children_left();
        check!(left.is_empty(), "children left: {left:?}");
    }
    Ok(())
}
