//! End-to-end tests of the process backend.
//!
//! No test harness: `main` first calls `leasepool_process::init`, so when a
//! pool re-executes this binary, the copy becomes a worker and never reaches
//! the scenarios. Each scenario prints `ok` or `FAILED`, and the last line is
//! `N passed, M failed`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/runner.rs"]
mod runner;

use runner::{Outcome, Scenario};

use leasepool_core::{
    BackendPool, Error, ExecutorBackend, JobHandle, LeaseEnd, LeasedExecutorManager, PoolContext,
    Task, conformance, function_name,
};
use leasepool_process::{ProcessBackend, ProcessLogging, Registry, init};
use serde::{Deserialize, Serialize};

/// Every wait in this file is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

/// Fails the scenario with the message (and its line) unless `$cond`.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{} (line {})", format!($($msg)+), line!()));
        }
    };
}

#[path = "process/calls.rs"]
mod calls;
#[path = "process/functions.rs"]
mod functions;
#[path = "process/lifecycle.rs"]
mod lifecycle;
#[path = "process/logs.rs"]
mod logs;
#[path = "process/support.rs"]
mod support;

use calls::*;
use functions::*;
use lifecycle::*;
use logs::*;
use support::*;

// --------------------------------------------------------------------- main

fn main() {
    init(registry());
    // Only the parent gets here.
    if std::env::var_os(ORPHAN_PARENT_ENV).is_some() {
        orphan_parent();
    }
    log::set_logger(&LOGGER).expect("no other logger");
    log::set_max_level(log::LevelFilter::Trace);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(600));
        eprintln!("the process tests hung for 10 minutes");
        std::process::exit(2);
    });

    let scenarios: &[Scenario] = &[
        ("call_round_trip", call_round_trip),
        ("panic_and_unknown_function", panic_and_unknown_function),
        ("abort_breaks_only_its_pool", abort_breaks_only_its_pool),
        ("sigkill_mid_job", sigkill_mid_job),
        (
            "bad_initializer_breaks_the_pool",
            bad_initializer_breaks_the_pool,
        ),
        (
            "different_registry_is_refused",
            different_registry_is_refused,
        ),
        ("not_a_worker_fails_fast", not_a_worker_fails_fast),
        ("recycling_after_n_jobs", recycling_after_n_jobs),
        ("no_children_after_stop", no_children_after_stop),
        ("orphaned_workers_exit", orphaned_workers_exit),
        ("busy_polling_pools", busy_polling_pools),
        ("call_under_every_runtime", call_under_every_runtime),
        ("kill_on_hard_expiry", kill_on_hard_expiry),
        (
            "closures_and_bad_options_are_refused",
            closures_and_bad_options_are_refused,
        ),
        ("log_forwarding", log_forwarding),
        (
            "grinder_batches_calls_into_worker_processes",
            grinder_batches_calls,
        ),
        ("conformance_call_round_trip", || {
            conformance::call_round_trip(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_panics_are_contained", || {
            conformance::call_panics_are_contained(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_release_drains", || {
            conformance::call_release_drains(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_expiry_revokes", || {
            conformance::call_expiry_revokes(ProcessBackend::new);
            Ok(())
        }),
        ("conformance_call_stop_shuts_down", || {
            conformance::call_stop_shuts_down(ProcessBackend::new);
            Ok(())
        }),
    ];
    runner::run(scenarios);
}
