//! The command line: `serve`, and the admin client commands (`revoke`, `unrevoke`, `get`,
//! `list`, `status`) that talk to a running server's admin API.

pub mod client;
pub mod output;
pub mod serve;
pub mod ssf_output;
pub mod telemetry;

use clap::{Parser, Subcommand};

/// Mesh-wide revocation of JWT access tokens for Envoy and Istio (ext_authz).
#[derive(Debug, Parser)]
#[command(name = "jwt-revoker", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the ext_authz Check port and the admin port.
    Serve(serve::ServeArgs),
    /// Revoke a token (raw, or issuer + jti), a session, a subject or a client.
    Revoke(client::RevokeArgs),
    /// Remove a revocation (re-approve).
    Unrevoke(client::TargetArgs),
    /// Show one revocation.
    Get(client::TargetArgs),
    /// List live revocations.
    List(client::ListArgs),
    /// Show the server's store and replica state, and its Shared Signals streams.
    Status(client::StatusArgs),
}
