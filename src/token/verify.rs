//! Verifying a compact JWS access token: structure, header, issuer, algorithm, signature,
//! audience and lifetime, each step bounded in work and memory.

use super::claims::revocable_claim_ids;
use super::json::parse_object;
use super::keys::{IssuerKeys, KeyError};
use super::typ::check_access_typ;
use super::{Claims, TokenError, VerifiedToken};
use crate::config::IssuerConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A compact JWS whose signature verified with a key of the issuer its `iss` names.
pub(super) struct Signed<'a> {
    /// That issuer.
    pub(super) issuer: &'a IssuerConfig,
    /// The JOSE header.
    pub(super) header: Map<String, Value>,
    /// The payload's claims, unchecked beyond `iss`.
    pub(super) claims: Map<String, Value>,
    /// The decoded payload bytes.
    pub(super) payload: Vec<u8>,
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
    max_lifetime: u64,
    key_generation: Arc<AtomicU64>,
}

impl Verifier {
    /// Loads every issuer's keys: files are read, each `jwks_uri` is fetched once (a failed
    /// fetch is logged and retried in the background; until one succeeds, that issuer's tokens
    /// are refused with [`TokenError::KeysUnavailable`]). Must run inside a Tokio runtime.
    ///
    /// Tokens that could outlive `max_token_lifetime` are refused, since revocations by
    /// identifier last only that long.
    pub async fn new(
        issuers: &[IssuerConfig],
        leeway: Duration,
        max_token_bytes: usize,
        max_token_lifetime: Duration,
    ) -> Result<Self, KeyError> {
        let mut loaded = Vec::with_capacity(issuers.len());
        let mut by_name = HashMap::with_capacity(issuers.len());
        let key_generation = Arc::new(AtomicU64::new(0));
        for (index, config) in issuers.iter().enumerate() {
            let keys = IssuerKeys::load(index, config, Arc::clone(&key_generation)).await?;
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
            max_lifetime: max_token_lifetime.as_secs(),
            key_generation,
        })
    }

    /// A number that changes whenever a fetched key set changes: a verification made under
    /// another generation may rest on a key since withdrawn.
    pub fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::Acquire)
    }

    /// The configured issuers.
    #[cfg(test)]
    pub(crate) fn issuers(&self) -> impl ExactSizeIterator<Item = &IssuerConfig> {
        self.issuers.iter().map(|issuer| &issuer.config)
    }

    /// Whether every issuer's keys are at hand (false while some `jwks_uri` has never been
    /// fetched successfully). Only the tests ask: Check answers 503 for such an issuer.
    #[cfg(test)]
    pub(crate) fn keys_available(&self) -> bool {
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
        let Signed {
            issuer,
            header,
            claims: all,
            payload,
        } = self.verify_signed(token).await?;
        check_access_typ(&header, issuer.require_typ.as_deref())?;
        // `events` is what a logout token or a Security Event Token carries (OIDC
        // Back-Channel Logout §2.4, RFC 8417 §2.2), typed or not: never an access token.
        if all.contains_key("events") {
            return Err(TokenError::WrongType);
        }
        let claims = Claims::from_map(all)?;
        if !claims.aud.iter().any(|aud| issuer.audiences.contains(aud)) {
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
            self.check_lifetime(issuer, &claims, now)?;
        }
        let revocable = revocable_claim_ids(&claims.all, &issuer.revocable_claims)?;
        let mut verified = VerifiedToken::new(claims, &payload);
        verified.revocable_claims = revocable;
        Ok(verified)
    }

    /// The leeway on time claims, in seconds.
    pub(super) fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Checks the structure, header, issuer, algorithm and signature of a compact JWS, and
    /// returns its parts; the claims are not checked beyond `iss`.
    pub(super) async fn verify_signed(&self, token: &str) -> Result<Signed<'_>, TokenError> {
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
        let all = parse_object(&payload).map_err(TokenError::from)?;
        // Read unverified, only to choose whose keys to check the signature with.
        let issuer = match all.get("iss") {
            Some(Value::String(iss)) => self
                .by_name
                .get(iss)
                .and_then(|index| self.issuers.get(*index))
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
        Ok(Signed {
            issuer: &issuer.config,
            header,
            claims: all,
            payload,
        })
    }
}

