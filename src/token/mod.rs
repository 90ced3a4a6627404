//! Bearer tokens: finding them in a request, verifying them, caching verified ones.
//!
//! - [`extract`]: the token from `Authorization: Bearer`, a configured header or cookie.
//! - [`verify`]: the [`Verifier`]: structure, header, issuer, algorithm, signature, claims.
//! - [`logout`]: verifying OIDC back-channel logout tokens.
//! - [`json`]: strict JSON for JOSE headers and claims (no duplicate names, bounded depth).
//! - [`typ`]: the JOSE `typ` rule (access tokens only on Check).
//! - [`keys`]: each issuer's keys (JWKS file, inline, or `jwks_uri` kept fresh; HMAC secret).
//! - [`claims`]: the [`Claims`] of a token and its revocation identifier.
//! - [`cache`]: the [`VerifiedCache`] of verified tokens, each entry ending at the token's `exp`.
//! - [`memo`]: the [`TokenMemo`] that Check keeps with a cached token.
//! - [`error`]: [`TokenError`], one variant per refusal.

pub mod cache;
pub mod claims;
pub mod error;
pub mod extract;
pub mod json;
pub mod keys;
pub mod logout;
pub mod memo;
pub mod typ;
pub mod verify;

#[cfg(test)]
pub(crate) mod test_tokens;

pub use cache::VerifiedCache;
pub use claims::{Claims, VerifiedToken};
pub use error::TokenError;
pub use extract::{HeaderSource, extract_token};
pub use keys::KeyError;
pub use logout::{LogoutToken, LogoutTokenError};
pub use memo::TokenMemo;
pub use verify::{TimeRule, Verifier};
