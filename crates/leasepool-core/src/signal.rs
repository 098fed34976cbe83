//! Waiting on a condition, from async code or a plain thread.
//!
//! The pattern is event-listener's: check, register a listener, check
//! again, then sleep. A notification sent between the two checks reaches the
//! registered listener, so no wake-up is lost and nothing polls.

use std::sync::{Mutex, PoisonError};

use event_listener::{Event, Listener};

/// Waits asynchronously until `check` returns `Some`.
pub(crate) async fn wait_for<T>(event: &Event, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = check() {
            return value;
        }
        let listener = event.listen();
        if let Some(value) = check() {
            return value;
        }
        listener.await;
    }
}

/// Blocks the current thread until `check` returns `Some`.
pub(crate) fn wait_for_blocking<T>(event: &Event, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = check() {
            return value;
        }
        let listener = event.listen();
        if let Some(value) = check() {
            return value;
        }
        listener.wait();
    }
}

/// The outcome of a start, awaited by every concurrent `start()` caller.
pub(crate) type StartGate = Gate<Result<(), crate::Error>>;

/// A value published once and read by any number of waiters.
#[derive(Debug)]
pub(crate) struct Gate<T> {
    value: Mutex<Option<T>>,
    event: Event,
}

impl<T: Clone> Gate<T> {
    pub(crate) fn new() -> Self {
        Gate {
            value: Mutex::new(None),
            event: Event::new(),
        }
    }

    pub(crate) fn open(&self, value: T) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        self.event.notify(usize::MAX);
    }

    fn get(&self) -> Option<T> {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) async fn wait(&self) -> T {
        wait_for(&self.event, || self.get()).await
    }

    pub(crate) fn wait_blocking(&self) -> T {
        wait_for_blocking(&self.event, || self.get())
    }
}