impl Verifier {
    /// Refuses a token without `iat` (unless its issuer has `allow_missing_iat`), one issued
    /// in the future, or one that could stay valid longer than the configured maximum
    /// lifetime (judged from `iat`, or from `now` without it): revocations by identifier only
    /// last that long (see `revocation::Lifetimes`).
    fn check_lifetime(
        &self,
        issuer: &IssuerConfig,
        claims: &Claims,
        now: u64,
    ) -> Result<(), TokenError> {
        if claims.iat.is_none() && !issuer.allow_missing_iat {
            return Err(TokenError::MissingClaim("iat"));
        }
        let latest_start = now.saturating_add(self.leeway);
        if claims.iat.is_some_and(|iat| iat > latest_start) {
            return Err(TokenError::IssuedInFuture);
        }
        let start = claims.iat.unwrap_or(latest_start);
        if claims.exp.saturating_sub(start) > self.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(())
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
    parse_object(&decode_part(header_b64)?).map_err(TokenError::from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeySource;
    use crate::token::test_tokens::*;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    const LEEWAY: u64 = 30;
    const MAX_LIFETIME: u64 = 3600;

    async fn verifier() -> Verifier {
        Verifier::new(
            &test_issuers(),
            Duration::from_secs(LEEWAY),
            8192,
            Duration::from_secs(MAX_LIFETIME),
        )
        .await
        .expect("verifier")
    }

    async fn check(token: &str) -> Result<VerifiedToken, TokenError> {
        verifier().await.verify(token, NOW, TimeRule::Enforce).await
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().expect("object").remove(key);
        claims
    }

    #[tokio::test]
    async fn every_algorithm_verifies() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let token = key.mint(&key.claims());
            let verified = verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(verified.claims.iss, key.issuer());
            assert_eq!(verified.claims.sub.as_deref(), Some("alice"));
            assert_eq!(verified.claims.aud, [AUDIENCE]);
            assert_eq!(verified.claims.exp, NOW + 300);
        }
    }

