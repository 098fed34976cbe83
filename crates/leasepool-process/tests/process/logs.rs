//! Log forwarding (with a capturing logger) and the grinder over worker
//! processes.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct Captured {
    level: log::Level,
    target: String,
    message: String,
    file: Option<String>,
    line: Option<u32>,
}

pub(crate) struct TestLogger(Mutex<Vec<Captured>>);

impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(Captured {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            file: record.file().map(str::to_owned),
            line: record.line(),
        });
    }

    fn flush(&self) {}
}

pub(crate) static LOGGER: TestLogger = TestLogger(Mutex::new(Vec::new()));

pub(crate) fn captured(target: &str) -> Vec<Captured> {
    LOGGER
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.target == target)
        .cloned()
        .collect()
}

pub(crate) fn log_forwarding() -> Outcome {
    let logging = ProcessLogging::new()
        .enabled(true)
        .level(log::LevelFilter::Info)
        .target("lp-test-workers")
        .stderr(true);
    let m = manager("lp-log", ProcessBackend::new().logging(logging), 1, 1);
    m.start_blocking().map_err(|e| e.to_string())?;
    let lease = lease_on(&m)?;
    let worker = wait(lease.submit_call(pid, ()).unwrap()).map_err(|e| e.to_string())?;
    check!(
        wait(lease.submit_call(log_something, 7).unwrap()) == Ok(7),
        "call"
    );
    // The record travels before the result on the same pipe.
    let records = captured("lp-test-workers");
    let expected = format!("[worker {worker}] my_worker_target: warned 7");
    let record = records
        .iter()
        .find(|c| c.message == expected)
        .ok_or_else(|| format!("no forwarded record {expected:?} in {records:?}"))?;
    check!(record.level == log::Level::Warn, "level {:?}", record.level);
    check!(
        record
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("process/functions.rs"))
            && record.line.is_some(),
        "location {record:?}"
    );
    check!(
        !records
            .iter()
            .any(|c| c.message.contains("below the level")),
        "a debug record was forwarded: {records:?}"
    );
    check!(
        wait(
            lease
                .submit_call(to_stderr, "to stderr 123".to_owned())
                .unwrap()
        ) == Ok(()),
        "stderr call"
    );
    let expected = format!("[worker {worker}] stderr: to stderr 123");
    wait_until("the stderr line is forwarded", || {
        captured("lp-test-workers")
            .iter()
            .any(|c| c.message == expected)
    })?;
    // A stray println! neither corrupts the protocol nor breaks the pool:
    // it comes out on the worker's stderr.
    check!(
        wait(
            lease
                .submit_call(to_stdout, "printed 456".to_owned())
                .unwrap()
        ) == Ok(11),
        "println call"
    );
    let expected = format!("[worker {worker}] stderr: printed 456");
    wait_until("the printed line is forwarded as stderr", || {
        captured("lp-test-workers")
            .iter()
            .any(|c| c.message == expected)
    })?;
    check!(lease.ended().is_none(), "the lease survived a println!");
    drop(lease);
    m.stop_blocking();
    Ok(())
}

/// The grinder batches `call` items into process pools: each item's own
/// result, a panic confined to its item, and a worker crash giving the
/// items that did not run a `Broken` error.
pub(crate) fn grinder_batches_calls() -> Outcome {
    use leasepool_core::{StopMode, WorkGrinder};
    let m = LeasedExecutorManager::builder(ProcessBackend::new())
        .max_pools(1)
        .workers_per_pool(2)
        .name_prefix("lp-grind")
        .build()
        .map_err(|e| e.to_string())?;
    m.start_blocking().map_err(|e| e.to_string())?;
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(8)
        .max_wait(Duration::from_millis(20))
        .build()
        .map_err(|e| e.to_string())?;
    g.start_blocking().map_err(|e| e.to_string())?;
    let handles: Vec<_> = (0..8u64)
        .map(|x| g.enqueue_call(conformance::square, x))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for (x, handle) in handles.into_iter().enumerate() {
        let x = x as u64;
        if handle.wait() != Ok(x * x) {
            return Err(format!("item {x} got the wrong result"));
        }
    }
    let panicked = g
        .enqueue_call(conformance::panics, ())
        .map_err(|e| e.to_string())?;
    let fine = g
        .enqueue_call(conformance::square, 9)
        .map_err(|e| e.to_string())?;
    if panicked.wait() != Err(Error::Panicked("conformance boom".to_owned())) {
        return Err("a panicking item should fail with Panicked".into());
    }
    if fine.wait() != Ok(81) {
        return Err("a panic must not affect the other items".into());
    }
    if futures_lite::future::block_on(g.submit_call(conformance::square, 12)) != Ok(144) {
        return Err("submit_call".into());
    }
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
    Ok(())
}
