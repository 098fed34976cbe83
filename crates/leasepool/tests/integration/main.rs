//! Integration tests of leasepool through its public API.
//!
//! One test binary (faster to build and link than one per file); each module
//! covers one area of the specification.

mod common;

mod acquire;
mod broken;
mod call;
mod cancellation;
mod config;
mod conveniences;
mod draining;
mod expiry;
mod fair_sharing;
mod grinder;
mod hostile_jobs;
mod hostile_manager;
mod leaks;
mod lease;
mod lifecycle;
mod renewal;
mod runtimes;
mod shutdown;
mod sizing;
mod smoke;
mod stats_logs;
mod stress;
