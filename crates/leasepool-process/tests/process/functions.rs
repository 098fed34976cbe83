//! The registered functions the scenarios call, and the registry that parent
//! and workers share.

use super::*;

pub(crate) fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

pub(crate) fn shout(text: String) -> String {
    text.to_uppercase()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    pub(crate) count: usize,
    pub(crate) sum: i64,
    pub(crate) label: Option<String>,
}

pub(crate) fn stats((values, label): (Vec<i64>, Option<String>)) -> Stats {
    Stats {
        count: values.len(),
        sum: values.iter().sum(),
        label,
    }
}

pub(crate) fn boom(code: u32) -> u32 {
    panic!("boom {code}")
}

pub(crate) fn pid(_: ()) -> u32 {
    std::process::id()
}

pub(crate) fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

pub(crate) fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

pub(crate) fn abort_now(_: ()) -> u8 {
    std::process::abort()
}

pub(crate) fn log_something(n: u32) -> u32 {
    log::warn!(target: "my_worker_target", "warned {n}");
    log::debug!(target: "my_worker_target", "debug {n} is below the level");
    n
}

pub(crate) fn to_stderr(text: String) {
    eprintln!("{text}");
}

/// Prints to stdout, which in a worker is redirected to stderr so the
/// protocol stays intact.
pub(crate) fn to_stdout(text: String) -> usize {
    println!("{text}");
    text.len()
}

/// An argument that refuses to be serialised.
#[derive(Debug, Deserialize)]
pub(crate) struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be serialised"))
    }
}

pub(crate) fn takes_unencodable(_: Unencodable) -> u8 {
    0
}

pub(crate) fn not_registered(x: u8) -> u8 {
    x
}

/// Registered only in workers started with `LP_TEST_EXTRA` set.
pub(crate) fn extra(x: u8) -> u8 {
    x
}

/// Fails in workers started with `LP_TEST_FAIL_INIT` set.
pub(crate) fn check_init(_: ()) -> Result<(), String> {
    match std::env::var("LP_TEST_FAIL_INIT") {
        Ok(value) => Err(format!("initializer refused: LP_TEST_FAIL_INIT={value}")),
        Err(_) => Ok(()),
    }
}

pub(crate) fn registry() -> Registry {
    let registry = Registry::new()
        .register(add)
        .register(shout)
        .register(stats)
        .register(boom)
        .register(pid)
        .register(pid_after)
        .register(sleep_ms)
        .register(abort_now)
        .register(log_something)
        .register(to_stderr)
        .register(to_stdout)
        .register(takes_unencodable)
        .register(conformance::square)
        .register(conformance::panics)
        .register(conformance::sleep_ms)
        .initializer(check_init);
    if std::env::var_os("LP_TEST_EXTRA").is_some() {
        registry.register(extra)
    } else {
        registry
    }
}
