//! The ext_authz Check path: request headers → bearer token → verified claims → revocation
//! lookup → `CheckResponse`.
//!
//! - [`decision`]: the decision itself, independent of gRPC.
//! - [`logout`]: logout routes, where Check records a revocation before allowing.
//! - [`response`]: a decision as Envoy's `CheckResponse` (RFC 6750 denials, claim headers,
//!   dynamic metadata).
//! - [`service`]: the tonic `Authorization` service.

pub mod decision;
pub mod logout;
pub mod response;
pub mod service;

pub use decision::{Decider, Decision, Denial};
pub use logout::LogoutRoutes;
pub use service::AuthzService;
