//! The ext_authz Check path: request headers → bearer token → verified claims → revocation
//! lookup → `CheckResponse`.
//!
//! - [`challenge`]: the RFC 6750 texts of a refusal, shared with the Envoy module.
//! - [`request`]: the parts of Envoy's `CheckRequest` that Check reads, decoded without copies.
//! - [`decision`]: the decision itself, independent of gRPC.
//! - [`logout`]: logout routes, where Check records a revocation before allowing.
//! - [`response`]: a decision as Envoy's `CheckResponse` (RFC 6750 denials, claim headers,
//!   dynamic metadata).
//! - [`strip`]: with `strip_authorization`, the request's other copies of the token removed.
//! - [`service`]: Check from request to reply.
//! - [`grpc`]: `envoy.service.auth.v3.Authorization` on tonic, with its own codec.

pub mod challenge;
pub mod decision;
pub mod grpc;
#[cfg(test)]
mod lifetime_walk;
pub mod logout;
pub mod request;
pub mod response;
pub mod service;
pub mod strip;

pub use decision::{Decider, Decision, Denial};
pub use grpc::CheckServer;
pub use logout::LogoutRoutes;
pub use request::{CheckedRequest, RequestHeaders};
pub use service::AuthzService;
