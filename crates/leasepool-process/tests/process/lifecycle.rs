//! Lifecycle: no children or pipes after stop, kill at hard expiry, refused
//! options, orphaned workers, runtimes, busy polling.

use super::*;

pub(crate) fn no_children_after_stop() -> Outcome {
    let pipes_before = open_pipes();
    let m = manager("lp-stop", ProcessBackend::new(), 2, 2);
    m.start_blocking().map_err(|e| e.to_string())?;
    let a = lease_on(&m)?;
    let b = lease_on(&m)?;
    let handles: Vec<_> = [&a, &a, &b, &b]
        .into_iter()
        .map(|lease| lease.submit_call(pid_after, 300).unwrap())
        .collect();
    let mut pids = Vec::new();
    for handle in handles {
        pids.push(wait(handle).map_err(|e| e.to_string())?);
    }
    pids.sort_unstable();
    pids.dedup();
    check!(pids.len() == 4, "expected 4 workers, saw {pids:?}");
    // Calls running at stop finish; a queued one is cancelled.
    let running = [
        a.submit_call(sleep_ms, 200).unwrap(),
        a.submit_call(sleep_ms, 200).unwrap(),
    ];
    let queued = a.submit_call(sleep_ms, 200).unwrap();
    drop((a, b));
    m.stop_blocking();
    for pid in &pids {
        check!(reaped(*pid), "worker {pid} still exists after stop");
    }
    for handle in running {
        let got = wait(handle);
        check!(got == Ok(200), "a running call: {got:?}");
    }
    let got = wait(queued);
    check!(got == Err(Error::Cancelled), "a queued call: {got:?}");
    // Every pipe to the workers is closed again.
    let left: Vec<_> = open_pipes().difference(&pipes_before).cloned().collect();
    check!(left.is_empty(), "pipes left open after stop: {left:?}");
    Ok(())
}

pub(crate) fn kill_on_hard_expiry() -> Outcome {
    let backend = ProcessBackend::new().kill_on_hard_expiry(true);
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .lease_grace(Duration::ZERO)
        .name_prefix("lp-expire")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = m
        .acquire()
        .lease(Duration::from_millis(500))
        .timeout(PATIENCE)
        .blocking()
        .map_err(|e| e.to_string())?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    match wait(lease.submit_call(sleep_ms, 60_000).unwrap()) {
        Err(Error::Broken(reason)) => check!(reason.contains("hard expiry"), "reason: {reason}"),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(
        started.elapsed() < Duration::from_secs(20),
        "not killed promptly"
    );
    wait_until("the killed worker is reaped", || reaped(worker))?;
    drop(lease);
    let fresh = lease_on(&m)?;
    check!(
        wait(fresh.submit_call(add, (1, 2)).unwrap()) == Ok(3),
        "new pool"
    );
    drop(fresh);
    m.stop_blocking();
    Ok(())
}

pub(crate) fn closures_and_bad_options_are_refused() -> Outcome {
    let got = LeasedExecutorManager::builder(ProcessBackend::new().jobs_per_worker(0))
        .max_pools(1)
        .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "jobs_per_worker",
                ..
            })
        ),
        "jobs_per_worker(0): {got:?}"
    );
    let got =
        LeasedExecutorManager::builder(ProcessBackend::new().handshake_timeout(Duration::ZERO))
            .max_pools(1)
            .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "handshake_timeout",
                ..
            })
        ),
        "handshake_timeout(0): {got:?}"
    );
    let got =
        LeasedExecutorManager::builder(ProcessBackend::new().busy_poll(Duration::from_secs(1)))
            .max_pools(1)
            .build();
    check!(
        matches!(
            got,
            Err(Error::InvalidConfig {
                field: "busy_poll",
                ..
            })
        ),
        "busy_poll(1 s): {got:?}"
    );
    // A closure task reaching a process pool (only possible through a
    // type-erased backend) fails clearly.
    let pool = ProcessBackend::new()
        .create_pool(PoolContext::detached(1, 1, "lp-detached"))
        .map_err(|e| e.to_string())?;
    let (task, handle) = Task::new(|| 1 + 1);
    pool.execute(task);
    let got = wait(handle);
    check!(
        matches!(got, Err(Error::UnsupportedBackend(_))),
        "closure: {got:?}"
    );
    let (task, handle) = Task::call(add, (1, 2));
    pool.execute(task);
    check!(wait(handle) == Ok(3), "Task::call on a detached pool");
    let pids = pool.pids();
    pool.shutdown();
    let (task, handle) = Task::call(add, (1, 2));
    pool.execute(task);
    check!(wait(handle) == Err(Error::Cancelled), "call after shutdown");
    wait_until("the detached pool's worker is reaped", || {
        pids.iter().all(|pid| reaped(*pid))
    })?;
    Ok(())
}

