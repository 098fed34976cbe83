//! Calls and crashes: round trips, panics, unknown functions, aborts and
//! kills, initializers, handshakes, recycling.

use super::*;

pub(crate) fn call_round_trip() -> Outcome {
    let m = manager("lp-round", ProcessBackend::new(), 1, 2);
    m.start_blocking().map_err(|e| e.to_string())?;
    check!(
        m.backend_name() == "process",
        "backend name {}",
        m.backend_name()
    );
    let lease = lease_on(&m)?;
    check!(
        wait(lease.submit_call(add, (2, 40)).unwrap()) == Ok(42),
        "add"
    );
    check!(
        wait(lease.submit_call(shout, "héllo".to_owned()).unwrap()) == Ok("HÉLLO".to_owned()),
        "shout"
    );
    let got = wait(
        lease
            .submit_call(stats, (vec![1, -2, 30], Some("x".to_owned())))
            .unwrap(),
    );
    check!(
        got == Ok(Stats {
            count: 3,
            sum: 29,
            label: Some("x".to_owned())
        }),
        "stats: {got:?}"
    );
    // Many calls at once, spread over both workers.
    let handles: Vec<_> = (0..50u64)
        .map(|i| lease.submit_call(add, (i, i)).unwrap())
        .collect();
    for (i, handle) in (0..50u64).zip(handles) {
        check!(wait(handle) == Ok(2 * i), "batch call {i}");
    }
    // Large arguments and results (written by a writer thread, not
    // inline), interleaved with small ones on both workers.
    let big = "x".repeat(1 << 20);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let text = if i % 2 == 0 {
                big.clone()
            } else {
                "s".to_owned()
            };
            lease.submit_call(shout, text).unwrap()
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let expected = if i % 2 == 0 {
            big.to_uppercase()
        } else {
            "S".to_owned()
        };
        check!(wait(handle) == Ok(expected), "large/small call {i}");
    }
    // Through the executor proxy and the `call` future.
    let executor = lease.executor();
    let got = futures_lite::future::block_on(executor.call(add, (20, 22)));
    check!(got == Ok(42), "executor().call: {got:?}");
    let got = futures_lite::future::block_on(lease.call(shout, "a".to_owned()));
    check!(got == Ok("A".to_owned()), "lease.call: {got:?}");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

