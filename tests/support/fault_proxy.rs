//! A fault-injecting HTTP proxy between the function's S3 client and the emulator. On a chosen
//! share of requests it answers `503 SlowDown`, answers `500 InternalError` or resets the
//! connection, all before forwarding (the request never reaches S3), or loses the reply: it
//! forwards the request, lets S3 apply it, and then either holds the response far longer than the
//! client's attempt timeout (a bounded number of times: the client's timeout fires by design) or
//! cuts the connection instead of answering. A lost reply is what a real network does to a
//! request S3 has applied; the caller cannot tell it from a failure. It can also delay every
//! request it forwards, by a time drawn between two bounds: the latency of S3 over a network, for
//! the benchmarks (`benches/driver.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Which requests the proxy faults, and how.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Share of requests faulted, in percent, in equal parts: 503, 500, reset before forwarding,
    /// reply lost after forwarding.
    pub percent: u64,
    /// How long a held reply is kept back: several times the client's attempt timeout, so that
    /// the timeout fires whatever the machine's speed.
    pub hold: Duration,
    /// How many replies are held; every later lost reply is cut instead (no wait).
    pub max_holds: u64,
    /// The least and most time added before forwarding each request (zero for none).
    pub latency: (Duration, Duration),
    /// Answers the object tagging API itself, as for objects without tags, for a server that
    /// does not implement it (Garage, in the benchmarks).
    pub untagged: bool,
}

/// What the proxy saw and did.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub slow_down: AtomicU64,
    pub internal_error: AtomicU64,
    pub reset: AtomicU64,
    /// Forwarded, applied by S3, and the response held past the client's timeout.
    pub held: AtomicU64,
    /// Forwarded, applied by S3, and the connection cut instead of the response.
    pub cut: AtomicU64,
    /// The slowest round trip to the emulator of a forwarded request, in milliseconds: the
    /// figure the client's attempt timeout must stay far above.
    pub slowest_forward_ms: AtomicU64,
    /// Requests the proxy is answering now, and the most it answered at once: the connections
    /// the client held open to it.
    pub in_flight: AtomicU64,
    pub most_in_flight: AtomicU64,
}

impl FaultStats {
    pub fn faults(&self) -> u64 {
        self.slow_down.load(Ordering::Relaxed)
            + self.internal_error.load(Ordering::Relaxed)
            + self.reset.load(Ordering::Relaxed)
            + self.replies_lost()
    }

    /// Requests S3 applied whose reply the client never got.
    pub fn replies_lost(&self) -> u64 {
        self.held.load(Ordering::Relaxed) + self.cut.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "requests {}, forwarded {}, faults {} (503 SlowDown {}, 500 InternalError {}, connection reset {}, reply held {}, reply cut {}); slowest forwarded round trip {} ms",
            self.requests.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
            self.faults(),
            self.slow_down.load(Ordering::Relaxed),
            self.internal_error.load(Ordering::Relaxed),
            self.reset.load(Ordering::Relaxed),
            self.held.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
            self.slowest_forward_ms.load(Ordering::Relaxed),
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

/// A request being answered, counted in [`FaultStats::in_flight`] until it is dropped (answered,
/// or given up when its connection closes).
struct Answering<'a>(&'a FaultStats);

impl<'a> Answering<'a> {
    fn new(stats: &'a FaultStats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.most_in_flight.fetch_max(now, Ordering::Relaxed);
        Answering(stats)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the proxy does with one request.
enum Fault {
    SlowDown,
    InternalError,
    Reset,
    LoseReply,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` faulting requests as `plan` says.
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
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
                        async move {
                            let _answering = Answering::new(&stats);
                            handle(request, &client, &upstream, &stats, plan).await
                        }
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

/// The fault for the `number`th request: a fixed pseudo-random sequence, so that every run
/// faults the same share.
fn draw(number: u64, percent: u64) -> Option<Fault> {
    let draw = number.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) % 400;
    if draw >= percent * 4 {
        return None;
    }
    Some(match draw % 4 {
        0 => Fault::SlowDown,
        1 => Fault::InternalError,
        2 => Fault::Reset,
        _ => Fault::LoseReply,
    })
}

/// The delay for the `number`th request: spread evenly between the bounds, in a fixed
/// pseudo-random order.
fn latency(number: u64, (least, most): (Duration, Duration)) -> Duration {
    let spread = most.saturating_sub(least).as_micros() as u64;
    let draw = number.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(31);
    least + Duration::from_micros(draw % (spread + 1))
}

async fn handle(
    request: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    stats: &FaultStats,
    plan: FaultPlan,
) -> Result<Response<ProxyBody>, Reset> {
    let number = stats.requests.fetch_add(1, Ordering::Relaxed);
    if plan.untagged
        && let Some(answer) = untagged(&request)
    {
        return Ok(answer);
    }
    let lose_reply = match draw(number, plan.percent) {
        None => false,
        Some(Fault::SlowDown) => {
            stats.slow_down.fetch_add(1, Ordering::Relaxed);
            return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown"));
        }
        Some(Fault::InternalError) => {
            stats.internal_error.fetch_add(1, Ordering::Relaxed);
            return Ok(error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"));
        }
        Some(Fault::Reset) => {
            stats.reset.fetch_add(1, Ordering::Relaxed);
            return Err(Reset);
        }
        Some(Fault::LoseReply) => true,
    };
    let delay = latency(number, plan.latency);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = forward(request, client, upstream, stats).await?;
    if !lose_reply {
        return Ok(response.map(|body| body.boxed()));
    }
    // The request was applied; read the whole reply, so the emulator is done with it, then lose it.
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let holding = stats
        .held
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            (held < plan.max_holds).then_some(held + 1)
        })
        .is_ok();
    if !holding {
        stats.cut.fetch_add(1, Ordering::Relaxed);
        return Err(Reset);
    }
    tokio::time::sleep(plan.hold).await;
    Ok(Response::from_parts(parts, full(body)))
}

/// Sends `request` to the emulator and records how long the round trip took.
async fn forward(
    mut request: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    stats: &FaultStats,
) -> Result<Response<Incoming>, Reset> {
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
    let started = Instant::now();
    let response = client.request(request).await.map_err(|_| Reset)?;
    let millis = started.elapsed().as_millis() as u64;
    stats
        .slowest_forward_ms
        .fetch_max(millis, Ordering::Relaxed);
    Ok(response)
}

/// The answer to an object tagging request, as for an object without tags; `None` for any other
/// request.
fn untagged(request: &Request<Incoming>) -> Option<Response<ProxyBody>> {
    let tagging = request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "tagging" || pair == "tagging=")
    });
    if !tagging {
        return None;
    }
    let (status, body) = match *request.method() {
        hyper::Method::GET => (
            StatusCode::OK,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Tagging><TagSet></TagSet></Tagging>",
        ),
        hyper::Method::DELETE => (StatusCode::NO_CONTENT, ""),
        _ => (StatusCode::OK, ""),
    };
    Some(
        Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .body(full(Bytes::from(body)))
            .unwrap(),
    )
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn error(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(full(Bytes::from(body)))
        .unwrap()
}
