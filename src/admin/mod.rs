//! The admin API: revoke, unrevoke, inspect.
//!
//! - [`pb`]: the generated code for `proto/jwtrevoker/admin/v1/admin.proto`.
//! - [`revoker`]: the operations on the model, shared by every admin front end.
//! - [`error`]: admin errors and the one table mapping them to gRPC codes.
//! - [`auth`]: the bearer admin-token check.
//! - [`convert`]: between protobuf messages and the model, naming the field at fault.
//! - [`service`]: the tonic `RevocationAdmin` service.
//! - [`http`]: the HTTP endpoints on the same port: RFC 7009 `/revoke`, `/backchannel-logout`.
//! - [`gtr`]: Global Token Revocation, `/global-token-revocation`.
//! - [`ssf_push`]: RFC 8935 push delivery of Security Event Tokens, `/ssf/push/{stream}`.
//! - [`ssf_status`]: a Shared Signals stream's status as the `GetStatus` message.

pub mod auth;
pub mod convert;
pub mod error;
pub mod gtr;
pub mod http;
pub mod pb;
pub mod revoker;
pub mod service;
pub mod ssf_push;
pub mod ssf_status;

pub use error::AdminError;
pub use revoker::{RevokeResult, Revoker};
pub use service::AdminService;
