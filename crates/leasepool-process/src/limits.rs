//! Resource controls of worker processes: the memory limit a worker
//! applies to itself at start-up, and the resident memory the parent reads
//! to recycle a worker.

/// Applies `memory_limit` (bytes of address space, `RLIMIT_AS`, soft and
/// hard) to this worker process.
#[cfg(unix)]
pub(crate) fn apply_memory_limit(bytes: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
    .map_err(|e| format!("cannot apply memory_limit ({bytes} bytes, RLIMIT_AS): {e}"))
}

#[cfg(not(unix))]
pub(crate) fn apply_memory_limit(bytes: u64) -> Result<(), String> {
    Err(format!(
        "memory_limit ({bytes} bytes) is only supported on Unix"
    ))
}

/// The resident memory of process `pid`, in bytes (Linux: the second field
/// of `/proc/<pid>/statm`, in pages). `None` if it cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = u64::try_from(rustix::param::page_size()).ok()?;
    pages.checked_mul(page)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn resident_bytes(_pid: u32) -> Option<u64> {
    None
}

/// Parses the memory limit the parent put in a worker's environment.
pub(crate) fn parse_memory_limit(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|e| format!("bad memory limit {value:?} in the environment: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_resident_memory() {
        let rss = resident_bytes(std::process::id()).unwrap();
        assert!(rss > 0);
        assert_eq!(resident_bytes(u32::MAX), None);
    }

    #[test]
    fn parses_limits() {
        assert_eq!(parse_memory_limit("1048576"), Ok(1 << 20));
        assert!(parse_memory_limit("lots").is_err());
    }
}