/// Set in the environment of the intermediate parent of
/// `orphaned_workers_exit`.
pub(crate) const ORPHAN_PARENT_ENV: &str = "LP_TEST_ORPHAN_PARENT";

/// The intermediate parent: two workers, one busy for a minute and one
/// idle; prints their pids and waits to be killed.
pub(crate) fn orphan_parent() -> ! {
    let m = manager("lp-orphan", ProcessBackend::new(), 1, 2);
    m.start_blocking().expect("start");
    let lease = m.acquire().blocking().expect("a lease");
    // Two overlapping calls land on both workers.
    let a = lease.submit_call(pid_after, 300).expect("submit");
    let b = lease.submit_call(pid_after, 300).expect("submit");
    let (a, b) = (wait(a).expect("pid"), wait(b).expect("pid"));
    let busy = lease.submit_call(sleep_ms, 60_000).expect("submit");
    println!("{a} {b}");
    std::thread::sleep(PATIENCE);
    drop(busy);
    std::process::exit(3) // not reached: the test kills this process
}

pub(crate) fn orphaned_workers_exit() -> Outcome {
    let (mut parent, pids) = start_orphan_parent(ORPHAN_PARENT_ENV)?;
    check!(
        pids.len() == 2 && pids[0] != pids[1],
        "worker pids: {pids:?}"
    );
    check!(
        pids.iter().all(|pid| !exited(*pid)),
        "workers alive before the parent dies"
    );
    parent.kill().map_err(|e| e.to_string())?;
    let _ = parent.wait();
    // The idle worker sees its stdin close; the busy one (in a call of a
    // minute) notices that its parent changed.
    wait_until("both orphaned workers exit", || {
        pids.iter().all(|pid| exited(*pid))
    })
}

/// `call`, `acquire` and `release` awaited under every runtime the crate
/// promises to work with, none of which it depends on.
pub(crate) fn call_under_every_runtime() -> Outcome {
    let m = manager("lp-rt", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let body = |m: LeasedExecutorManager<ProcessBackend>| async move {
        let lease = m.acquire().timeout(PATIENCE).await?;
        let sum = lease.call(add, (40, 2)).await?;
        let text = lease.executor().call(shout, "rt".to_owned()).await?;
        lease.release().await;
        Ok::<_, Error>((sum, text))
    };
    let expected = Ok((42, "RT".to_owned()));
    let tokio_ct = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(body(m.clone()));
    check!(tokio_ct == expected, "tokio current-thread: {tokio_ct:?}");
    let tokio_mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .map_err(|e| e.to_string())?
        .block_on(body(m.clone()));
    check!(tokio_mt == expected, "tokio multi-thread: {tokio_mt:?}");
    let smol = smol::block_on(body(m.clone()));
    check!(smol == expected, "smol: {smol:?}");
    let async_std = async_std::task::block_on(body(m.clone()));
    check!(async_std == expected, "async-std: {async_std:?}");
    let plain = futures_lite::future::block_on(body(m.clone()));
    check!(plain == expected, "futures-lite block_on: {plain:?}");
    m.stop_blocking();
    Ok(())
}

/// Short calls back to back on several pools at once, with and without
/// busy-polling: every result arrives, whoever polls.
pub(crate) fn busy_polling_pools() -> Outcome {
    let polling = manager("lp-poll", ProcessBackend::new(), 2, 1);
    let blocking = manager(
        "lp-nopoll",
        ProcessBackend::new().busy_poll(Duration::ZERO),
        1,
        1,
    );
    polling.start_blocking().map_err(|e| e.to_string())?;
    blocking.start_blocking().map_err(|e| e.to_string())?;
    std::thread::scope(|scope| {
        let mut runs = Vec::new();
        for m in [&polling, &polling, &blocking] {
            runs.push(scope.spawn(move || -> Outcome {
                let lease = lease_on(m)?;
                for i in 0..2_000u64 {
                    check!(
                        wait(lease.submit_call(add, (i, 1)).unwrap()) == Ok(i + 1),
                        "call {i}"
                    );
                }
                Ok(())
            }));
        }
        runs.into_iter()
            .try_for_each(|run| run.join().unwrap_or_else(|_| Err("panicked".into())))
    })?;
    polling.stop_blocking();
    blocking.stop_blocking();
    Ok(())
}
