//! `WorkerInitializer`: the per-worker set-up hook backends offer.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::error::take_panic_message;

/// A function run once on each new worker before it takes jobs (open a
/// connection, warm a cache). If it returns an error or panics, the pool is
/// broken. Backends store one and call [`run`](Self::run) on each worker.
///
/// ```
/// use leasepool_core::WorkerInitializer;
///
/// let init = WorkerInitializer::new(|| Err::<(), _>("no database"));
/// assert_eq!(init.run(), Err("a worker initializer failed: no database".to_owned()));
/// let init = WorkerInitializer::new(|| -> Result<(), String> { panic!("boom") });
/// assert_eq!(init.run(), Err("a worker initializer panicked: boom".to_owned()));
/// ```
#[derive(Clone)]
pub struct WorkerInitializer(Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl fmt::Debug for WorkerInitializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerInitializer(..)")
    }
}

impl WorkerInitializer {
    /// Wraps `init`; its error is kept as text.
    pub fn new<F, E>(init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        WorkerInitializer(Arc::new(move || init().map_err(|e| e.to_string())))
    }

    /// Runs it on the current thread. `Err` carries the reason the pool is
    /// broken, for `BrokenSignal::report` and `Error::Broken`.
    pub fn run(&self) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| (self.0)())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(format!("a worker initializer failed: {message}")),
            Err(payload) => Err(format!(
                "a worker initializer panicked: {}",
                take_panic_message(payload)
            )),
        }
    }
}
