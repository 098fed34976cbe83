//! Forwards `log` records from worker processes to the parent's logger.
//!
//! The parent installs a tiny stderr logger; a worker function logs with
//! `log::info!`, and the record shows up in the parent as
//! `[worker <pid>] <original target>: <message>` under the target
//! `workers`.
//!
//! Run with `cargo run --example process_log_forwarding --features process`.

use leasepool::process::{ProcessBackend, ProcessLogging, Registry, init};
use leasepool::{Error, LeasedExecutorManager};
use log::{LevelFilter, Log, Metadata, Record};

/// Runs in a worker: its log records travel to the parent.
fn resize((name, width): (String, u32)) -> String {
    log::info!("resizing {name} to {width} px");
    log::debug!("not forwarded: below the configured level");
    format!("{name}@{width}")
}

/// The parent's logger: one line per record on stderr.
struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        eprintln!(
            "{:<5} {} {} ({}:{})",
            record.level(),
            record.target(),
            record.args(),
            record.file().unwrap_or("?"),
            record.line().unwrap_or(0)
        );
    }

    fn flush(&self) {}
}

fn main() -> Result<(), Error> {
    // First: in a worker this serves calls and never returns (the worker
    // installs its own forwarding logger).
    init(Registry::new().register(resize));

    log::set_logger(&StderrLogger).expect("the only logger");
    log::set_max_level(LevelFilter::Info);

    let logging = ProcessLogging::new()
        .enabled(true)
        .level(LevelFilter::Info)
        .target("workers")
        .stderr(true); // panic messages and eprintln! from workers too
    let manager = LeasedExecutorManager::builder(ProcessBackend::new().logging(logging))
        .max_pools(1)
        .workers_per_pool(2)
        .build()?;
    manager.start_blocking()?;

    let lease = manager.acquire().owner("thumbnails").blocking()?;
    for (name, width) in [("cat.png", 128), ("dog.png", 256)] {
        let out = lease
            .submit_call(resize, (name.to_owned(), width))?
            .wait()?;
        println!("{out}");
    }
    drop(lease);
    manager.stop_blocking();
    Ok(())
}
