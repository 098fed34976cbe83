//! Case 7: the resource controls and the handshake's type check.

use std::time::{Duration, Instant};

use leasepool_core::{Error, LeasedExecutorManager};
use leasepool_process::ProcessBackend;
use serde::Serialize;

use crate::Outcome;
use crate::functions::*;
use crate::support::*;

/// 7c. A call over `call_timeout` has its worker killed and fails with
///     `Error::CallTimedOut` naming the limit; the pool replaces the worker and
///     the lease serves on (a call queued behind it runs on the new one).
pub(crate) fn call_timeout_kills_and_replaces_the_worker() -> Outcome {
    let pipes = open_pipes();
    let backend = ProcessBackend::new().call_timeout(Duration::from_millis(300));
    let m = started("lpa-limit", backend, 1)?;
    let lease = lease_on(&m)?;
    let first = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let took = Instant::now();
    let slow = lease.submit_call(sleep_ms, 10_000).unwrap();
    let queued = lease.submit_call(add, (1, 2)).unwrap();
    let got = outcome(slow)?;
    check!(
        matches!(&got, Err(Error::CallTimedOut { function, limit }) if function.contains("sleep_ms") && *limit == Duration::from_millis(300))
            && got
                .as_ref()
                .is_err_and(|e| e.to_string().contains("call_timeout")),
        "the slow call: {got:?}"
    );
    check!(
        took.elapsed() < Duration::from_secs(5),
        "killed late: {:?}",
        took.elapsed()
    );
    check!(outcome(queued)? == Ok(3), "the call queued behind it");
    wait_until("the killed worker is reaped", || reaped(first))?;
    let second = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(second != first, "the worker was not replaced");
    // A call within the limit is unaffected.
    check!(
        outcome(lease.submit_call(sleep_ms, 50).unwrap())? == Ok(second),
        "a short call"
    );
    drop(lease);
    stop(m)?;
    check!(reaped(second), "worker {second} not reaped");
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 7a. A worker is recycled once its resident memory reaches
///     `max_memory_per_worker`, and once older than `max_worker_age`; no
///     call fails because of it.
pub(crate) fn workers_recycle_by_memory_and_age() -> Outcome {
    let backend = ProcessBackend::new().max_memory_per_worker(64 << 20);
    let m = started("lpa-rss", backend, 1)?;
    let lease = lease_on(&m)?;
    let first = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let again = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        first == again,
        "recycled below the memory bound ({first} -> {again})"
    );
    let hogged = outcome(lease.submit_call(hog, 96).unwrap())?.map_err(|e| e.to_string())?;
    check!(hogged == first, "the hog ran elsewhere");
    let fresh = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(fresh != first, "not recycled above the memory bound");
    wait_until("the recycled worker is reaped", || reaped(first))?;
    drop(lease);
    stop(m)?;

    let backend = ProcessBackend::new().max_worker_age(Duration::from_secs(1));
    let m = started("lpa-age", backend, 1)?;
    let lease = lease_on(&m)?;
    let old = outcome(lease.submit_call(sleep_ms, 1_100).unwrap())?.map_err(|e| e.to_string())?;
    let young = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(young != old, "not recycled past max_worker_age");
    wait_until("the old worker is reaped", || reaped(old))?;
    drop(lease);
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// 7b. `memory_limit` is applied by each worker to itself: its address
///     space limit is set, and a larger allocation fails in the worker.
pub(crate) fn memory_limit_applies_in_the_worker() -> Outcome {
    let limit = 512u64 << 20;
    let m = started("lpa-rlimit", ProcessBackend::new().memory_limit(limit), 1)?;
    let lease = lease_on(&m)?;
    let got = outcome(lease.submit_call(address_space_limit, ()).unwrap())?;
    check!(
        got == Ok(Some(limit)),
        "the worker's address space limit: {got:?}"
    );
    let got = outcome(lease.submit_call(try_alloc, 1024).unwrap())?;
    check!(got == Ok(false), "1 GiB under a 512 MiB limit: {got:?}");
    let got = outcome(lease.submit_call(try_alloc, 16).unwrap())?;
    check!(got == Ok(true), "16 MiB under a 512 MiB limit: {got:?}");
    drop(lease);
    stop_clean(m)?;
    // The parent itself is not limited.
    check!(
        address_space_limit(()) != Some(limit),
        "the parent was limited"
    );
    Ok(())
}

/// The argument given to this binary to run it as [`fake_worker`].
pub(crate) const FAKE_WORKER_ARG: &str = "--fake-worker-with-changed-types";

/// A worker "built separately" whose `add` takes `(u32, u32)`: it answers
/// the handshake as a leasepool worker of this protocol version would (the
/// frame is spelled out here, mirroring `protocol.rs`), then waits for its
/// stdin to close.
pub(crate) fn fake_worker() -> ! {
    use std::io::{Read, Write};
    #[derive(Serialize)]
    enum FromWorker {
        Hello {
            protocol: u32,
            token: String,
            functions: Vec<(String, String, String)>,
            init_error: Option<String>,
        },
    }
    let token = std::env::var("LEASEPOOL_PROCESS_WORKER").unwrap_or_default();
    let hello = FromWorker::Hello {
        protocol: 2,
        token,
        functions: vec![(
            leasepool_core::function_name(add).to_owned(),
            std::any::type_name::<(u32, u32)>().to_owned(),
            std::any::type_name::<u64>().to_owned(),
        )],
        init_error: None,
    };
    let payload = postcard::to_stdvec(&hello).expect("encodable");
    let mut out = std::io::stdout().lock();
    let len = u32::try_from(payload.len()).expect("small");
    let _ = out.write_all(&len.to_le_bytes());
    let _ = out.write_all(&payload);
    let _ = out.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0)
}

