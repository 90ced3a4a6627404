//! A load generator for ext_authz Check servers (jwt-revoker, or the `allow_all` baseline):
//! sends `Check` requests carrying bearer tokens over a few HTTP/2 connections, keeping a
//! fixed number in flight, and prints one JSON line: checks/s, p50/p99 latency, outcomes.
//! A benchmark tool, not part of the product.
//!
//! ```text
//! cargo run --release --example check_load -- --addr http://127.0.0.1:9191 \
//!     [--alg RS256] [--tokens 1000] [--connections 2] [--concurrency 32] \
//!     [--requests 200000] [--duration 10s] [--warmup 2000]
//! ```
//!
//! Bounded both ways: it stops after `--requests` checks or `--duration`, whichever comes
//! first.
//!
//! It shares the machine with the server it measures, so it keeps its own work small and
//! the same whatever the server answers: each request is encoded once up front, and of each
//! `CheckResponse` it reads only whether it carries an `ok_response` (a full decode would
//! cost the generator more for a server whose allow carries claims than for one whose
//! allow is empty, and lower that server's measured throughput for work it did not do).
//!
//! Tokens are minted with the fixture keys of `tests/fixtures/` (issuer
//! `https://issuer.test`, audience `api`), as a jwt-revoker trusting that JWKS accepts them.

// The benchmarks' shared support module, for its tokens and Check requests.
#[path = "../benches/support/mod.rs"]
mod support;

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes};
use clap::Parser;
use jsonwebtoken::Algorithm;
use prost::Message;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

/// The method called.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Of a `CheckResponse`, only `ok_response` (tag 3 of its `http_response` oneof); prost
/// skips the other fields.
#[derive(Clone, PartialEq, prost::Message)]
struct Outcome {
    #[prost(bytes = "bytes", optional, tag = "3")]
    ok_response: Option<Bytes>,
}

/// Sends pre-encoded `CheckRequest`s and reads [`Outcome`]s.
#[derive(Debug, Clone, Copy, Default)]
struct LoadCodec;

impl Codec for LoadCodec {
    type Encode = Bytes;
    type Decode = Outcome;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for LoadCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for LoadCodec {
    type Item = Outcome;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Outcome>, Status> {
        Outcome::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

/// One Check of a pre-encoded request.
async fn check(client: &mut tonic::client::Grpc<Channel>, request: Bytes) -> Result<Outcome> {
    client.ready().await.context("the channel is not ready")?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(CHECK_PATH);
    let response = client
        .unary(tonic::Request::new(request), path, LoadCodec)
        .await?;
    Ok(response.into_inner())
}

/// Drive ext_authz Check at a server.
#[derive(Debug, Parser)]
#[command(
    name = "check_load",
    about = "Load generator for ext_authz Check servers"
)]
struct Args {
    /// The server, e.g. `http://127.0.0.1:9191` (loopback only).
    #[arg(long)]
    addr: String,
    /// The tokens' algorithm: RS256, ES256 or EdDSA.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// How many distinct tokens to cycle through.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Checks kept in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many timed checks.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Stop after this long, even if fewer checks were made.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Untimed checks first (each token once at least, to fill caches).
    #[arg(long, default_value_t = 2000)]
    warmup: u64,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    allowed: u64,
    denied: u64,
    errors: u64,
}

/// Runs checks until `budget` is spent or `deadline` passes.
async fn worker(
    mut client: tonic::client::Grpc<Channel>,
    requests: Arc<Vec<Bytes>>,
    first: usize,
    budget: Arc<AtomicU64>,
    deadline: Instant,
    record: bool,
) -> Tally {
    let mut tally = Tally::default();
    let mut next = first;
    while Instant::now() < deadline
        && budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    {
        next = (next + 1) % requests.len();
        let started = Instant::now();
        let answer = check(&mut client, requests[next].clone()).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(Outcome {
                ok_response: Some(_),
            }) => tally.allowed += 1,
            Ok(_) => tally.denied += 1,
            Err(_) => tally.errors += 1,
        }
        if record {
            tally
                .latencies_ns
                .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    tally
}

/// Runs `count` checks (at most, and for at most `duration`) with `concurrency` workers.
async fn run(
    clients: &[tonic::client::Grpc<Channel>],
    requests: &Arc<Vec<Bytes>>,
    concurrency: usize,
    count: u64,
    duration: Duration,
    record: bool,
) -> Result<(Tally, Duration)> {
    let budget = Arc::new(AtomicU64::new(count));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            tokio::spawn(worker(
                clients[i % clients.len()].clone(),
                Arc::clone(requests),
                i * requests.len() / concurrency,
                Arc::clone(&budget),
                deadline,
                record,
            ))
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.context("a worker failed")?;
        total.latencies_ns.extend(tally.latencies_ns);
        total.allowed += tally.allowed;
        total.denied += tally.denied;
        total.errors += tally.errors;
    }
    Ok((total, started.elapsed()))
}

fn percentile_us(sorted_ns: &[u64], fraction: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_ns.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let url = url::Url::parse(&args.addr).context("--addr is not a URL")?;
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) {
        bail!("--addr must be a loopback address");
    }
    let alg = Algorithm::from_str(&args.alg).context("--alg")?;
    if args.tokens == 0 || args.connections == 0 || args.concurrency == 0 {
        bail!("--tokens, --connections and --concurrency must be at least 1");
    }
    let requests: Arc<Vec<Bytes>> = Arc::new(
        support::tokens(alg, args.tokens)
            .iter()
            .map(|token| Bytes::from(support::check_request(token).encode_to_vec()))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut clients = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let channel = Endpoint::from_shared(args.addr.clone())?
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("cannot connect to {}", args.addr))?;
            clients.push(tonic::client::Grpc::new(channel));
        }
        let warmup = args.warmup.max(args.tokens as u64);
        run(
            &clients,
            &requests,
            args.concurrency,
            warmup,
            args.duration,
            false,
        )
        .await?;
        let (mut tally, elapsed) = run(
            &clients,
            &requests,
            args.concurrency,
            args.requests,
            args.duration,
            true,
        )
        .await?;
        tally.latencies_ns.sort_unstable();
        let checks = tally.allowed + tally.denied + tally.errors;
        let report = serde_json::json!({
            "target": args.addr,
            "checks": checks,
            "seconds": elapsed.as_secs_f64(),
            "checks_per_sec": checks as f64 / elapsed.as_secs_f64(),
            "p50_us": percentile_us(&tally.latencies_ns, 0.50),
            "p99_us": percentile_us(&tally.latencies_ns, 0.99),
            "allowed": tally.allowed,
            "denied": tally.denied,
            "errors": tally.errors,
        });
        println!("{report}");
        Ok(())
    })
}
