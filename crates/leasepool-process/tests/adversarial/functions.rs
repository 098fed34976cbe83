//! The hostile types and the functions the test workers run.

use std::time::Duration;

use leasepool_process::Registry;
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

// ------------------------------------------------------------ hostile types

/// Decodes by panicking inside its visitor (the common shape: a derived
/// type with a hostile field).
#[derive(Debug)]
pub(crate) struct PanicsInVisitor(pub(crate) u8);

impl Serialize for PanicsInVisitor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for PanicsInVisitor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PanicsInVisitor;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a u8")
            }
            fn visit_u8<E>(self, _: u8) -> Result<PanicsInVisitor, E> {
                panic!("hostile Deserialize")
            }
        }
        d.deserialize_u8(V)
    }
}

/// A derived result with a hostile field.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Nested {
    ok: u32,
    bad: PanicsInVisitor,
}

/// Panics in the body of `deserialize`, before touching the deserializer.
#[derive(Debug, Serialize)]
pub(crate) struct PanicsInBody;

impl<'de> Deserialize<'de> for PanicsInBody {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("hostile Deserialize body")
    }
}

/// Panics when serialised.
#[derive(Debug, Deserialize)]
pub(crate) struct PanicsOnEncode(pub(crate) u8);

impl Serialize for PanicsOnEncode {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("hostile Serialize")
    }
}

// ---------------------------------------------------------------- functions

pub(crate) fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

pub(crate) fn pid(_: ()) -> u32 {
    std::process::id()
}

pub(crate) fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

pub(crate) fn returns_hostile_nested(ok: u32) -> Nested {
    Nested {
        ok,
        bad: PanicsInVisitor(1),
    }
}

pub(crate) fn returns_hostile_body(_: ()) -> PanicsInBody {
    PanicsInBody
}

pub(crate) fn takes_hostile(_: PanicsInVisitor) -> u8 {
    1
}

pub(crate) fn returns_unencodable(x: u8) -> PanicsOnEncode {
    PanicsOnEncode(x)
}

pub(crate) fn takes_unencodable(x: PanicsOnEncode) -> u8 {
    x.0
}

/// A few bytes more than the frame limit (64 MiB) once framed (a string
/// encodes in one piece, fast even in a debug build).
pub(crate) fn oversized(_: ()) -> String {
    "x".repeat(64 << 20)
}

/// Starts `sleep secs` (in the worker's process group) and returns its pid
/// without waiting for it.
pub(crate) fn spawn_grandchild(secs: u32) -> u32 {
    std::process::Command::new("sleep")
        .arg(secs.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(|child| child.id())
        .unwrap_or(0)
}

/// Starts `sleep 60` (see [`spawn_grandchild`]), waits `ms`, returns its
/// pid.
pub(crate) fn grandchild_after(ms: u64) -> u32 {
    let grandchild = spawn_grandchild(60);
    std::thread::sleep(Duration::from_millis(ms));
    grandchild
}

/// Starts a shell that writes `tick` to the (inherited) stderr every 20 ms;
/// with `escape`, in a process group of its own, out of reach of the
/// worker's group. Returns its pid.
pub(crate) fn spawn_ticker(escape: bool) -> u32 {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "while :; do echo tick >&2; sleep 0.02; done"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if escape {
        command.process_group(0);
    }
    command.spawn().map(|child| child.id()).unwrap_or(0)
}

/// Allocates `mib` MiB, touches every page (so it is resident) and leaks
/// it; returns the worker's pid.
pub(crate) fn hog(mib: usize) -> u32 {
    let block = vec![1u8; mib << 20];
    std::mem::forget(block);
    std::process::id()
}

/// True if `mib` MiB could be reserved (fails under `memory_limit`).
pub(crate) fn try_alloc(mib: usize) -> bool {
    Vec::<u8>::new().try_reserve_exact(mib << 20).is_ok()
}

/// The soft `Max address space` limit of this process, from
/// `/proc/self/limits` (`None`: unlimited or unreadable).
pub(crate) fn address_space_limit(_: ()) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub(crate) fn text_len(text: String) -> usize {
    text.len()
}

pub(crate) fn registry() -> Registry {
    Registry::new()
        .register(add)
        .register(pid)
        .register(sleep_ms)
        .register(returns_hostile_nested)
        .register(returns_hostile_body)
        .register(takes_hostile)
        .register(returns_unencodable)
        .register(takes_unencodable)
        .register(oversized)
        .register(text_len)
        .register(spawn_grandchild)
        .register(spawn_ticker)
        .register(grandchild_after)
        .register(hog)
        .register(try_alloc)
        .register(address_space_limit)
}
