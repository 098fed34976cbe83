//! The process backend of [leasepool](https://docs.rs/leasepool): each pool
//! is a set of worker processes that run registered functions.
//!
//! Use it for work that must be isolated from the service: native code that
//! may crash, leaky libraries, CPU-bound work that should not share an
//! allocator or a GIL-like lock with the service. A crash takes down one
//! worker, fails its call with `Error::Broken`, and the manager replaces the
//! pool; the service lives on.
//!
//! Jobs are plain functions with a serde-serialisable argument and result
//! (the Rust analogue of "picklable top-level functions"):
//!
//! 1. call [`init`] first in `main` with a [`Registry`] of those functions:
//!    in a worker process it serves calls and never returns; in the parent
//!    it returns at once;
//! 2. build a manager with [`ProcessBackend::new()`], which starts the
//!    workers by running this same executable again;
//! 3. run jobs with `lease.call(f, arg)` (several arguments go in a tuple).
//!
//! ```no_run
//! use leasepool_core::LeasedExecutorManager;
//! use leasepool_process::{ProcessBackend, Registry, init};
//!
//! fn count_primes(limit: u64) -> usize {
//!     (2..limit).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0)).count()
//! }
//!
//! fn main() -> Result<(), leasepool_core::Error> {
//!     init(Registry::new().register(count_primes));
//!
//!     let manager = LeasedExecutorManager::builder(ProcessBackend::new())
//!         .max_pools(1)
//!         .workers_per_pool(2)
//!         .build()?;
//!     manager.start_blocking()?;
//!     let lease = manager.acquire().owner("primes").blocking()?;
//!     let primes = lease.submit_call(count_primes, 100_000)?.wait()?;
//!     assert_eq!(primes, 9592);
//!     drop(lease);
//!     manager.stop_blocking(); // every worker has exited and been reaped
//!     Ok(())
//! }
//! ```
//!
//! # Errors a call can end with
//!
//! - `Error::Panicked`: the function panicked; its worker serves on.
//! - `Error::UnknownFunction`: the worker's registry does not hold it.
//! - `Error::Serialization`: the argument or the result did not
//!   (de)serialise, including when its `Serialize` or `Deserialize` impl
//!   panicked (on either side; the message says which impl and which
//!   function), and when it is larger than the frame limit of 64 MiB. Only
//!   that call fails: the worker serves on, and no library thread is lost.
//!   A panic is reported as `Serialization`, not `Panicked`: the type's
//!   serde impl failed, not the function. That holds too for a result
//!   `Deserialize` impl that panics in its own body, outside the
//!   deserializer it is given: `RemoteCall::deliver` catches it.
//! - `Error::Broken`: the worker died (crash, `abort`, killed) or the pool
//!   could not start (the worker command is not a leasepool worker, the
//!   registries differ in a function's name or in its argument or result
//!   type, the initializer failed, the `memory_limit` could not be
//!   applied). The pool is retired and replaced; run the job again on a
//!   new lease. Two kills end only the call, not the pool: a call over
//!   [`ProcessBackend::call_timeout`] (the pool replaces its worker and the
//!   lease serves on), and a worker still running
//!   [`ProcessBackend::shutdown_grace`] after its pool shut down. Their
//!   messages name the limit.
//! - `Error::UnsupportedBackend`: a closure reached the pool (only possible
//!   through a type-erased backend; on `ProcessBackend` leases `submit` and
//!   `run` do not compile).
//!
//! # Processes
//!
//! Workers talk to the parent over their stdin and stdout (length-prefixed
//! postcard frames). On Unix a worker's stdout is redirected to its stderr
//! once the protocol has its own copy, so a stray `println!` in worker code
//! lands on stderr; elsewhere worker code must not write to stdout. A
//! worker runs one call at a time. Workers exit when their stdin closes or
//! their parent dies (even in the middle of a call), so they never outlive
//! the parent, and `stop()` returns only after every worker has exited and
//! been reaped. Unlike the thread backend, the process backend
//! can really stop running work: with
//! [`ProcessBackend::kill_on_hard_expiry`], revoking a lease kills its
//! pool's workers.
//!
//! On Unix each worker runs in a process group of its own, and every kill
//! (hard expiry, a broken pool, a time limit, the end of the shutdown
//! grace) takes the whole group: processes a worker starts do not outlive
//! it. When a worker exits, whatever is left in its group is killed as it
//! is reaped; a worker whose parent died (so nobody reaps it) kills its own
//! group as it exits. (A process that moves itself to another group or session
//! escapes this; the pool then stops reading its stderr shortly after the
//! worker is reaped.) Being in their own group, workers do not get the
//! terminal's `SIGINT`; they exit when the parent goes away.
//!
//! A pool that shuts down asks its workers to exit (their stdin closes)
//! and kills those still running after
//! [`ProcessBackend::shutdown_grace`] (default 5 s): a stuck or frozen
//! worker cannot make `stop()` hang, and its call fails with
//! `Error::Broken`. The threads serving a worker (its reader, the stderr
//! forwarder, the pool's watchdog) have all ended when `stop()` returns.
//!
//! # Resource controls
//!
//! Like Celery's `max_tasks_per_child` and `max_memory_per_child`, a
//! worker can be replaced (after its call, without failing anything) once
//! it has run [`jobs_per_worker`](ProcessBackend::jobs_per_worker) calls,
//! once older than [`max_worker_age`](ProcessBackend::max_worker_age), or
//! once its resident memory reaches
//! [`max_memory_per_worker`](ProcessBackend::max_memory_per_worker) (Linux).
//! [`memory_limit`](ProcessBackend::memory_limit) caps each worker's
//! address space (Unix, `setrlimit`), and
//! [`call_timeout`](ProcessBackend::call_timeout) bounds each call. All are
//! off by default and checked by `ManagerBuilder::build`
//! (`Error::InvalidConfig` for a value of 0 or an unsupported platform).
//!
//! Log records emitted in workers can be forwarded to the parent's logger:
//! see [`ProcessLogging`].

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod backend;
mod guard;
mod limits;
mod logging;
mod pool;
mod protocol;
mod registry;
mod worker;

pub use backend::ProcessBackend;
pub use logging::ProcessLogging;
pub use pool::ProcessPool;
pub use registry::Registry;
pub use worker::init;
