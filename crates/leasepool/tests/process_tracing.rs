//! With the `tracing` feature, the parent-side work of a process `call`
//! runs in the span that was current when it was submitted: encoding the
//! argument on the submitting thread, and decoding and delivering the
//! result on the pool's reader thread.
//!
//! No test harness: `main` first calls `process::init`, so the worker
//! processes (this same binary) serve calls instead of running the test.

use std::sync::Mutex;

use leasepool::LeasedExecutorManager;
use leasepool::process::{ProcessBackend, Registry, init};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::Span;

/// Where the parent saw each (de)serialisation happen: the current span.
static SEEN: Mutex<Vec<(&'static str, Option<u64>)>> = Mutex::new(Vec::new());

fn record(what: &'static str) {
    let span = Span::current().id().map(|id| id.into_u64());
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((what, span));
}

/// A value that notes the span its serialisation runs in.
struct Probe(u32);

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        record("encode");
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        record("decode");
        Ok(Probe(value))
    }
}

fn double(probe: Probe) -> Probe {
    Probe(probe.0 * 2)
}

fn main() {
    init(Registry::new().register(double));
    // Only the parent gets here.
    tracing::subscriber::set_global_default(tracing_subscriber::registry())
        .expect("one global subscriber");
    let m = LeasedExecutorManager::builder(ProcessBackend::new())
        .max_pools(1)
        .workers_per_pool(1)
        .name_prefix("lp-trace")
        .build()
        .expect("config");
    m.start_blocking().expect("start");
    let lease = m
        .acquire()
        .timeout(std::time::Duration::from_secs(60))
        .blocking()
        .expect("lease");

    let span = tracing::info_span!("request");
    let want = span.id().map(|id| id.into_u64());
    assert!(want.is_some(), "the subscriber gives spans ids");
    let job = span
        .in_scope(|| lease.submit_call(double, Probe(21)))
        .expect("submit");
    let result = job.wait().expect("the call");
    assert_eq!(result.0, 42);
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [("encode", want), ("decode", want)],
        "the parent side of the call ran outside the submitter's span"
    );

    // Outside any span, nothing is entered.
    SEEN.lock().unwrap().clear();
    let result = lease
        .submit_call(double, Probe(1))
        .expect("submit")
        .wait()
        .expect("the call");
    assert_eq!(result.0, 2);
    assert_eq!(*SEEN.lock().unwrap(), [("encode", None), ("decode", None)]);

    drop(lease);
    m.stop_blocking();
    println!("process_tracing: the parent side of a call runs in the submitter's span: ok");
}
