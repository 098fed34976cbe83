//! `examples/axum_service.rs` driven over real HTTP on loopback: the
//! 200/503 split under overload, `Retry-After`, `/stats` as JSON,
//! `/metrics` in the Prometheus text format, and a graceful shutdown that
//! lets requests in flight finish.
//!
//! Each test starts its own service on an ephemeral port, with its own
//! manager (named after the test, which labels its leasepool metrics).

#[path = "../../../examples/axum_service.rs"]
// `main` and its signal handling are not used here, and what the example
// exports is private to this test.
#[allow(dead_code, unreachable_pub)]
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use leasepool::{Error, LeasedExecutorManager, ShutdownReport, ThreadBackend};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on every wait for a condition: generous, the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(60);

/// A service running on a loopback port, and the means to stop it.
struct Running {
    addr: SocketAddr,
    manager: LeasedExecutorManager,
    client: Client<HttpConnector, Empty<Bytes>>,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<ShutdownReport>>,
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// Starts the example's service with `pools` single-threaded pools and a
/// manager named `name`.
async fn start(name: &str, pools: usize) -> Running {
    let metrics = service::prometheus();
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(pools)
        .min_pools(pools)
        .workers_per_pool(1)
        .default_lease(Duration::from_secs(120))
        .name_prefix(name)
        .build()
        .expect("valid configuration");
    manager.start().await.expect("manager starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(service::serve(
        service::Service {
            manager: manager.clone(),
            metrics,
            retry_after: Duration::from_secs(2),
            shutdown_deadline: Duration::from_secs(60),
        },
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = Client::builder(TokioExecutor::new()).build_http();
    Running {
        addr,
        manager,
        client,
        stop,
        served,
    }
}

impl Running {
    async fn get(&self, path: &str) -> Reply {
        get(&self.client, self.addr, path).await
    }

    /// Sends the shutdown signal and returns what `serve` returned.
    async fn shut_down(self) -> ShutdownReport {
        self.stop.send(()).expect("serve is running");
        tokio::time::timeout(PATIENCE, self.served)
            .await
            .expect("serve returns after the signal")
            .expect("serve did not panic")
            .expect("serve had no I/O error")
    }
}

async fn get(client: &Client<HttpConnector, Empty<Bytes>>, addr: SocketAddr, path: &str) -> Reply {
    let uri = format!("http://{addr}{path}").parse().expect("valid URI");
    let response = tokio::time::timeout(PATIENCE, client.get(uri))
        .await
        .expect("an answer in time")
        .expect("the request succeeds at the HTTP level");
    let header = |name: hyper::header::HeaderName| {
        let value = response.headers().get(name)?;
        Some(value.to_str().expect("an ASCII header").to_owned())
    };
    let status = response.status();
    let retry_after = header(hyper::header::RETRY_AFTER);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body")
        .to_bytes();
    Reply {
        status,
        retry_after,
        content_type,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

/// Polls `condition` until it holds; panics after [`PATIENCE`].
async fn wait_until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the sample `series` (name and labels, exactly as rendered)
/// in a Prometheus text exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("a numeric sample"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_runs_on_a_leased_pool_and_answers_json() {
    let running = start("axum-work", 1).await;

    let reply = running.get("/work?ms=5").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let done: service::WorkDone = serde_json::from_str(&reply.body).expect("a WorkDone");
    assert!(done.rounds > 0, "{done:?}");
    assert_eq!(done.digest.len(), 16, "{done:?}");
    // It ran on the manager's worker thread, not on a tokio thread.
    assert!(done.worker.starts_with("axum-work-"), "{done:?}");

    // Bad input is the client's fault, and takes no lease.
    let too_long = running.get("/work?ms=10001").await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST, "{too_long:?}");
    let waits_too_long = running.get("/work?ms=1&wait_ms=30001").await;
    assert_eq!(
        waits_too_long.status,
        StatusCode::BAD_REQUEST,
        "{waits_too_long:?}"
    );
    let not_a_number = running.get("/work?ms=soon").await;
    assert_eq!(
        not_a_number.status,
        StatusCode::BAD_REQUEST,
        "{not_a_number:?}"
    );

    let counters = running.manager.stats().counters;
    assert_eq!(counters.acquired, 1);
    assert_eq!(counters.jobs_completed, 1);
    assert_eq!(counters.leases_released, 1);
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_means_503_with_retry_after_until_it_is_free() {
    let running = start("axum-busy", 1).await;

    // Hold the only pool from outside HTTP: every request now finds none.
    let lease = running.manager.acquire().owner("the test").await.unwrap();

    let fail_fast = running.get("/work?ms=1").await;
    assert_eq!(
        fail_fast.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{fail_fast:?}"
    );
    assert_eq!(fail_fast.retry_after.as_deref(), Some("2"));
    assert!(
        fail_fast.body.contains("no executor pool is free"),
        "{fail_fast:?}"
    );

    let timed_out = running.get("/work?ms=1&wait_ms=50").await;
    assert_eq!(
        timed_out.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{timed_out:?}"
    );
    assert_eq!(timed_out.retry_after.as_deref(), Some("2"));
    assert!(timed_out.body.contains("timed out"), "{timed_out:?}");

    let counters = running.manager.stats().counters;
    assert_eq!((counters.unavailable, counters.timed_out), (1, 1));

    // A waiting request gets the pool as soon as it is released.
    let waiting = {
        let client = running.client.clone();
        let addr = running.addr;
        tokio::spawn(async move { get(&client, addr, "/work?ms=1&wait_ms=30000").await })
    };
    let manager = running.manager.clone();
    wait_until("the request waits for the pool", || {
        let waiting = manager.stats().waiting;
        async move { waiting == 1 }
    })
    .await;
    lease.release().await;
    let served = waiting.await.unwrap();
    assert_eq!(served.status, StatusCode::OK, "{served:?}");
    assert_eq!(served.retry_after, None);
    assert_eq!(running.manager.stats().counters.acquired_after_wait, 1);

    assert_eq!(running.get("/work?ms=1").await.status, StatusCode::OK);
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_splits_into_200_and_503_and_nothing_else() {
    let running = start("axum-overload", 1).await;
    let (mut ok, mut refused) = (0_u64, 0_u64);
    let deadline = Instant::now() + PATIENCE;

    // Bursts of 16 concurrent 50 ms requests on one pool, until both
    // answers have been seen (the first burst almost always suffices).
    while ok == 0 || refused == 0 {
        assert!(
            Instant::now() < deadline,
            "{ok} OK and {refused} refused so far"
        );
        let burst: Vec<_> = (0..16)
            .map(|_| {
                let client = running.client.clone();
                let addr = running.addr;
                tokio::spawn(async move { get(&client, addr, "/work?ms=50").await })
            })
            .collect();
        for reply in burst {
            let reply = reply.await.unwrap();
            match reply.status {
                StatusCode::OK => {
                    assert_eq!(reply.retry_after, None, "{reply:?}");
                    ok += 1;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(reply.retry_after.as_deref(), Some("2"), "{reply:?}");
                    refused += 1;
                }
                _ => panic!("neither 200 nor 503: {reply:?}"),
            }
        }
    }

    // Every answer is accounted for by the manager's counters.
    let counters = running.manager.stats().counters;
    assert_eq!(counters.acquired, ok);
    assert_eq!(counters.jobs_completed, ok);
    assert_eq!(counters.unavailable, refused);
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_is_the_manager_snapshot_as_json() {
    let running = start("axum-stats", 2).await;
    assert_eq!(running.get("/work?ms=1").await.status, StatusCode::OK);
    let lease = running.manager.acquire().owner("holder").await.unwrap();

    let reply = running.get("/stats").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let stats: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(stats["backend"], "thread");
    assert_eq!(stats["max_pools"], 2);
    assert_eq!(stats["workers_per_pool"], 1);
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["leased"], 1);
    assert_eq!(stats["available"], 1);
    assert_eq!(stats["waiting"], 0);
    let leases = stats["leases"].as_array().expect("a list of leases");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["owner"], "holder");
    // Durations are seconds, as numbers.
    let hard = leases[0]["until_hard_expiry"].as_f64().expect("seconds");
    assert!(hard > 100.0 && hard <= 135.0, "{hard}");
    let counters = &stats["counters"];
    assert_eq!(counters["acquired"], 2);
    assert_eq!(counters["jobs_completed"], 1);
    assert_eq!(counters["leases_released"], 1);
    assert_eq!(counters["pools_created"], 2);
    assert!(counters["wait_time_max"].is_f64(), "{counters}");

    lease.release().await;
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_rendered_in_the_prometheus_text_format() {
    let name = "axum-metrics";
    let running = start(name, 1).await;
    assert_eq!(running.get("/work?ms=1").await.status, StatusCode::OK);
    let lease = running.manager.acquire().await.unwrap();
    let refused = running.get("/work?ms=1").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    lease.release().await;

    let reply = running.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(
        reply
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain"),
        "{reply:?}"
    );
    let text = &reply.body;
    // The recorder is shared by every test in this binary: other tests'
    // requests add to these series, so they are at least ours.
    let ok = sample(text, r#"http_requests_total{route="/work",status="200"}"#);
    assert!(ok >= Some(1.0), "{text}");
    let unavailable = sample(text, r#"http_requests_total{route="/work",status="503"}"#);
    assert!(unavailable >= Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );
    let timed = sample(
        text,
        r#"http_request_duration_seconds_count{route="/work"}"#,
    );
    assert!(timed >= Some(2.0), "{text}");

    // This manager's own series, labelled with its name: exact.
    let series = |metric: &str| format!(r#"{metric}{{manager="{name}"}}"#);
    assert_eq!(
        sample(text, &series("leasepool_acquired_total")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(text, &series("leasepool_acquire_unavailable_total")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(text, &series("leasepool_jobs_completed_total")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(text, &series("leasepool_pools")),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE leasepool_acquire_wait_seconds histogram"),
        "{text}"
    );
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    const IN_FLIGHT: usize = 3;
    let running = start("axum-shutdown", IN_FLIGHT).await;

    // Slow requests (3 s each), one per pool.
    let slow: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let client = running.client.clone();
            let addr = running.addr;
            tokio::spawn(async move { get(&client, addr, "/work?ms=3000").await })
        })
        .collect();
    let manager = running.manager.clone();
    wait_until("every slow request holds a lease with its job", || {
        let stats = manager.stats();
        async move {
            stats.leases.len() == IN_FLIGHT && stats.leases.iter().all(|l| l.pending_jobs == 1)
        }
    })
    .await;
    assert!(slow.iter().all(|request| !request.is_finished()));
    // One more request, in flight too: it waits for a pool.
    let queued = {
        let client = running.client.clone();
        let addr = running.addr;
        tokio::spawn(async move { get(&client, addr, "/work?ms=10&wait_ms=30000").await })
    };
    wait_until("the extra request waits for a pool", || {
        let stats = manager.stats();
        async move { stats.waiting == 1 }
    })
    .await;

    let addr = running.addr;
    let report = running.shut_down().await;

    // Every request in flight got its answer...
    for request in slow {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let done: service::WorkDone = serde_json::from_str(&reply.body).expect("a WorkDone");
        assert!(done.rounds > 0);
    }
    // ... the one that was waiting for a pool too ...
    let reply = queued.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // ... and the manager shut down once they had: no lease was left to
    // revoke, nothing was cut ...
    assert_eq!(report.leases_at_start, 0, "{report:?}");
    assert_eq!(report.revoked_at_deadline, 0, "{report:?}");
    assert_eq!(report.jobs_cancelled, 0, "{report:?}");
    assert_eq!(report.jobs_still_running, 0, "{report:?}");
    assert_eq!(report.workers_still_running, 0, "{report:?}");
    assert_eq!(
        manager.stats().counters.jobs_completed,
        IN_FLIGHT as u64 + 1
    );
    assert!(!manager.is_started());
    // ... and the port is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn leasepool_errors_map_to_honest_statuses() {
    let retry = Duration::from_millis(1500);
    let cases = [
        (
            Error::Unavailable {
                max_pools: 1,
                owner_limit: None,
            },
            503,
            Some("2"),
        ),
        (Error::Timeout(Duration::from_millis(5)), 503, Some("2")),
        (Error::Broken("a worker died".into()), 503, Some("2")),
        (Error::ShuttingDown, 503, None),
        (Error::NotStarted, 503, None),
        (Error::Cancelled, 503, None),
        (Error::Panicked("boom".into()), 500, None),
        (Error::invalid("lease", "must be greater than 0"), 500, None),
        (Error::Serialization("bad bytes".into()), 500, None),
    ];
    for (error, status, retry_after) in cases {
        let response = service::error_response(&error, retry);
        assert_eq!(response.status().as_u16(), status, "{error:?}");
        let header = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap());
        assert_eq!(header, retry_after, "{error:?}");
        assert_eq!(header.is_some(), error.is_retryable(), "{error:?}");
    }
}
