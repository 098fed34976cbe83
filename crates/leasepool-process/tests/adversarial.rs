//! The process backend against hostile user code: `Serialize` and
//! `Deserialize` impls that panic, results over the frame limit, frozen
//! workers, workers that start processes of their own, stderr that never
//! stops, and the resource controls that bound a worker.
//!
//! No test harness, as in `process.rs`: `main` first calls
//! `leasepool_process::init`, so a copy of this binary started as a worker
//! serves calls instead of running the scenarios. Every wait is a poll
//! against a deadline, never a sleep that hopes.

use std::time::Duration;

#[path = "common/procfs.rs"]
mod procfs;
#[path = "common/runner.rs"]
mod runner;

use runner::{Outcome, Scenario};

use leasepool_process::init;

/// Every wait in these tests is bounded by this.
const PATIENCE: Duration = Duration::from_secs(20);

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{} (line {})", format!($($msg)+), line!()));
        }
    };
}

#[path = "adversarial/functions.rs"]
mod functions;
#[path = "adversarial/limits.rs"]
mod limits;
#[path = "adversarial/processes.rs"]
mod processes;
#[path = "adversarial/serde_cases.rs"]
mod serde_cases;
#[path = "adversarial/support.rs"]
mod support;

use functions::registry;
use limits::*;
use processes::*;
use serde_cases::*;
use support::LOGGER;

// --------------------------------------------------------------------- main

fn main() {
    if std::env::args().any(|a| a == FAKE_WORKER_ARG) {
        fake_worker();
    }
    init(registry());
    if std::env::var_os(ORPHAN_PARENT_ENV).is_some() {
        orphan_parent();
    }
    log::set_logger(&LOGGER).expect("no other logger");
    log::set_max_level(log::LevelFilter::Warn);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("the adversarial tests hung for 5 minutes");
        std::process::exit(2);
    });
    let scenarios: &[Scenario] = &[
        (
            "hostile_serde_impls_fail_only_their_call",
            hostile_serde_impls_fail_only_their_call,
        ),
        (
            "hostile_deserialize_body_does_not_stall_the_pool",
            hostile_deserialize_body_does_not_stall_the_pool,
        ),
        ("hostile_deserialize_body", hostile_deserialize_body),
        (
            "grinder_survives_hostile_argument",
            grinder_survives_hostile_argument,
        ),
        (
            "oversized_result_fails_only_its_call",
            oversized_result_fails_only_its_call,
        ),
        (
            "frozen_worker_is_killed_after_the_grace",
            frozen_worker_is_killed_after_the_grace,
        ),
        ("grandchildren_do_not_survive", grandchildren_do_not_survive),
        (
            "orphaned_workers_take_their_grandchildren",
            orphaned_workers_take_their_grandchildren,
        ),
        (
            "stderr_forwarding_ends_at_stop",
            stderr_forwarding_ends_at_stop,
        ),
        (
            "call_timeout_kills_and_replaces_the_worker",
            call_timeout_kills_and_replaces_the_worker,
        ),
        (
            "workers_recycle_by_memory_and_age",
            workers_recycle_by_memory_and_age,
        ),
        (
            "memory_limit_applies_in_the_worker",
            memory_limit_applies_in_the_worker,
        ),
        (
            "changed_argument_type_is_refused_at_handshake",
            changed_argument_type_is_refused_at_handshake,
        ),
        (
            "bad_limits_are_invalid_config",
            bad_limits_are_invalid_config,
        ),
    ];
    runner::run(scenarios);
}
