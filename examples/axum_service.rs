//! An HTTP service that runs CPU-heavy requests on leased pools: axum on
//! tokio, fail-fast backpressure (`503` with `Retry-After`), `/stats` as
//! JSON, `/metrics` for Prometheus, and a graceful shutdown on SIGTERM or
//! Ctrl-C that lets requests in flight finish.
//!
//! ```sh
//! cargo run -p leasepool --example axum_service --features serde,metrics
//! curl 'http://127.0.0.1:3000/work?ms=50'
//! curl 'http://127.0.0.1:3000/work?ms=50&wait_ms=200'
//! curl http://127.0.0.1:3000/stats
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! The address is the first argument, else `LEASEPOOL_ADDR`, else
//! `127.0.0.1:3000`; `LEASEPOOL_POOLS` sets the number of pools (default 2).
//! `docs/service.md` walks through it, with load numbers and what to alert
//! on.
//!
//! Routes:
//!
//! - `GET /work?ms=M`: hashes on a leased pool for `M` milliseconds
//!   (default 20, at most 10 000) and answers with what it computed. With
//!   no free pool it answers `503` at once; `&wait_ms=W` waits up to `W`
//!   milliseconds (at most 30 000) for one first.
//! - `GET /stats`: `manager.stats()` as JSON (durations in seconds).
//! - `GET /metrics`: every metric in the Prometheus text format.

use std::future::{Future, IntoFuture};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use leasepool::{Error, LeasedExecutorManager, ShutdownReport, ThreadBackend};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The longest `/work` job a request may ask for.
pub const MAX_WORK: Duration = Duration::from_secs(10);

/// The longest wait for a pool a `/work` request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What [`serve`] needs: the manager that lends the pools, the metrics
/// handle that renders `/metrics`, and two policies.
#[derive(Debug, Clone)]
pub struct Service {
    /// A started manager. `serve` shuts it down on the way out.
    pub manager: LeasedExecutorManager,
    /// The installed Prometheus recorder (see [`prometheus`]).
    pub metrics: PrometheusHandle,
    /// Sent as `Retry-After` (in whole seconds) when no pool is free.
    pub retry_after: Duration,
    /// After the shutdown signal: how long requests in flight may keep
    /// their leases before they are revoked.
    pub shutdown_deadline: Duration,
}

/// Installs the process-wide Prometheus recorder on the first call and
/// returns its handle (the same one on every later call).
///
/// Call it before building the manager, so that every metric the manager
/// records has a recorder to land in.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets (rather than the default summaries) so that
            // dashboards can aggregate and take quantiles, for example
            // `histogram_quantile(0.99, rate(..._bucket[5m]))`.
            const SECONDS: &[f64] = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(SECONDS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Serves HTTP on `listener` until `shutdown` completes, then shuts down
/// gracefully and returns the manager's report.
///
/// The shutdown sequence, once `shutdown` completes:
///
/// 1. The server stops accepting connections; requests in flight go on.
/// 2. At the same moment `manager.shutdown(deadline)` begins: new acquires
///    fail with `ShuttingDown` (a `503`), leases in flight keep running
///    until their requests release them, and any still held at the
///    deadline are revoked. This bounds the drain by the deadline.
/// 3. When the manager has shut down, the server gets one more second to
///    write the last responses and close its connections. Then `serve`
///    returns anyway: connections still open (a job that outlived its
///    revoked lease, a slow client) are left to the runtime, and end with
///    it.
pub async fn serve(
    service: Service,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<ShutdownReport> {
    let manager = service.manager.clone();
    let deadline = service.shutdown_deadline;

    // Without its own HTTP listener the exporter needs someone to run its
    // upkeep (draining histogram samples) now and then.
    let metrics = service.metrics.clone();
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });

    // The signal stops the server from accepting; requests in flight
    // (those holding a lease and those still waiting for one) finish
    // first, within the shutdown deadline.
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(service)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = signalled.send(());
    });
    let mut server = tokio::spawn(server.into_future());
    // The server ends on its own only after the signal (or if it failed).
    let _ = on_signal.await;
    let signalled_at = Instant::now();
    let drained = tokio::time::timeout(deadline, &mut server).await;

    // Then the manager. Leases still held now belong to requests that
    // overran the deadline: the shutdown revokes them at once.
    let report = manager
        .shutdown(deadline.saturating_sub(signalled_at.elapsed()))
        .await;

    let served = match drained {
        Ok(Ok(served)) => served,
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => match tokio::time::timeout(Duration::from_secs(1), &mut server).await {
            Ok(Ok(served)) => served,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                // A connection still open: a job that outlived its revoked
                // lease (threads cannot be killed), or a slow client. Stop
                // waiting for it; it ends with the runtime.
                eprintln!("connections still open after the shutdown: not waiting for them");
                server.abort();
                Ok(())
            }
        },
    };
    upkeep.abort();
    served.map(|()| report)
}

/// The routes, with every matched request counted in
/// `http_requests_total{route, status}` and timed in
/// `http_request_duration_seconds{route}`.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/work", get(work))
        .route("/stats", get(stats))
        .route("/metrics", get(render_metrics))
        .route_layer(middleware::from_fn(record_request))
        .with_state(Arc::new(service))
}

