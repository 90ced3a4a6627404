//! Prometheus metrics, registered into an explicit `prometheus_client` registry that
//! `server.rs` builds and serves on `/metrics`; every label is a bounded `&'static str`.
//!
//! - [`check`]: Check decisions by outcome and reason, and Check latency.
//! - [`admin`]: a tower layer counting admin RPCs by method and gRPC code.
//! - [`store`]: a `Store` wrapper counting store errors, and the skipped-entries counter.
//! - [`replica`]: revocation-set size by kind and replica staleness, read at scrape time.
//! - [`cache`]: the verified-token cache's counted bytes and entries, read at scrape time.
//! - [`http`]: the `/metrics` HTTP endpoint.

pub mod admin;
pub mod cache;
pub mod check;
pub mod http;
pub mod replica;
pub mod store;

pub use admin::AdminRpcLayer;
pub use check::CheckMetrics;
pub use store::MeteredStore;
