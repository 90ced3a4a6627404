//! jwt-revoker: mesh-wide revocation of JWT access tokens, answering Envoy's ext_authz Check.
//!
//! - [`config`]: the configuration file, validated into a typed `Config`.
//! - [`token`]: finding the bearer token in a request, verifying it, caching verified tokens.
//! - [`revocation`]: the revocation model, the `Store` trait, and the in-memory replica.
//! - [`store`]: the `Store` implementations: Redis and the embedded file store.
//! - [`authz`]: the ext_authz `Check` service.
//! - [`admin`]: the admin API: gRPC, plus RFC 7009 and OIDC back-channel logout over HTTP.
//! - [`ssf`]: the OpenID Shared Signals receiver: Security Event Tokens → revocations.
//! - [`metrics`]: Prometheus metrics in an explicit registry, and the `/metrics` endpoint.
//! - [`not_found`]: 404 for requests that are not gRPC, on paths no service of a port serves.
//! - [`tls`]: TLS termination for the gRPC ports (rustls config, handshakes with a deadline).
//! - [`replication`]: the revocation feed (`Revocations/Watch`) for in-process enforcers,
//!   served and followed.
//! - [`server`]: wires the services, ports, health, TLS, metrics and shutdown together.
//! - [`cli`]: the command line: `serve` and the admin client commands.
//! - [`clock`], [`report`]: Unix time, and errors formatted with their sources.

pub mod admin;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod not_found;
pub mod replication;
pub mod report;
pub mod revocation;
pub mod server;
pub mod ssf;
pub mod store;
pub mod tls;
pub mod token;
