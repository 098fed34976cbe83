//! The default observer: events as `log` records.

use super::{Event, Level, Observer};
use crate::LOG_TARGET;

/// Writes each [`Event`] as a `log` record under target
/// [`LOG_TARGET`], at the event's [level](Event::level). Events are built
/// only when a logger would print their level. Captures no job context.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogObserver;

impl LogObserver {
    /// The observer.
    pub fn new() -> Self {
        LogObserver
    }
}

impl Observer for LogObserver {
    fn max_level(&self) -> Option<Level> {
        match log::max_level() {
            log::LevelFilter::Off => None,
            log::LevelFilter::Error => Some(Level::Error),
            log::LevelFilter::Warn => Some(Level::Warn),
            log::LevelFilter::Info => Some(Level::Info),
            log::LevelFilter::Debug => Some(Level::Debug),
            log::LevelFilter::Trace => Some(Level::Trace),
        }
    }

    fn event(&self, event: &Event) {
        let level = match event.level() {
            Level::Error => log::Level::Error,
            Level::Warn => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
            Level::Trace => log::Level::Trace,
        };
        log::log!(target: LOG_TARGET, level, "{event}");
    }
}