pub(crate) fn panic_and_unknown_function() -> Outcome {
    let m = manager("lp-panic", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let before = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let got = wait(lease.submit_call(boom, 7).unwrap());
    check!(
        got == Err(Error::Panicked("boom 7".to_owned())),
        "boom: {got:?}"
    );
    let after = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    check!(
        before == after,
        "the worker was replaced after a panic: {before} -> {after}"
    );
    match wait(lease.submit_call(not_registered, 1).unwrap()) {
        Err(Error::UnknownFunction(name)) => {
            check!(name == function_name(not_registered), "unknown name {name}")
        }
        other => return Err(format!("expected UnknownFunction, got {other:?}")),
    }
    check!(
        wait(lease.submit_call(add, (1, 1)).unwrap()) == Ok(2),
        "serves on"
    );
    check!(
        lease.ended().is_none(),
        "the lease ended: {:?}",
        lease.ended()
    );
    drop(lease);
    m.stop_blocking();
    Ok(())
}

pub(crate) fn abort_breaks_only_its_pool() -> Outcome {
    let m = manager("lp-abort", ProcessBackend::new(), 2, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let doomed = lease_on(&m)?;
    let other = lease_on(&m)?;
    let started = Instant::now();
    let queued = doomed.submit_call(add, (1, 2)); // may run first, or be failed
    match wait(doomed.submit_call(abort_now, ()).unwrap()) {
        Err(Error::Broken(reason)) => {
            check!(reason.contains("exited"), "reason: {reason}");
        }
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(started.elapsed() < PATIENCE, "slow");
    if let Ok(handle) = queued {
        let _ = wait(handle);
    }
    wait_until("the doomed lease ends", || doomed.ended().is_some())?;
    check!(
        doomed.ended() == Some(LeaseEnd::Broken),
        "ended: {:?}",
        doomed.ended()
    );
    check!(
        doomed.submit_call(add, (1, 1)).is_err(),
        "submit after broken"
    );
    check!(
        wait(other.submit_call(add, (3, 4)).unwrap()) == Ok(7),
        "other pool"
    );
    drop(doomed);
    let fresh = lease_on(&m)?;
    check!(
        wait(fresh.submit_call(add, (5, 6)).unwrap()) == Ok(11),
        "replacement pool"
    );
    check!(
        wait(other.submit_call(add, (3, 5)).unwrap()) == Ok(8),
        "other pool again"
    );
    drop((fresh, other));
    m.stop_blocking();
    Ok(())
}

pub(crate) fn sigkill_mid_job() -> Outcome {
    let m = manager("lp-kill", ProcessBackend::new(), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    let job = lease.submit_call(sleep_ms, 60_000).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    check!(status.success(), "kill -9 {worker}: {status}");
    match wait(job) {
        Err(Error::Broken(reason)) => check!(
            reason.contains(&worker.to_string()) && reason.contains("SIGKILL"),
            "reason: {reason}"
        ),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    wait_until("the lease ends", || lease.ended() == Some(LeaseEnd::Broken))?;
    check!(reaped(worker), "worker {worker} not reaped");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

pub(crate) fn bad_initializer_breaks_the_pool() -> Outcome {
    let m = manager(
        "lp-init",
        ProcessBackend::new().env("LP_TEST_FAIL_INIT", "yes"),
        1,
        2,
    );
    match m.start_blocking() {
        Err(Error::Broken(reason)) => check!(
            reason.contains("initializer refused: LP_TEST_FAIL_INIT=yes"),
            "reason: {reason}"
        ),
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    check!(!m.is_started(), "started anyway");
    m.stop_blocking();
    Ok(())
}

pub(crate) fn different_registry_is_refused() -> Outcome {
    let m = manager(
        "lp-fprint",
        ProcessBackend::new().env("LP_TEST_EXTRA", "1"),
        1,
        1,
    );
    match m.start_blocking() {
        Err(Error::Broken(reason)) => {
            check!(reason.contains("different registry"), "reason: {reason}")
        }
        other => return Err(format!("expected Broken, got {other:?}")),
    }
    m.stop_blocking();
    Ok(())
}

pub(crate) fn not_a_worker_fails_fast() -> Outcome {
    for (program, args) in [("/bin/true", vec![]), ("sleep", vec!["100"])] {
        let backend = ProcessBackend::new()
            .worker_command(program, args)
            .handshake_timeout(Duration::from_secs(1));
        let m = manager("lp-notworker", backend, 1, 2);
        let started = Instant::now();
        match m.start_blocking() {
            Err(Error::Broken(reason)) => check!(
                reason.contains("is not a leasepool worker")
                    && reason.contains("leasepool::process::init"),
                "{program}: {reason}"
            ),
            other => return Err(format!("{program}: expected Broken, got {other:?}")),
        }
        check!(
            started.elapsed() < Duration::from_secs(10),
            "{program}: too slow"
        );
        m.stop_blocking();
    }
    Ok(())
}

pub(crate) fn recycling_after_n_jobs() -> Outcome {
    let m = manager("lp-recycle", ProcessBackend::new().jobs_per_worker(3), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    // Submitted at once: the queue outlives each worker's retirement.
    let handles: Vec<_> = (0..7)
        .map(|_| lease.submit_call(pid, ()).unwrap())
        .collect();
    let mut pids = Vec::new();
    for handle in handles {
        pids.push(wait(handle).map_err(|e| format!("a call failed: {e}"))?);
    }
    check!(
        pids[0] == pids[1] && pids[1] == pids[2] && pids[2] != pids[3],
        "pids {pids:?}"
    );
    check!(pids[3] == pids[5] && pids[5] != pids[6], "pids {pids:?}");
    check!(lease.ended().is_none(), "lease ended: {:?}", lease.ended());
    wait_until("retired workers are reaped", || {
        reaped(pids[0]) && reaped(pids[3])
    })?;
    drop(lease);
    m.stop_blocking();
    check!(reaped(pids[6]), "last worker {} left behind", pids[6]);
    Ok(())
}