/// 7d. A worker whose function takes another argument type than the
///     parent's is refused at the handshake, with a message that says
///     which function and which types.
pub(crate) fn changed_argument_type_is_refused_at_handshake() -> Outcome {
    let program = std::env::current_exe().map_err(|e| e.to_string())?;
    let backend = ProcessBackend::new().worker_command(program, [FAKE_WORKER_ARG]);
    let m = manager("lpa-types", backend, 1);
    let got = m.start_blocking();
    let expected = format!(
        "{} takes (u64, u64) and returns u64 here, but takes (u32, u32) and returns u64 \
         in the worker",
        leasepool_core::function_name(add)
    );
    check!(
        matches!(&got, Err(Error::Broken(m)) if m.contains("different registry") && m.contains(&expected)),
        "a worker with a changed argument type: {got:?}"
    );
    stop(m)?;
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    Ok(())
}

/// Every new option refuses values it cannot honour.
pub(crate) fn bad_limits_are_invalid_config() -> Outcome {
    let cases: Vec<(&str, ProcessBackend)> = vec![
        (
            "call_timeout",
            ProcessBackend::new().call_timeout(Duration::ZERO),
        ),
        (
            "call_timeout",
            ProcessBackend::new().call_timeout(Duration::MAX),
        ),
        (
            "shutdown_grace",
            ProcessBackend::new().shutdown_grace(Duration::MAX),
        ),
        (
            "max_worker_age",
            ProcessBackend::new().max_worker_age(Duration::ZERO),
        ),
        (
            "max_memory_per_worker",
            ProcessBackend::new().max_memory_per_worker(0),
        ),
        ("memory_limit", ProcessBackend::new().memory_limit(0)),
    ];
    for (field, backend) in cases {
        let got = LeasedExecutorManager::builder(backend).max_pools(1).build();
        check!(
            matches!(&got, Err(Error::InvalidConfig { field: f, .. }) if *f == field),
            "{field}: {:?}",
            got.err()
        );
    }
    Ok(())
}
