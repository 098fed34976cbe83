//! Cases 1-3: hostile `Serialize`/`Deserialize` impls and oversized
//! results.

use std::time::Duration;

use leasepool_core::{Error, StopMode, WorkGrinder};
use leasepool_process::ProcessBackend;

use crate::Outcome;
use crate::functions::*;
use crate::support::*;

// ---------------------------------------------------------------- scenarios

/// 1. Panicking `Deserialize`/`Serialize` impls on either side fail their
///    own call with `Error::Serialization`; the same worker serves on and
///    is reaped at stop.
pub(crate) fn hostile_serde_impls_fail_only_their_call() -> Outcome {
    let pipes = open_pipes();
    let m = started("lpa-serde", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;

    // The result's Deserialize panics in the parent, on the reader thread.
    let got = outcome(lease.submit_call(returns_hostile_nested, 5).unwrap())?;
    check!(
        is_serialization(
            &got,
            &["returns_hostile_nested", "panicked", "hostile Deserialize"]
        ),
        "a result whose Deserialize panics: {got:?}"
    );
    // The argument's Deserialize panics in the worker.
    let got = outcome(
        lease
            .submit_call(takes_hostile, PanicsInVisitor(3))
            .unwrap(),
    )?;
    check!(
        is_serialization(&got, &["takes_hostile", "panicked", "hostile Deserialize"]),
        "an argument whose Deserialize panics in the worker: {got:?}"
    );
    // The result's Serialize panics in the worker.
    let got = outcome(lease.submit_call(returns_unencodable, 3).unwrap())?;
    check!(
        is_serialization(
            &got,
            &["returns_unencodable", "panicked", "hostile Serialize"]
        ),
        "a result whose Serialize panics in the worker: {got:?}"
    );
    // The argument's Serialize panics in the parent, in execute.
    let got = outcome(
        lease
            .submit_call(takes_unencodable, PanicsOnEncode(1))
            .unwrap(),
    )?;
    check!(
        is_serialization(
            &got,
            &["takes_unencodable", "panicked", "hostile Serialize"]
        ),
        "an argument whose Serialize panics in the parent: {got:?}"
    );
    // The same worker is still idle and serving: nothing hangs.
    for i in 0..3 {
        let got = outcome(lease.submit_call(add, (i, 1)).unwrap())?;
        check!(got == Ok(i + 1), "call {i} after the hostile ones: {got:?}");
    }
    let same = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(
        same == worker,
        "the worker was replaced ({worker} -> {same})"
    );
    drop(lease);
    stop(m)?;
    check!(
        reaped(worker),
        "worker {worker} not reaped after stop ({:?})",
        process_state(worker)
    );
    check!(
        children_left().is_empty(),
        "children left: {:?}",
        children_left()
    );
    no_pipes_left(&pipes)
}

/// 1 (rest). A result whose `Deserialize` panics in its own body, outside
/// any deserializer method: the process backend keeps its reader and the
/// worker alive.
pub(crate) fn hostile_deserialize_body_does_not_stall_the_pool() -> Outcome {
    let m = started("lpa-body0", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    // Its outcome is leasepool-core's to decide (see below); not awaited.
    let hostile = lease.submit_call(returns_hostile_body, ()).unwrap();
    // The reader that decoded it survives: the same worker answers next.
    let got = outcome(lease.submit_call(pid, ()).unwrap())?;
    check!(
        got == Ok(worker),
        "the next call on the worker: {got:?} (worker {worker})"
    );
    drop(hostile);
    drop(lease);
    stop_clean(m)?;
    check!(reaped(worker), "worker {worker} not reaped");
    Ok(())
}

/// The rest of case 1: the call itself ends with an error
/// (`RemoteCall::deliver` catches the panic) and the worker serves on.
pub(crate) fn hostile_deserialize_body() -> Outcome {
    let m = started("lpa-body", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let got = outcome(lease.submit_call(returns_hostile_body, ()).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m) | Error::Panicked(m)) if m.contains("hostile Deserialize body")),
        "a result whose Deserialize body panics: {got:?}"
    );
    let got = outcome(lease.submit_call(add, (1, 1)).unwrap())?;
    check!(got == Ok(2), "the worker serves on: {got:?}");
    drop(lease);
    stop_clean(m)
}

/// 2. Through the grinder: an argument whose `Serialize` panics fails its
///    item alone; later items run and `stop()` returns.
pub(crate) fn grinder_survives_hostile_argument() -> Outcome {
    let m = started("lpa-grind", ProcessBackend::new(), 2)?;
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(4)
        .max_wait(Duration::from_millis(10))
        .build()
        .map_err(|e| e.to_string())?;
    g.start_blocking().map_err(|e| e.to_string())?;
    let before = g.enqueue_call(add, (1, 1)).map_err(|e| e.to_string())?;
    let hostile = g
        .enqueue_call(takes_unencodable, PanicsOnEncode(1))
        .map_err(|e| e.to_string())?;
    let after: Vec<_> = (0..6u64)
        .map(|i| g.enqueue_call(add, (i, 10)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let got = outcome(hostile)?;
    check!(
        is_serialization(
            &got,
            &["takes_unencodable", "panicked", "hostile Serialize"]
        ),
        "the hostile item: {got:?}"
    );
    check!(outcome(before)? == Ok(2), "the item before");
    for (i, handle) in (0..6u64).zip(after) {
        let got = outcome(handle)?;
        check!(got == Ok(i + 10), "item {i} after the hostile one: {got:?}");
    }
    // A later batch still runs.
    let late = g.enqueue_call(add, (40, 2)).map_err(|e| e.to_string())?;
    check!(outcome(late)? == Ok(42), "a later batch");
    within("the grinder's stop()", move || {
        g.stop_blocking(StopMode::Drain)
    })?;
    stop_clean(m)
}

/// 3. A result over the frame limit fails its call with
///    `Error::Serialization` naming the limit; the worker serves on.
pub(crate) fn oversized_result_fails_only_its_call() -> Outcome {
    let m = started("lpa-big", ProcessBackend::new(), 1)?;
    let lease = lease_on(&m)?;
    let worker = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    let got = outcome(lease.submit_call(oversized, ()).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m)) if m.contains("oversized") && m.contains("frame limit of 64 MiB")),
        "an oversized result: {:?}",
        got.map(|v| v.len())
    );
    // The same limit, the same kind of message, for an argument (refused
    // in the parent, before anything is sent).
    let got = outcome(lease.submit_call(text_len, "x".repeat(64 << 20)).unwrap())?;
    check!(
        matches!(&got, Err(Error::Serialization(m)) if m.contains("argument of") && m.contains("text_len") && m.contains("frame limit of 64 MiB")),
        "an oversized argument: {got:?}"
    );
    let same = outcome(lease.submit_call(pid, ()).unwrap())?.map_err(|e| e.to_string())?;
    check!(same == worker, "the worker was lost ({worker} -> {same})");
    drop(lease);
    stop_clean(m)?;
    check!(reaped(worker), "worker {worker} not reaped");
    Ok(())
}
