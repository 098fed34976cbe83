//! The scenario runner of the harness-less test binaries (`process.rs`,
//! `adversarial.rs`). They cannot use libtest: `main` must call
//! `leasepool_process::init` first, so that a copy of the binary started as
//! a worker serves calls instead of running the tests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// What a scenario returns: `Err` says what went wrong.
pub(crate) type Outcome = Result<(), String>;

/// A named scenario.
pub(crate) type Scenario = (&'static str, fn() -> Outcome);

/// Runs every scenario whose name contains one of the command-line filters
/// (all of them without a filter), one line each, then `N passed, M
/// failed`; exits with status 1 if any failed. A scenario that panics
/// fails with the panic's message.
pub(crate) fn run(scenarios: &[Scenario]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(scenario))
            .unwrap_or_else(|p| Err(leasepool_core::panic_message(p.as_ref())));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2?})", started.elapsed());
            }
            Err(why) => {
                failed += 1;
                println!("test {name} ... FAILED: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
