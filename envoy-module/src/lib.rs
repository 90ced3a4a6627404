//! jwt-revoker's revocation check inside Envoy: a native dynamic-module HTTP filter for
//! Envoy 1.40 (ABI `v0.2.0`), built as `libjwt_revoker_envoy.so`, placed after `jwt_authn`.
//! It reads the verified claims `jwt_authn` wrote into request headers, looks them up in a
//! revocation set shared by all Envoy workers (jwt-revoker's own [`Replica`] and set, fed by
//! one `Revocations/Watch` stream per Envoy process), and refuses a revoked token with the
//! server's 401 + RFC 6750 challenge.
//!
//! - [`config`]: the JSON `filter_config`.
//! - [`claims`]: claims from request headers, into the set's lookup key.
//! - [`filter`]: the verdict on a request.
//! - [`feed`]: the thread that keeps the replica current.
//! - [`ffi`]: the C ABI, the only `unsafe` code.
//!
//! [`Replica`]: jwt_revoker::revocation::Replica

pub mod claims;
pub mod config;
pub mod feed;
pub mod ffi;
pub mod filter;