/// The query of `GET /work`.
#[derive(Debug, Deserialize)]
pub struct WorkQuery {
    /// How long to compute, in milliseconds (default 20).
    #[serde(default = "default_ms")]
    pub ms: u64,
    /// Wait up to this many milliseconds for a pool; absent: fail fast.
    pub wait_ms: Option<u64>,
}

fn default_ms() -> u64 {
    20
}

/// The answer of `GET /work`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkDone {
    /// Hash rounds computed.
    pub rounds: u64,
    /// The final hash, in hex.
    pub digest: String,
    /// The worker thread that computed it (`{name_prefix}-{pool}_{worker}`).
    pub worker: String,
}

async fn work(
    State(service): State<Arc<Service>>,
    Query(query): Query<WorkQuery>,
) -> Result<Json<WorkDone>, Response> {
    let budget = Duration::from_millis(query.ms);
    let wait = query.wait_ms.map(Duration::from_millis);
    if budget > MAX_WORK || wait > Some(MAX_WAIT) {
        let message = format!(
            "ms must be at most {} and wait_ms at most {}\n",
            MAX_WORK.as_millis(),
            MAX_WAIT.as_millis()
        );
        return Err((StatusCode::BAD_REQUEST, message).into_response());
    }

    // Borrow a pool: fail fast by default, or wait a bounded time. Never
    // wait unbounded in a request handler: a queue of waiting requests is
    // latency nobody asked for.
    let acquire = service.manager.acquire().owner("GET /work");
    let acquire = match wait {
        None => acquire.wait(false),
        Some(wait) => acquire.timeout(wait),
    };
    let lease = acquire
        .await
        .map_err(|e| error_response(&e, service.retry_after))?;

    // The blocking work runs on the leased pool, not on tokio's workers.
    // If the client goes away, this future is dropped: a job that has not
    // started is cancelled, and the lease is released either way.
    let done = lease.run(move || burn(budget)).await;
    lease.release().await;
    done.map(Json)
        .map_err(|e| error_response(&e, service.retry_after))
}

/// CPU-heavy blocking work: a hash chain, for `budget`.
fn burn(budget: Duration) -> WorkDone {
    let started = Instant::now();
    let mut digest: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rounds = 0;
    loop {
        for _ in 0..4096 {
            digest = splitmix64(digest);
        }
        rounds += 4096;
        if started.elapsed() >= budget {
            break;
        }
    }
    WorkDone {
        rounds,
        digest: format!("{digest:016x}"),
        worker: std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned(),
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The HTTP answer to a leasepool error. The body is the error's message,
/// which says what happened and what to do.
///
/// | error | status | `Retry-After` |
/// |---|---|---|
/// | `Unavailable`, `Timeout` (no free pool) | 503 | yes |
/// | `Broken`, `LeaseExpired` (retryable on a new lease) | 503 | yes |
/// | `ShuttingDown`, `NotStarted`, `Cancelled` | 503 | no |
/// | `Panicked` and everything else | 500 | no |
pub fn error_response(error: &Error, retry_after: Duration) -> Response {
    let status = match error {
        Error::ShuttingDown | Error::NotStarted | Error::Cancelled => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        // A panicking job, a configuration mistake, a backend that cannot
        // run this job: the same request would fail again.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (status, format!("{error}\n")).into_response();
    // Going away is not "try again in a second": send no Retry-After then,
    // so clients and load balancers go to another instance.
    if error.is_retryable() {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn stats(State(service): State<Arc<Service>>) -> Json<leasepool::ManagerStats> {
    Json(service.manager.stats())
}

async fn render_metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        service.metrics.render(),
    )
}

async fn record_request(path: MatchedPath, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let route = path.as_str().to_owned();
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Completes on Ctrl-C, or on SIGTERM (what orchestrators send) on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("cannot listen for Ctrl-C");
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .expect("cannot listen for SIGTERM")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutdown signal received: no new connections, finishing requests in flight");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LEASEPOOL_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let pools = match std::env::var("LEASEPOOL_POOLS") {
        Ok(pools) => pools.parse()?,
        Err(_) => 2,
    };

    // The recorder first, then the manager whose metrics it receives.
    let metrics = prometheus();
    // One single-threaded pool per request in flight, all created at
    // start-up: `pools` CPU-heavy requests run at once, the rest are
    // refused (or wait, with `wait_ms`).
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(pools)
        .min_pools(pools)
        .workers_per_pool(1)
        .default_lease(Duration::from_secs(30))
        .lease_grace(Duration::from_secs(5))
        .name_prefix("axum-service")
        .build()?;
    manager.start().await?;

    let listener = TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} with {pools} pools; try /work?ms=50, /stats, /metrics",
        listener.local_addr()?
    );

    let service = Service {
        manager,
        metrics,
        retry_after: Duration::from_secs(1),
        shutdown_deadline: Duration::from_secs(10),
    };
    let report = serve(service, listener, shutdown_signal()).await?;
    println!(
        "shut down in {:?}: {} leases still held after the drain, {} ended on their own, \
         {} revoked at the deadline, {} jobs cancelled, {} jobs still running, \
         {} workers still running",
        report.elapsed,
        report.leases_at_start,
        report.ended_on_their_own,
        report.revoked_at_deadline,
        report.jobs_cancelled,
        report.jobs_still_running,
        report.workers_still_running,
    );
    Ok(())
}