    #[tokio::test]
    async fn tokens_without_kid_try_the_keys_that_fit() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let mut header = key.header();
            header.as_object_mut().expect("object").remove("kid");
            let token = sign(&header, &key.claims(), key.alg(), &key.encoding_key());
            assert!(
                verifier
                    .verify(&token, NOW, TimeRule::Enforce)
                    .await
                    .is_ok(),
                "{key:?}"
            );
        }
    }

    #[tokio::test]
    async fn hmac_tokens_may_carry_any_kid() {
        let key = TestKey::Hmac;
        let header = json!({"alg": "HS256", "kid": "secret-2024"});
        let token = sign(&header, &key.claims(), key.alg(), &key.encoding_key());
        assert!(check(&token).await.is_ok());
    }

    #[tokio::test]
    async fn expiry_respects_the_leeway() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let at = |exp: u64| key.mint(&with(key.claims(), "exp", json!(exp)));
            let verify = |token: String| {
                let verifier = &verifier;
                async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
            };
            assert_eq!(verify(at(NOW - LEEWAY + 1)).await, None, "{key:?}");
            assert_eq!(
                verify(at(NOW - LEEWAY)).await,
                Some(TokenError::Expired),
                "{key:?}"
            );
            assert_eq!(verify(at(NOW - 3600)).await, Some(TokenError::Expired));
            assert_eq!(verify(at(0)).await, Some(TokenError::Expired));
        }
    }

    #[tokio::test]
    async fn tokens_that_could_outlive_max_token_lifetime_are_refused() {
        let verifier = verifier().await;
        let key = TestKey::Rsa;
        let verify = |claims: Value| {
            let verifier = &verifier;
            let token = key.mint(&claims);
            async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
        };
        let base = key.claims();
        let lifetime =
            |iat: u64, exp: u64| with(with(base.clone(), "iat", json!(iat)), "exp", json!(exp));
        assert_eq!(
            verify(lifetime(NOW - 10, NOW - 10 + MAX_LIFETIME)).await,
            None
        );
        assert_eq!(
            verify(lifetime(NOW - 10, NOW - 9 + MAX_LIFETIME)).await,
            Some(TokenError::LifetimeTooLong)
        );
        let mut no_iat = base.clone();
        if let Some(map) = no_iat.as_object_mut() {
            map.remove("iat");
        }
        let within = NOW + LEEWAY + MAX_LIFETIME;
        // By default `iat` is required (RFC 9068 §2.2).
        assert_eq!(
            verify(with(no_iat.clone(), "exp", json!(NOW + 60))).await,
            Some(TokenError::MissingClaim("iat"))
        );
        // An issuer that opts out has its tokens without `iat` judged from `now`.
        let lenient = lenient_verifier().await;
        let lenient_verify = |claims: Value| {
            let verifier = &lenient;
            let token = key.mint(&claims);
            async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
        };
        assert_eq!(
            lenient_verify(with(no_iat.clone(), "exp", json!(within))).await,
            None
        );
        assert_eq!(
            lenient_verify(with(no_iat.clone(), "exp", json!(within + 1))).await,
            Some(TokenError::LifetimeTooLong)
        );
        // Lifetime (and `iat`) is not judged when revoking (the token may have expired).
        let long = key.mint(&lifetime(NOW - 10, NOW + 10 * MAX_LIFETIME));
        assert!(verifier.verify(&long, NOW, TimeRule::Ignore).await.is_ok());
        let no_iat = key.mint(&with(no_iat, "exp", json!(NOW + 60)));
        assert!(
            verifier
                .verify(&no_iat, NOW, TimeRule::Ignore)
                .await
                .is_ok()
        );
    }

    /// The test issuers, the first with `allow_missing_iat`.
    async fn lenient_verifier() -> Verifier {
        let mut issuers = test_issuers();
        issuers[0].allow_missing_iat = true;
        Verifier::new(
            &issuers,
            Duration::from_secs(LEEWAY),
            8192,
            Duration::from_secs(MAX_LIFETIME),
        )
        .await
        .expect("verifier")
    }

    #[tokio::test]
    async fn tokens_issued_in_the_future_are_refused() {
        let verifier = verifier().await;
        let key = TestKey::Ec256;
        let at = |iat: u64| {
            key.mint(&with(
                with(key.claims(), "iat", json!(iat)),
                "exp",
                json!(iat + 60),
            ))
        };
        let verify = |token: String| {
            let verifier = &verifier;
            async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
        };
        assert_eq!(verify(at(NOW + LEEWAY)).await, None);
        assert_eq!(
            verify(at(NOW + LEEWAY + 1)).await,
            Some(TokenError::IssuedInFuture)
        );
    }

    #[tokio::test]
    async fn not_before_respects_the_leeway() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let at = |nbf: u64| key.mint(&with(key.claims(), "nbf", json!(nbf)));
            let verify = |token: String| {
                let verifier = &verifier;
                async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
            };
            assert_eq!(verify(at(NOW)).await, None, "{key:?}");
            assert_eq!(verify(at(NOW + LEEWAY)).await, None, "{key:?}");
            assert_eq!(
                verify(at(NOW + LEEWAY + 1)).await,
                Some(TokenError::NotYetValid),
                "{key:?}"
            );
        }
    }

    #[tokio::test]
    async fn float_dates_are_floored() {
        let key = TestKey::Ec256;
        let claims = with(key.claims(), "exp", json!((NOW - LEEWAY) as f64 + 0.9));
        assert_eq!(check(&key.mint(&claims)).await, Err(TokenError::Expired));
        let claims = with(key.claims(), "exp", json!((NOW - LEEWAY) as f64 + 1.5));
        assert!(check(&key.mint(&claims)).await.is_ok());
    }

    #[tokio::test]
    async fn time_rule_ignore_skips_only_the_lifetime() {
        let verifier = verifier().await;
        let key = TestKey::Rsa;
        let expired = with(key.claims(), "exp", json!(NOW - 86400));
        let early = with(key.claims(), "nbf", json!(NOW + 86400));
        for claims in [&expired, &early] {
            let token = key.mint(claims);
            assert!(
                verifier
                    .verify(&token, NOW, TimeRule::Enforce)
                    .await
                    .is_err()
            );
            assert!(verifier.verify(&token, NOW, TimeRule::Ignore).await.is_ok());
        }
        let token = key.mint(&with(expired.clone(), "aud", json!("elsewhere")));
        assert_eq!(
            verifier.verify(&token, NOW, TimeRule::Ignore).await,
            Err(TokenError::WrongAudience)
        );
        let token = TestKey::Untrusted.mint(&expired);
        assert_eq!(
            verifier.verify(&token, NOW, TimeRule::Ignore).await,
            Err(TokenError::UnknownKey)
        );
        let token = sign(
            &key.header(),
            &expired,
            key.alg(),
            &TestKey::Untrusted.encoding_key(),
        );
        assert_eq!(
            verifier.verify(&token, NOW, TimeRule::Ignore).await,
            Err(TokenError::BadSignature)
        );
    }

    #[tokio::test]
    async fn issuer_must_be_configured_and_exact() {
        for key in [TestKey::Rsa, TestKey::Hmac] {
            for iss in [
                "https://evil.test",
                "https://issuer.test/",
                "HTTPS://ISSUER.TEST",
                "",
            ] {
                let token = key.mint(&with(key.claims(), "iss", json!(iss)));
                assert_eq!(check(&token).await, Err(TokenError::UnknownIssuer), "{iss}");
            }
            let token = key.mint(&without(key.claims(), "iss"));
            assert_eq!(check(&token).await, Err(TokenError::MissingClaim("iss")));
            let token = key.mint(&with(key.claims(), "iss", json!(["https://issuer.test"])));
            assert_eq!(check(&token).await, Err(TokenError::Malformed));
        }
    }

    #[tokio::test]
    async fn audience_must_intersect_the_configured_ones() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let verify = |aud: Option<Value>| {
                let claims = match aud {
                    Some(aud) => with(key.claims(), "aud", aud),
                    None => without(key.claims(), "aud"),
                };
                let token = key.mint(&claims);
                let verifier = &verifier;
                async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
            };
            assert_eq!(verify(Some(json!("api"))).await, None);
            assert_eq!(verify(Some(json!(["x", "api", "y"]))).await, None);
            assert_eq!(
                verify(Some(json!("API"))).await,
                Some(TokenError::WrongAudience)
            );
            assert_eq!(
                verify(Some(json!(["x", "y"]))).await,
                Some(TokenError::WrongAudience)
            );
            assert_eq!(
                verify(Some(json!([]))).await,
                Some(TokenError::WrongAudience)
            );
            assert_eq!(verify(None).await, Some(TokenError::MissingClaim("aud")));
        }
        // An audience of the JWKS issuer only.
        let key = TestKey::Ed25519;
        let token = key.mint(&with(key.claims(), "aud", json!(["other-api"])));
        assert!(
            verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .is_ok()
        );
        let key = TestKey::Hmac;
        let token = key.mint(&with(key.claims(), "aud", json!(["other-api"])));
        assert_eq!(
            verifier.verify(&token, NOW, TimeRule::Enforce).await,
            Err(TokenError::WrongAudience)
        );
    }

    #[tokio::test]
    async fn exp_is_required() {
        for key in [TestKey::Ec384, TestKey::Hmac] {
            let token = key.mint(&without(key.claims(), "exp"));
            assert_eq!(check(&token).await, Err(TokenError::MissingClaim("exp")));
        }
    }

    #[tokio::test]
    async fn signatures_by_untrusted_keys_are_refused() {
        let untrusted = TestKey::Untrusted;
        let claims = TestKey::Rsa.claims();
        // Its own kid: no such key.
        assert_eq!(
            check(&untrusted.mint(&claims)).await,
            Err(TokenError::UnknownKey)
        );
        // A trusted kid, or none: the signature does not verify.
        let token = sign(
            &TestKey::Rsa.header(),
            &claims,
            Algorithm::RS256,
            &untrusted.encoding_key(),
        );
        assert_eq!(check(&token).await, Err(TokenError::BadSignature));
        let token = sign(
            &json!({"alg": "RS256"}),
            &claims,
            Algorithm::RS256,
            &untrusted.encoding_key(),
        );
        assert_eq!(check(&token).await, Err(TokenError::BadSignature));
        // A wrong HMAC secret.
        let key = TestKey::Hmac;
        let token = sign(
            &key.header(),
            &key.claims(),
            key.alg(),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
        );
        assert_eq!(check(&token).await, Err(TokenError::BadSignature));
    }

    #[tokio::test]
    async fn tampered_tokens_are_refused() {
        let verifier = verifier().await;
        for key in TestKey::TRUSTED {
            let good = key.mint(&key.claims());
            let forged = key.mint(&with(key.claims(), "sub", json!("admin")));
            let [header, _, signature] = parts(&good);
            let [_, forged_payload, forged_signature] = parts(&forged);
            let verify = |token: String| {
                let verifier = &verifier;
                async move { verifier.verify(&token, NOW, TimeRule::Enforce).await.err() }
            };
            assert_eq!(
                verify(format!("{header}.{forged_payload}.{signature}")).await,
                Some(TokenError::BadSignature),
                "{key:?}"
            );
            // A signature from another token.
            let [_, payload, _] = parts(&good);
            assert_eq!(
                verify(format!("{header}.{payload}.{forged_signature}")).await,
                Some(TokenError::BadSignature),
                "{key:?}"
            );
            // A flipped bit in the signature.
            let mut raw = URL_SAFE_NO_PAD.decode(signature).expect("b64");
            raw[0] ^= 1;
            let flipped = b64(&raw);
            assert_eq!(
                verify(format!("{header}.{payload}.{flipped}")).await,
                Some(TokenError::BadSignature),
                "{key:?}"
            );
        }
    }

    fn parts(token: &str) -> [String; 3] {
        let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts.try_into().expect("three parts")
    }

    #[tokio::test]
    async fn unsecured_tokens_are_refused() {
        let claims = TestKey::Rsa.claims();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let input = signing_input(&json!({"alg": alg, "typ": "JWT"}), &claims);
            assert_eq!(
                check(&format!("{input}.")).await,
                Err(TokenError::AlgorithmNone)
            );
            assert_eq!(
                check(&format!("{input}.c2ln")).await,
                Err(TokenError::AlgorithmNone)
            );
        }
        let input = signing_input(&json!({"typ": "JWT"}), &claims);
        assert_eq!(
            check(&format!("{input}.c2ln")).await,
            Err(TokenError::Malformed)
        );
        let input = signing_input(&json!({"alg": null}), &claims);
        assert_eq!(
            check(&format!("{input}.c2ln")).await,
            Err(TokenError::Malformed)
        );
    }

    #[tokio::test]
    async fn algorithms_outside_the_issuers_list_are_refused() {
        // RS384 with the trusted RSA key: a good signature, but not an allowed algorithm.
        let claims = TestKey::Rsa.claims();
        let header = json!({"alg": "RS384", "kid": "rsa-1"});
        let token = sign(
            &header,
            &claims,
            Algorithm::RS384,
            &TestKey::Rsa.encoding_key(),
        );
        assert_eq!(check(&token).await, Err(TokenError::AlgorithmNotAllowed));
        // HS256 at the JWKS issuer, and RS256 at the HMAC issuer.
        let hmac = TestKey::Hmac;
        let token = hmac.mint(&TestKey::Rsa.claims());
        assert_eq!(check(&token).await, Err(TokenError::AlgorithmNotAllowed));
        let token = TestKey::Rsa.mint(&hmac.claims());
        assert_eq!(check(&token).await, Err(TokenError::AlgorithmNotAllowed));
        // Algorithms we do not know.
        for alg in ["ES512", "HS1", "rs256", "RSA-OAEP", ""] {
            let input = signing_input(&json!({"alg": alg}), &claims);
            assert_eq!(
                check(&format!("{input}.c2ln")).await,
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }

    /// An issuer trusting both the JWKS (RS256) and the HMAC secret (HS256).
    async fn mixed_verifier() -> Verifier {
        let mut issuer = issuer_with_jwks(KeySource::File(fixture("jwks.json")));
        issuer.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
        issuer.hmac_secret_file = Some(fixture("hmac-secret.txt"));
        Verifier::new(
            &[issuer],
            Duration::from_secs(LEEWAY),
            8192,
            Duration::from_secs(MAX_LIFETIME),
        )
        .await
        .expect("verifier")
    }

    #[tokio::test]
    async fn hs256_signed_with_the_rsa_public_key_is_refused() {
        // The classic confusion attack: the public key (PEM, or its DER) used as an HMAC secret.
        let claims = TestKey::Rsa.claims();
        let pem = std::fs::read(fixture("keys/rsa.pub.pem")).expect("pem");
        let der = {
            let text = String::from_utf8(pem.clone()).expect("pem");
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("der")
        };
        let strict = verifier().await;
        let mixed = mixed_verifier().await;
        for secret in [&pem, &der] {
            let attacker = EncodingKey::from_secret(secret);
            let with_kid = sign(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &claims,
                Algorithm::HS256,
                &attacker,
            );
            let no_kid = sign(
                &json!({"alg": "HS256"}),
                &claims,
                Algorithm::HS256,
                &attacker,
            );
            for token in [&with_kid, &no_kid] {
                assert_eq!(
                    strict.verify(token, NOW, TimeRule::Enforce).await,
                    Err(TokenError::AlgorithmNotAllowed)
                );
            }
            assert_eq!(
                mixed.verify(&with_kid, NOW, TimeRule::Enforce).await,
                Err(TokenError::KeyTypeMismatch)
            );
            assert_eq!(
                mixed.verify(&no_kid, NOW, TimeRule::Enforce).await,
                Err(TokenError::BadSignature)
            );
        }
        // Both legitimate kinds still pass at the mixed issuer.
        let token = TestKey::Rsa.mint(&claims);
        assert!(mixed.verify(&token, NOW, TimeRule::Enforce).await.is_ok());
        let token = sign(
            &json!({"alg": "HS256"}),
            &claims,
            Algorithm::HS256,
            &TestKey::Hmac.encoding_key(),
        );
        assert!(mixed.verify(&token, NOW, TimeRule::Enforce).await.is_ok());
    }

    #[tokio::test]
    async fn keys_must_fit_the_algorithm() {
        let claims = TestKey::Rsa.claims();
        let cases = [
            // JWK `alg` PS256 on the same RSA key: an RS256 token may not use it.
            (TestKey::Rsa, "rsa-pss-1"),
            (TestKey::RsaPss, "rsa-1"),
            // ES256 naming the P-384 key, ES384 naming the P-256 key.
            (TestKey::Ec256, "ec384-1"),
            (TestKey::Ec384, "ec256-1"),
            // EdDSA naming an RSA key, RS256 naming the Ed25519 key.
            (TestKey::Ed25519, "rsa-1"),
            (TestKey::Rsa, "ed25519-1"),
        ];
        for (key, kid) in cases {
            let header = json!({"alg": alg_name(key.alg()), "kid": kid});
            let token = sign(&header, &claims, key.alg(), &key.encoding_key());
            assert_eq!(
                check(&token).await,
                Err(TokenError::KeyTypeMismatch),
                "{key:?} with {kid}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_kids_are_refused() {
        for kid in ["nope", "", "RSA-1"] {
            let header = json!({"alg": "RS256", "kid": kid});
            let token = sign(
                &header,
                &TestKey::Rsa.claims(),
                Algorithm::RS256,
                &TestKey::Rsa.encoding_key(),
            );
            assert_eq!(check(&token).await, Err(TokenError::UnknownKey), "{kid}");
        }
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused() {
        let good = TestKey::Rsa.mint(&TestKey::Rsa.claims());
        let [header, payload, signature] = parts(&good);
        let not_json = b64(b"not json");
        let array = b64(b"[1,2]");
        let kid_number = b64(br#"{"alg":"RS256","kid":7}"#);
        let padded = format!("{payload}==");
        let cases = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "a.b".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.{signature}.x"),
            format!("{header}.{payload}.{signature}.x.y.z"),
            format!(".{payload}.{signature}"),
            format!("{header}..{signature}"),
            format!("{header}.{payload}."),
            format!("{header}*.{payload}.{signature}"),
            format!("{header}.{payload}*.{signature}"),
            format!("{header}.{payload}.{signature}*"),
            format!("{header}.{padded}.{signature}"),
            format!("{not_json}.{payload}.{signature}"),
            format!("{array}.{payload}.{signature}"),
            format!("{header}.{not_json}.{signature}"),
            format!("{header}.{array}.{signature}"),
            format!("{kid_number}.{payload}.{signature}"),
            format!("{}.{payload}.{signature}", "A".repeat(MAX_HEADER_CHARS + 4)),
            "\u{e9}.\u{e9}.\u{e9}".to_owned(),
        ];
        let verifier = verifier().await;
        for token in cases {
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await,
                Err(TokenError::Malformed),
                "{token:?}"
            );
        }
    }

    #[tokio::test]
    async fn huge_tokens_are_refused_unread() {
        let verifier = Verifier::new(
            &test_issuers(),
            Duration::ZERO,
            1024,
            Duration::from_secs(3600),
        )
        .await
        .expect("verifier");
        let big = format!(
            "{}.{}.{}",
            "a".repeat(400),
            "b".repeat(400),
            "c".repeat(300)
        );
        assert_eq!(
            verifier.verify(&big, NOW, TimeRule::Enforce).await,
            Err(TokenError::TooLarge)
        );
        let claims = with(TestKey::Ec256.claims(), "pad", json!("x".repeat(2000)));
        let token = TestKey::Ec256.mint(&claims);
        assert_eq!(
            verifier.verify(&token, NOW, TimeRule::Enforce).await,
            Err(TokenError::TooLarge)
        );
    }

    #[tokio::test]
    async fn encrypted_tokens_are_refused() {
        assert_eq!(
            check("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn").await,
            Err(TokenError::Encrypted)
        );
        let key = TestKey::Rsa;
        let header = json!({"alg": "RS256", "kid": "rsa-1", "enc": "A256GCM"});
        let token = sign(&header, &key.claims(), key.alg(), &key.encoding_key());
        assert_eq!(check(&token).await, Err(TokenError::Encrypted));
    }

    #[tokio::test]
    async fn critical_extensions_are_refused() {
        let key = TestKey::Rsa;
        for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
            let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": crit, "b64": false});
            let token = sign(&header, &key.claims(), key.alg(), &key.encoding_key());
            assert_eq!(check(&token).await, Err(TokenError::UnknownCritical));
        }
    }

    #[tokio::test]
    async fn keys_offered_in_the_header_are_never_used_or_fetched() {
        // The attacker's server would hand out the untrusted key's JWKS.
        let untrusted_jwks = std::fs::read_to_string(fixture("jwks-untrusted.json")).expect("jwks");
        let server = TestHttpServer::start(200, &untrusted_jwks).await;
        let jwk: Value =
            serde_json::from_str::<Value>(&untrusted_jwks).expect("json")["keys"][0].clone();
        let attacker = TestKey::Untrusted.encoding_key();
        let claims = TestKey::Rsa.claims();
        let verifier = verifier().await;
        for kid in [Some("rsa-untrusted"), Some("rsa-1"), None] {
            let mut header = json!({
                "alg": "RS256", "jwk": jwk, "jku": server.url, "x5u": server.url,
                "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]
            });
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let token = sign(&header, &claims, Algorithm::RS256, &attacker);
            let expected = if kid == Some("rsa-untrusted") {
                TokenError::UnknownKey
            } else {
                TokenError::BadSignature
            };
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await,
                Err(expected),
                "{kid:?}"
            );
        }
        // The same header fields on a genuine token are simply ignored.
        let mut header = TestKey::Rsa.header();
        header["jku"] = json!(server.url);
        header["jwk"] = jwk;
        let token = sign(
            &header,
            &claims,
            Algorithm::RS256,
            &TestKey::Rsa.encoding_key(),
        );
        assert!(
            verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .is_ok()
        );
        assert_eq!(server.hits(), 0, "a URL from a token header was fetched");
    }

    #[tokio::test]
    async fn token_id_is_the_jti_or_the_payload_hash() {
        let verifier = verifier().await;
        let key = TestKey::Ed25519;
        let token = key.mint(&with(key.claims(), "jti", json!("token-42")));
        let verified = verifier
            .verify(&token, NOW, TimeRule::Enforce)
            .await
            .expect("verified");
        assert_eq!(verified.token_id, "token-42");

        let token = key.mint(&key.claims());
        let [_, payload, _] = parts(&token);
        let decoded = URL_SAFE_NO_PAD.decode(&payload).expect("b64");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &decoded);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let verified = verifier
            .verify(&token, NOW, TimeRule::Enforce)
            .await
            .expect("verified");
        assert_eq!(verified.token_id, format!("sha256:{hex}"));
        // The same payload signed again (ECDSA/EdDSA-independent: a new signature) keeps its id.
        let again = sign_input(
            &format!("{}.{payload}", parts(&token)[0]),
            key.alg(),
            &key.encoding_key(),
        );
        let verified_again = verifier
            .verify(&again, NOW, TimeRule::Enforce)
            .await
            .expect("verified");
        assert_eq!(verified_again.token_id, verified.token_id);
    }

    #[tokio::test]
    async fn non_canonical_base64_is_refused_before_the_signature() {
        // base64url decoding is strict (no padding, no stray trailing bits), so another
        // encoding of the same payload is Malformed; and since the signature covers the
        // encoded text, such a re-encoding could not verify anyway. Either way one signed
        // payload has exactly one accepted encoding, hence one token_id.
        let key = TestKey::Ec256;
        let verifier = verifier().await;
        // Grow the payload until its encoding ends in a partial group with spare bits.
        let mut claims = key.claims();
        let mut pad = String::new();
        while serde_json::to_vec(&claims).expect("json").len() % 3 != 1 {
            pad.push('x');
            claims = with(key.claims(), "pad", json!(pad));
        }
        let token = key.mint(&claims);
        assert!(
            verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .is_ok()
        );
        let [header, payload, _] = parts(&token);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = payload.as_bytes()[payload.len() - 1];
        let position = alphabet.iter().position(|c| *c == last).expect("b64 char");
        assert_eq!(
            position % 16,
            0,
            "a canonical final character has zero spare bits"
        );
        let variant = format!(
            "{}{}",
            &payload[..payload.len() - 1],
            alphabet[position + 1] as char
        );
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&variant)
                .ok(),
            None
        );
        for encoded in [variant, format!("{payload}==")] {
            // Signed as encoded, so only the encoding check can refuse it.
            let resigned = sign_input(
                &format!("{header}.{encoded}"),
                key.alg(),
                &key.encoding_key(),
            );
            assert_eq!(
                verifier.verify(&resigned, NOW, TimeRule::Enforce).await,
                Err(TokenError::Malformed)
            );
        }
    }

    #[tokio::test]
    async fn reports_key_availability_and_issuers() {
        let verifier = verifier().await;
        assert!(verifier.keys_available());
        let names: Vec<&str> = verifier.issuers().map(|i| i.issuer.as_str()).collect();
        assert_eq!(names, [ISSUER, HMAC_ISSUER]);
    }
}
