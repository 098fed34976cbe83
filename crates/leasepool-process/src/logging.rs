//! Log forwarding: `log` records (and optionally stderr lines) of worker
//! processes re-emitted through the parent's logger.

use std::io::Read;
#[cfg(not(unix))]
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::protocol::{FromWorker, write_frame};

/// How worker processes' logs reach the parent. Off by default.
///
/// When enabled, each worker installs a `log` logger that sends every
/// record at or above [`level`](Self::level) to the parent, which emits it
/// through its own logger (`log::logger()`) with the same level, under
/// [`target`](Self::target), as `[worker <pid>] <original target>: <message>`,
/// keeping the original module path, file and line. With
/// [`stderr`](Self::stderr), each line a worker writes to its stderr
/// (panic messages, stray `eprintln!`) is logged too, at `Warn`.
///
/// ```
/// use leasepool_process::{ProcessBackend, ProcessLogging};
///
/// let backend = ProcessBackend::new().logging(
///     ProcessLogging::new()
///         .enabled(true)
///         .level(log::LevelFilter::Debug)
///         .target("my_app::workers")
///         .stderr(true),
/// );
/// # let _ = backend;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLogging {
    pub(crate) enabled: bool,
    pub(crate) level: LevelFilter,
    pub(crate) target: String,
    pub(crate) stderr: bool,
}

impl Default for ProcessLogging {
    fn default() -> Self {
        ProcessLogging {
            enabled: false,
            level: LevelFilter::Info,
            target: leasepool_core::LOG_TARGET.to_owned(),
            stderr: false,
        }
    }
}

impl ProcessLogging {
    /// Forwarding off; level `Info`, target `"leasepool"` (the manager's
    /// own target), stderr not forwarded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns forwarding of `log` records on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The most verbose level workers forward (default `Info`).
    pub fn level(mut self, level: LevelFilter) -> Self {
        self.level = level;
        self
    }

    /// The target forwarded records are emitted under in the parent
    /// (default `"leasepool"`).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Also forward each line the workers write to their stderr, at `Warn`
    /// (default off: worker stderr goes straight to the parent's stderr).
    pub fn stderr(mut self, stderr: bool) -> Self {
        self.stderr = stderr;
        self
    }

    /// True if records or stderr are forwarded.
    pub fn is_enabled(&self) -> bool {
        self.enabled || self.stderr
    }
}

/// The output every frame of a worker goes through (results and logs).
pub(crate) type SharedOut = Arc<Mutex<Box<dyn std::io::Write + Send>>>;

/// The logger a worker installs: each record becomes a `Log` frame.
pub(crate) struct FrameLogger {
    pub(crate) out: SharedOut,
    pub(crate) level: LevelFilter,
}

impl Log for FrameLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let frame = FromWorker::Log {
            level: record.level() as u8,
            target: record.target().to_owned(),
            message: record.args().to_string(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // The parent is gone if this fails; the serve loop notices.
        let _ = write_frame(&mut *out, &frame);
    }

    fn flush(&self) {}
}

/// Installs the frame logger in a worker if the parent asked for it.
pub(crate) fn install_worker_logger(out: &SharedOut, level: Option<String>) {
    let Some(level) = level.and_then(|l| l.parse::<LevelFilter>().ok()) else {
        return;
    };
    let logger = FrameLogger {
        out: out.clone(),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// Re-emits a worker's record through the parent's logger.
pub(crate) struct Forwarded<'a> {
    pub(crate) pid: u32,
    pub(crate) level: u8,
    pub(crate) target: &'a str,
    pub(crate) message: &'a str,
    pub(crate) module_path: Option<&'a str>,
    pub(crate) file: Option<&'a str>,
    pub(crate) line: Option<u32>,
}

impl ProcessLogging {
    pub(crate) fn forward(&self, record: Forwarded<'_>) {
        if !self.enabled {
            return;
        }
        let level = level_from_u8(record.level);
        if level > self.level || level > log::max_level() {
            return;
        }
        let Forwarded {
            pid,
            target,
            message,
            ..
        } = record;
        log::logger().log(
            &Record::builder()
                .level(level)
                .target(&self.target)
                .args(format_args!("[worker {pid}] {target}: {message}"))
                .module_path(record.module_path)
                .file(record.file)
                .line(record.line)
                .build(),
        );
    }

    /// Logs each line of a worker's stderr until it closes. Once
    /// `reaped()` (the worker is gone and its process group killed), it
    /// reads what is left for at most [`STDERR_DRAIN`]: a process that left
    /// the worker's group may hold the pipe open (and write to it) for
    /// ever, and must not keep this thread, and so `stop()`, waiting.
    #[cfg(unix)]
    pub(crate) fn forward_stderr(
        &self,
        pid: u32,
        mut stderr: impl Read + std::os::fd::AsFd,
        reaped: impl Fn() -> bool,
    ) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        let mut pending = Vec::new();
        let mut buffer = [0u8; 4096];
        let mut drain_until = None;
        loop {
            let gone = match drain_until {
                Some(until) if std::time::Instant::now() >= until => break,
                Some(_) => true,
                None if reaped() => {
                    drain_until = Some(std::time::Instant::now() + STDERR_DRAIN);
                    true
                }
                None => false,
            };
            let mut fds = [PollFd::new(&stderr, PollFlags::IN)];
            match poll(&mut fds, Some(&tick)) {
                Ok(0) if gone => break,
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            match stderr.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    pending.extend_from_slice(&buffer[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        self.stderr_line(pid, &line[..end]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            self.stderr_line(pid, &pending);
        }
    }

    /// Logs each line of a worker's stderr until it closes.
    #[cfg(not(unix))]
    pub(crate) fn forward_stderr(&self, pid: u32, stderr: impl Read, _reaped: impl Fn() -> bool) {
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            self.stderr_line(pid, &line);
        }
    }

    fn stderr_line(&self, pid: u32, line: &[u8]) {
        if Level::Warn > log::max_level() {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        log::logger().log(
            &Record::builder()
                .level(Level::Warn)
                .target(&self.target)
                .args(format_args!("[worker {pid}] stderr: {line}"))
                .build(),
        );
    }
}

/// How long a worker's stderr is still read once the worker is reaped.
#[cfg(unix)]
const STDERR_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

fn level_from_u8(level: u8) -> Level {
    match level {
        0 | 1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        4 => Level::Debug,
        _ => Level::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_survive_the_round_trip() {
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(level_from_u8(level as u8), level);
        }
    }

    #[test]
    fn defaults_are_off_info_leasepool() {
        let logging = ProcessLogging::new();
        assert!(!logging.is_enabled());
        assert_eq!(logging.level, LevelFilter::Info);
        assert_eq!(logging.target, "leasepool");
    }
}
