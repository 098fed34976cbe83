//! Waiting and waking without a runtime.
//!
//! - [`wait_for`]: wait for a condition, event-listener's way: check,
//!   register a listener, check again, then sleep. A notification sent
//!   between the two checks reaches the registered listener, so no wake-up
//!   is lost and nothing polls. Blocking callers run it under `block_on`.
//! - [`Gate`]: a value published once (the outcome of a start).
//! - [`WakeSlot`]: wakes one queued acquirer (see `state/README.md`).
//! - [`Alarm`]: wakes a background thread that sleeps until a deadline
//!   (see `checker/README.md`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::Waker;
use std::time::Instant;

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
}

/// Wakes one queued acquirer's task.
///
/// The outcome itself is parked in the state under the manager's lock;
/// this only wakes. `notify` takes the waker under this small lock and
/// wakes it after unlocking, so the woken side never collides with it. A
/// notification that arrives before the waiter registers is remembered
/// (`notified`), so none is lost. A blocking acquire is `block_on` of the
/// same future, so a parked thread is woken through its waker too.
#[derive(Debug, Default)]
pub(crate) struct WakeSlot {
    cell: crate::sync::Mutex<WakeCell>,
}

#[derive(Debug, Default)]
struct WakeCell {
    notified: bool,
    waker: Option<Waker>,
}

impl WakeSlot {
    fn cell(&self) -> crate::sync::MutexGuard<'_, WakeCell> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn notify(&self) {
        let waker = {
            let mut cell = self.cell();
            cell.notified = true;
            cell.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Registers `waker`, unless a notification came since the last call:
    /// then returns true (look for the outcome again) and registers nothing.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        let mut cell = self.cell();
        if std::mem::take(&mut cell.notified) {
            return true;
        }
        match &cell.waker {
            Some(current) if current.will_wake(waker) => {}
            _ => cell.waker = Some(waker.clone()),
        }
        false
    }
}

/// Wakes a background thread (the checker, the grinder's dispatcher) that
/// otherwise sleeps until a deadline. A kick sets a flag and notifies; the
/// sleeper reads the flag after registering its listener, so no kick is
/// lost, and a kick that came while it was awake makes its next sleep
/// return at once.
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    event: Event,
    kicked: AtomicBool,
}

impl Alarm {
    pub(crate) fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    /// Sleeps until kicked or until `deadline` (forever if `None`).
    pub(crate) fn sleep(&self, deadline: Option<Instant>) {
        let listener = self.event.listen();
        if self.kicked.swap(false, Ordering::AcqRel) {
            return;
        }
        match deadline {
            Some(at) => {
                listener.wait_deadline(at);
            }
            None => listener.wait(),
        }
    }
}
