//! Verifying a compact JWS access token: structure, header, issuer, algorithm, signature,
//! audience and lifetime, each step bounded in work and memory.

use super::keys::{IssuerKeys, KeyError};
use super::{Claims, TokenError, VerifiedToken};
use crate::config::IssuerConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The longest base64url header accepted (decoded, about 1.5 KiB).
const MAX_HEADER_CHARS: usize = 2048;

/// Whether a token's lifetime (`exp`, `nbf`) is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRule {
    /// Check `exp` and `nbf` (with the leeway): for authorizing requests.
    Enforce,
    /// Skip them: for revoking a token that may already have expired. Signature, issuer and
    /// audience are still checked.
    Ignore,
}

/// A trusted issuer and its keys.
struct Issuer {
    config: IssuerConfig,
    keys: IssuerKeys,
}

/// Verifies tokens against the configured issuers. Background JWKS refresh tasks end when the
/// `Verifier` is dropped.
pub struct Verifier {
    issuers: Vec<Issuer>,
    by_name: HashMap<String, usize>,
    leeway: u64,
    max_token_bytes: usize,
}

impl Verifier {
    /// Loads every issuer's keys: files are read, each `jwks_uri` is fetched once (a failed
    /// fetch is logged and retried in the background; until one succeeds, that issuer's tokens
    /// are refused with [`TokenError::KeysUnavailable`]). Must run inside a Tokio runtime.
    pub async fn new(
        issuers: &[IssuerConfig],
        leeway: Duration,
        max_token_bytes: usize,
    ) -> Result<Self, KeyError> {
        let mut loaded = Vec::with_capacity(issuers.len());
        let mut by_name = HashMap::with_capacity(issuers.len());
        for (index, config) in issuers.iter().enumerate() {
            let keys = IssuerKeys::load(index, config).await?;
            by_name.entry(config.issuer.clone()).or_insert(index);
            loaded.push(Issuer {
                config: config.clone(),
                keys,
            });
        }
        Ok(Self {
            issuers: loaded,
            by_name,
            leeway: leeway.as_secs(),
            max_token_bytes,
        })
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl ExactSizeIterator<Item = &IssuerConfig> {
        self.issuers.iter().map(|issuer| &issuer.config)
    }

    /// Whether every issuer's keys are at hand (false while some `jwks_uri` has never been
    /// fetched successfully): for health reporting.
    pub fn keys_available(&self) -> bool {
        self.issuers.iter().all(|issuer| issuer.keys.available())
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch).
    ///
    /// Allows only a compact JWS whose header names an allowed algorithm of the issuer named by
    /// its `iss`, whose signature verifies with one of that issuer's configured keys, whose
    /// `aud` intersects the issuer's audiences and — with [`TimeRule::Enforce`] — whose `exp`
    /// is later than `now - leeway` and `nbf` (if any) no later than `now + leeway`.
    pub async fn verify(
        &self,
        token: &str,
        now: u64,
        time: TimeRule,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let parts: Vec<&str> = token.splitn(6, '.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(if parts.len() == 5 {
                TokenError::Encrypted
            } else {
                TokenError::Malformed
            });
        };
        let header = decode_header(header_b64)?;
        let (alg, kid) = check_header(&header)?;
        if payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(TokenError::Malformed);
        }
        let payload = decode_part(payload_b64)?;
        let Ok(Value::Object(all)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        // Read unverified, only to choose whose keys to check the signature with.
        let issuer = match all.get("iss") {
            Some(Value::String(iss)) => self
                .by_name
                .get(iss)
                .map(|index| &self.issuers[*index])
                .ok_or(TokenError::UnknownIssuer)?,
            Some(_) => return Err(TokenError::Malformed),
            None => return Err(TokenError::MissingClaim("iss")),
        };
        if !issuer.config.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
            return Err(TokenError::Malformed);
        }
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        issuer
            .keys
            .verify(kid, alg, |key| {
                jsonwebtoken::crypto::verify(signature_b64, message, key, alg).unwrap_or(false)
            })
            .await?;

        let claims = Claims::from_map(all)?;
        if !claims
            .aud
            .iter()
            .any(|aud| issuer.config.audiences.contains(aud))
        {
            return Err(TokenError::WrongAudience);
        }
        if time == TimeRule::Enforce {
            if claims.exp.saturating_add(self.leeway) <= now {
                return Err(TokenError::Expired);
            }
            if claims
                .nbf
                .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
            {
                return Err(TokenError::NotYetValid);
            }
        }
        Ok(VerifiedToken::new(claims, &payload))
    }
}

/// Decodes one base64url part (no padding, canonical trailing bits only).
fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

fn decode_header(header_b64: &str) -> Result<Map<String, Value>, TokenError> {
    if header_b64.is_empty() || header_b64.len() > MAX_HEADER_CHARS {
        return Err(TokenError::Malformed);
    }
    match serde_json::from_slice(&decode_part(header_b64)?) {
        Ok(Value::Object(header)) => Ok(header),
        _ => Err(TokenError::Malformed),
    }
}

/// Refuses encrypted, unsecured, unknown-algorithm and `crit` tokens; returns the algorithm
/// and the `kid`. Every other header field (`jwk`, `jku`, `x5u`, `x5c`, …) is ignored.
fn check_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<&str>), TokenError> {
    if header.contains_key("enc") {
        return Err(TokenError::Encrypted);
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            return Err(TokenError::AlgorithmNone);
        }
        Some(Value::String(alg)) => {
            Algorithm::from_str(alg).map_err(|_| TokenError::AlgorithmNotAllowed)?
        }
        _ => return Err(TokenError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(TokenError::UnknownCritical);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok((alg, kid))
}
