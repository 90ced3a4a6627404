//! OpenID Shared Signals receiver: Security Event Tokens (RFC 8417, SSF 1.0, CAEP 1.0,
//! RISC 1.0) turned into revocations. The HTTP adapters live elsewhere (push in
//! `admin::ssf_push`); this module is the pipeline they share.
//!
//! - [`secevent`]: parsing a SET from bytes, every rule that needs no key.
//! - [`subject`]: subject identifiers normalised (RFC 9493, SSF, Google's legacy shapes).
//! - [`mapping`]: event types → revocations, by the stream's policy.
//! - [`verify`]: a stream's transmitter keys, issuer and audience.
//! - [`receiver`]: the pipeline: verify, de-duplicate, map, revoke durably, record status.
//! - [`status`]: a stream's status, last SET and last verification; when it is healthy.
//! - [`verification`]: periodic verification and the transmitter's status endpoint.
//! - [`health`]: a gRPC health service per stream, `jwtrevoker.ssf.<stream>`.
//! - [`setup`]: the receiver built from `[[ssf.streams]]`, transmitter keys discovered.
//! - `jws`: reading a compact JWS and checking its signature (SETs, caller JWTs).
//! - [`gtr`]: Global Token Revocation: a user named by `sub_id` revoked as of now.
//! - [`poll`]: RFC 8936 poll delivery, a long-polling loop per stream.
//! - [`management`]: creating or updating the stream at the transmitter, verification.
//! - [`credentials`]: bearer tokens for a transmitter, static or by client credentials.
//! - [`metrics`]: the `jwt_revoker_ssf_sets_total` counter.
//! - [`error`]: [`SetError`] and its RFC 8935 error codes.

pub(crate) mod body;
pub mod credentials;
pub mod error;
pub mod gtr;
pub mod health;
pub(crate) mod jws;
pub mod management;
pub mod mapping;
pub mod metrics;
pub mod poll;
pub mod receiver;
pub mod secevent;
pub mod setup;
pub mod status;
pub mod subject;
pub mod verification;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::SetError;
pub use receiver::{Receipt, ReceiveError, Receiver, Stream, StreamStatus};
