//! The sizer: reads the `size_provider` on a thread of its own.
//!
//! The size provider is user code and may block. If the checker called it,
//! a provider stuck on a lock or a slow metrics endpoint would stop acquire
//! time-outs, hard expiry and `stop()` with it. Instead one sizer thread per
//! run calls the provider (every `check_interval`, and at once after
//! `notify_scale_changed`), keeps the last answer in an atomic and kicks the
//! checker when it changes. The checker only ever reads that atomic.
//!
//! The sizer is not a worker: `stop()` does not wait for it. It exits at its
//! next wake after the run ends; a provider that blocks keeps it until the
//! provider returns, and nothing else waits on it meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::Error;
use crate::config::SizeProvider;
use crate::contain::contain;
use crate::state::deadline_after;
use crate::wait::{Alarm, wait_for};

/// What the sizer does with each reading (the manager applies it as the
/// new desired count and kicks the checker).
pub(crate) type OnReading = Box<dyn Fn(usize) + Send>;

/// The shared side of one run's sizer thread.
#[derive(Debug, Default)]
pub(crate) struct Sizer {
    units: AtomicUsize,
    readings: AtomicU64,
    /// Notified after each reading and when the thread enters the provider
    /// or exits.
    changed: Event,
    alarm: Alarm,
    retired: AtomicBool,
    in_provider: AtomicBool,
    exited: AtomicBool,
}

impl Sizer {
    /// Starts the sizer thread for one run.
    pub(crate) fn spawn(
        provider: SizeProvider,
        interval: Duration,
        name: String,
        on_reading: OnReading,
    ) -> Result<Arc<Sizer>, Error> {
        let sizer = Arc::new(Sizer::default());
        let shared = sizer.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                shared.run(&provider, interval, &on_reading);
                shared.exited.store(true, Ordering::Release);
                shared.changed.notify(usize::MAX);
            })
            .map_err(|e| Error::Broken(format!("cannot spawn the sizer thread: {e}")))?;
        Ok(sizer)
    }

    fn run(&self, provider: &SizeProvider, interval: Duration, on_reading: &OnReading) {
        while !self.retired.load(Ordering::Acquire) {
            self.in_provider.store(true, Ordering::Release);
            self.changed.notify(usize::MAX);
            let units = read_units(provider);
            self.in_provider.store(false, Ordering::Release);
            if self.retired.load(Ordering::Acquire) {
                return;
            }
            self.units.store(units, Ordering::Release);
            on_reading(units);
            self.readings.fetch_add(1, Ordering::AcqRel);
            self.changed.notify(usize::MAX);
            self.alarm
                .sleep(Some(deadline_after(Instant::now(), interval)));
        }
    }

    /// The provider's last answer (0 before the first).
    pub(crate) fn units(&self) -> usize {
        self.units.load(Ordering::Acquire)
    }

    /// Asks for a new reading now.
    pub(crate) fn refresh(&self) {
        self.alarm.kick();
    }

    /// Ends the thread at its next wake.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.alarm.kick();
    }

    /// After [`retire`](Self::retire): waits until the thread has exited,
    /// unless it is inside the size provider (never wait on user code).
    pub(crate) async fn exited(&self) {
        wait_for(&self.changed, || {
            (self.exited.load(Ordering::Acquire) || self.in_provider.load(Ordering::Acquire))
                .then_some(())
        })
        .await;
    }

    /// Waits until the provider has answered once, at most until
    /// `deadline`. False if it has not answered by then.
    pub(crate) fn wait_first(&self, deadline: Instant) -> bool {
        let answered = || self.readings.load(Ordering::Acquire) > 0;
        loop {
            if answered() {
                return true;
            }
            let listener = self.changed.listen();
            if answered() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() && Instant::now() >= deadline {
                return answered();
            }
        }
    }
}

/// Calls the provider; a panic counts as 0 units for this reading.
pub(crate) fn read_units(provider: &SizeProvider) -> usize {
    contain(|| provider()).unwrap_or_else(|message| {
        log::debug!(
            target: crate::LOG_TARGET,
            "size_provider panicked ({message}); counting 0 units for this check"
        );
        0
    })
}
