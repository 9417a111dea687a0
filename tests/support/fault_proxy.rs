//! A fault-injecting HTTP proxy between the function's S3 client and the emulator. On a chosen
//! share of requests it answers `503 SlowDown`, answers `500 InternalError`, resets the
//! connection, or stalls past the client's attempt timeout — always before forwarding, so a
//! faulted request never reaches S3 and a failure reported to the caller is a copy not made.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub slow_down: AtomicU64,
    pub internal_error: AtomicU64,
    pub reset: AtomicU64,
    pub stalled: AtomicU64,
}

impl FaultStats {
    pub fn faults(&self) -> u64 {
        self.slow_down.load(Ordering::Relaxed)
            + self.internal_error.load(Ordering::Relaxed)
            + self.reset.load(Ordering::Relaxed)
            + self.stalled.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "requests {}, forwarded {}, faults {} (503 SlowDown {}, 500 InternalError {}, connection reset {}, stalled {})",
            self.requests.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
            self.faults(),
            self.slow_down.load(Ordering::Relaxed),
            self.internal_error.load(Ordering::Relaxed),
            self.reset.load(Ordering::Relaxed),
            self.stalled.load(Ordering::Relaxed),
        )
    }
}

/// A running proxy.
pub struct FaultProxy {
    pub endpoint: String,
    pub stats: Arc<FaultStats>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for Reset {}

impl FaultProxy {
    /// Starts a proxy to `upstream` faulting `percent` of requests (in equal shares of the four
    /// kinds); a stall lasts `stall`.
    pub async fn start(upstream: &str, percent: u64, stall: Duration) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stats = Arc::new(FaultStats::default());
        let upstream: Uri = upstream.parse().unwrap();
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let shared = Arc::clone(&stats);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, stats) =
                    (client.clone(), upstream.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (client, upstream, stats) =
                            (client.clone(), upstream.clone(), Arc::clone(&stats));
                        async move { handle(request, &client, &upstream, &stats, percent, stall).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy { endpoint, stats }
    }
}

async fn handle(
    mut request: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    stats: &FaultStats,
    percent: u64,
    stall: Duration,
) -> Result<Response<ProxyBody>, Reset> {
    let number = stats.requests.fetch_add(1, Ordering::Relaxed);
    // A fixed pseudo-random sequence: the same share of faults on every run.
    let draw = number.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) % 400;
    if draw < percent * 4 {
        match draw % 4 {
            0 => {
                stats.slow_down.fetch_add(1, Ordering::Relaxed);
                return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"));
            }
            1 => {
                stats.internal_error.fetch_add(1, Ordering::Relaxed);
                return Ok(error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
            }
            2 => {
                stats.reset.fetch_add(1, Ordering::Relaxed);
                return Err(Reset);
            }
            _ => {
                stats.stalled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(stall).await;
                return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"));
            }
        }
    }
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = format!(
        "http://{}{path}",
        upstream.authority().map(|a| a.as_str()).unwrap_or_default()
    )
    .parse()
    .unwrap();
    match client.request(request).await {
        Ok(response) => Ok(response.map(|body| body.boxed())),
        Err(_) => Err(Reset),
    }
}

fn error(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap()
}
