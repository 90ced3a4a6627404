//! Verifying a SET for one stream: [`parse`](super::secevent::parse), then `iss` must be the
//! stream's transmitter, the algorithm one configured for the stream, the signature good with
//! the transmitter's keys (a JWKS file, inline, or `jwks_uri` kept fresh and refetched on an
//! unknown `kid`, by the same code as issuers' keys), and `aud` must contain the stream's
//! audience. The transmitter's keys are kept apart from access-token issuers' keys.

use super::error::SetError;
use super::jws;
use super::secevent::{self, SetClaims};
use crate::config::IssuerConfig;
use crate::token::keys::IssuerKeys;
use crate::token::{KeyError, TokenError};
use jsonwebtoken::Algorithm;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Verifies the SETs of one stream.
pub struct StreamVerifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    keys: IssuerKeys,
}

impl std::fmt::Debug for StreamVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl StreamVerifier {
    /// Loads the transmitter's keys described by `transmitter` (its `issuer`, the stream's
    /// audience as the one entry of `audiences`, its key source and algorithms); `index`
    /// names the stream in errors. Must run inside a Tokio runtime.
    pub async fn new(index: usize, transmitter: &IssuerConfig) -> Result<Self, KeyError> {
        let keys = IssuerKeys::load(index, transmitter, Arc::new(AtomicU64::new(0))).await?;
        Ok(Self {
            issuer: transmitter.issuer.clone(),
            audience: transmitter.audiences.first().cloned().unwrap_or_default(),
            algorithms: transmitter.algorithms.clone(),
            keys,
        })
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The stream's audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies a compact SET and returns its claims.
    pub async fn verify(&self, set: &[u8]) -> Result<SetClaims, SetError> {
        let parsed = secevent::parse(set)?;
        if parsed.claims.iss != self.issuer {
            return Err(SetError::WrongIssuer);
        }
        if !self.algorithms.contains(&parsed.alg) {
            return Err(SetError::Key("alg is not one configured for this stream"));
        }
        jws::verify_signature(
            &self.keys,
            parsed.kid.as_deref(),
            parsed.alg,
            &parsed.signing_input,
            &parsed.signature,
        )
        .await
        .map_err(|error| match error {
            TokenError::KeysUnavailable => SetError::KeysUnavailable,
            TokenError::UnknownKey => SetError::Key("unknown kid"),
            TokenError::KeyTypeMismatch => SetError::Key("the key does not fit alg"),
            _ => SetError::Key("bad signature"),
        })?;
        if !parsed.claims.aud.contains(&self.audience) {
            return Err(SetError::WrongAudience);
        }
        Ok(parsed.claims)
    }
}
