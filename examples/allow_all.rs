//! An always-allow ext_authz Check server built on the same tonic stack as jwt-revoker's
//! authorization port (same server settings, same health service): the baseline that the
//! benchmarks compare jwt-revoker with. A benchmark tool, not part of the product.
//!
//! ```text
//! cargo run --release --example allow_all -- --addr 127.0.0.1:9291
//! ```
//!
//! Prints `listening on <addr>` once it accepts connections; stops on SIGINT or SIGTERM.

use anyhow::{Context, Result};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

// The same allocator as `jwt-revoker serve`, so the baseline differs only in the Check logic.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve an always-allow ext_authz Check.
#[derive(Debug, Parser)]
#[command(name = "allow_all", about = "An always-allow ext_authz Check server")]
struct Args {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

/// Allows every request.
#[derive(Debug)]
struct AllowAll;

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: tonic::Code::Ok as i32,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..CheckResponse::default()
        }))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("listening on {}", listener.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    // As jwt-revoker's authorization port (src/server.rs).
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health)
        .add_service(AuthorizationServer::new(AllowAll))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            jwt_revoker::server::shutdown_signal(),
        )
        .await?;
    Ok(())
}
