//! Verifying an OIDC Back-Channel Logout 1.0 logout token (§2.6): the signature, `alg` and
//! `iss` rules of access tokens, then the logout token's own claim rules (`aud` = a configured
//! client id, `iat` required and recent, `exp` when present, the back-channel `events` member,
//! `sid` and/or `sub`, a `jti`, no `nonce`). Replay (`jti` seen before) is the caller's check.

use super::TokenError;
use super::typ::{header_typ, same_type};
use super::verify::{Signed, Verifier};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The `events` member that marks a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The oldest a logout token may be (by `iat`, beyond the leeway), in seconds.
pub const MAX_LOGOUT_TOKEN_AGE: u64 = 300;

/// Why a logout token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// It fails the rules shared with access tokens (structure, `alg`, issuer, signature).
    #[error("{0}")]
    Token(TokenError),
    /// The issuer has no `backchannel_audiences` configured.
    #[error("back-channel logout is not enabled for this issuer")]
    NotEnabled,
    /// Its `aud` holds none of the configured back-channel audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// No `events` claim with the back-channel logout member, or a `typ` of another kind of
    /// token (an access token posted as a logout token).
    #[error("not a logout token")]
    NotALogoutToken,
    /// It carries a `nonce`, which logout tokens must not.
    #[error("a logout token must not contain nonce")]
    NoncePresent,
    /// Neither `sid` nor `sub`.
    #[error("a logout token needs sid or sub")]
    NoSessionOrSubject,
    /// A required claim (`iat`, `jti`) is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// `iat` is too far in the past or the future, or `exp` has passed.
    #[error("the logout token is expired or not yet valid")]
    Stale,
}

impl LogoutTokenError {
    /// A bounded snake_case label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Token(error) => error.reason(),
            Self::NotEnabled => "backchannel_not_enabled",
            Self::WrongAudience => "wrong_audience",
            Self::NotALogoutToken => "not_a_logout_token",
            Self::NoncePresent => "nonce_present",
            Self::NoSessionOrSubject => "no_sid_or_sub",
            Self::MissingClaim(_) => "missing_claim",
            Self::Stale => "stale",
        }
    }
}

impl From<TokenError> for LogoutTokenError {
    fn from(error: TokenError) -> Self {
        Self::Token(error)
    }
}

/// The parts of a verified logout token that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// `iss`.
    pub issuer: String,
    /// `sid`, the session to end.
    pub sid: Option<String>,
    /// `sub`, the subject.
    pub sub: Option<String>,
    /// `jti`, for replay protection.
    pub jti: String,
    /// `iat`: when the identity provider ended the session.
    pub iat: u64,
    /// Until when a replay of this token could still be accepted (Unix seconds): its `jti`
    /// must be remembered at least as long.
    pub replayable_until: u64,
}

impl Verifier {
    /// Verifies a back-channel logout token at `now` (Unix seconds). `audiences` maps each
    /// issuer to the `aud` values (client ids) its logout tokens may carry.
    ///
    /// A `typ` header, when present, must be `logout+jwt` (or `application/logout+jwt`) or the
    /// generic `JWT`; explicit typing of another kind (e.g. `at+jwt`) is refused.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        audiences: &BTreeMap<String, Vec<String>>,
        now: u64,
    ) -> Result<LogoutToken, LogoutTokenError> {
        let Signed {
            issuer,
            header,
            claims,
            ..
        } = self.verify_signed(token).await?;
        let accepted = audiences
            .get(&issuer.issuer)
            .ok_or(LogoutTokenError::NotEnabled)?;
        check_typ(&header)?;
        let aud = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenError::Malformed)?,
            Some(_) => return Err(TokenError::Malformed.into()),
            None => return Err(TokenError::MissingClaim("aud").into()),
        };
        // Every audience must be trusted (OIDC Core 3.1.3.7, which §2.6 refers to).
        if aud.is_empty() || !aud.iter().all(|aud| accepted.iter().any(|a| a == aud)) {
            return Err(LogoutTokenError::WrongAudience);
        }
        match claims.get("events") {
            Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
                Some(Value::Object(_)) => {}
                Some(_) => return Err(TokenError::Malformed.into()),
                None => return Err(LogoutTokenError::NotALogoutToken),
            },
            Some(_) => return Err(TokenError::Malformed.into()),
            None => return Err(LogoutTokenError::NotALogoutToken),
        }
        if claims.contains_key("nonce") {
            return Err(LogoutTokenError::NoncePresent);
        }
        let leeway = self.leeway();
        let iat = numeric_date(&claims, "iat")?.ok_or(LogoutTokenError::MissingClaim("iat"))?;
        let oldest = now.saturating_sub(MAX_LOGOUT_TOKEN_AGE + leeway);
        if iat < oldest || iat > now.saturating_add(leeway) {
            return Err(LogoutTokenError::Stale);
        }
        if numeric_date(&claims, "exp")?.is_some_and(|exp| exp.saturating_add(leeway) <= now) {
            return Err(LogoutTokenError::Stale);
        }
        let sid = string(&claims, "sid")?;
        let sub = string(&claims, "sub")?;
        if sid.is_none() && sub.is_none() {
            return Err(LogoutTokenError::NoSessionOrSubject);
        }
        let jti = string(&claims, "jti")?.ok_or(LogoutTokenError::MissingClaim("jti"))?;
        Ok(LogoutToken {
            issuer: issuer.issuer.clone(),
            sid,
            sub,
            jti,
            iat,
            replayable_until: iat.saturating_add(MAX_LOGOUT_TOKEN_AGE + 2 * leeway + 1),
        })
    }
}

fn check_typ(header: &Map<String, Value>) -> Result<(), LogoutTokenError> {
    match header_typ(header)? {
        None => Ok(()),
        Some(typ) if same_type(typ, "logout+jwt") || same_type(typ, "jwt") => Ok(()),
        Some(_) => Err(LogoutTokenError::NotALogoutToken),
    }
}

/// An optional non-empty string claim; another type is malformed, an empty string absent.
fn string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if value.is_empty() => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// An optional NumericDate (non-negative, fractions floored).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match (number.as_u64(), number.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            // `as` saturates: a huge date becomes u64::MAX.
            (None, Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Some(seconds.floor() as u64))
            }
            _ => Err(TokenError::Malformed),
        },
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_tokens::*;
    use serde_json::json;
    use std::time::Duration;

    const LEEWAY: u64 = 30;
    const CLIENT: &str = "web-app";

    async fn verifier() -> Verifier {
        Verifier::new(
            &test_issuers(),
            Duration::from_secs(LEEWAY),
            8192,
            Duration::from_secs(24 * 3600),
        )
        .await
        .expect("verifier")
    }

    fn audiences() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(ISSUER.to_owned(), vec![CLIENT.to_owned()])])
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": CLIENT, "iat": NOW - 5, "jti": "lt-1", "sid": "s-1",
            "sub": "alice", "events": {BACKCHANNEL_LOGOUT_EVENT: {}}
        })
    }

    fn logout_header() -> Value {
        json!({"alg": "RS256", "typ": "logout+jwt", "kid": "rsa-1"})
    }

    fn mint(header: &Value, claims: &Value) -> String {
        sign(
            header,
            claims,
            TestKey::Rsa.alg(),
            &TestKey::Rsa.encoding_key(),
        )
    }

    async fn check(header: &Value, claims: &Value) -> Result<LogoutToken, LogoutTokenError> {
        verifier()
            .await
            .verify_logout_token(&mint(header, claims), &audiences(), NOW)
            .await
    }

    fn with(key: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[key] = value;
        claims
    }

    fn without(key: &str) -> Value {
        let mut claims = claims();
        claims.as_object_mut().expect("object").remove(key);
        claims
    }

    #[tokio::test]
    async fn a_valid_logout_token_is_accepted() {
        let token = check(&logout_header(), &claims()).await.expect("valid");
        assert_eq!(token.issuer, ISSUER);
        assert_eq!(token.sid.as_deref(), Some("s-1"));
        assert_eq!(token.sub.as_deref(), Some("alice"));
        assert_eq!(token.jti, "lt-1");
        assert!(token.replayable_until > NOW + MAX_LOGOUT_TOKEN_AGE);
        for typ in ["JWT", "application/logout+jwt"] {
            let header = json!({"alg": "RS256", "typ": typ, "kid": "rsa-1"});
            assert!(check(&header, &claims()).await.is_ok(), "{typ}");
        }
        let header = json!({"alg": "RS256", "kid": "rsa-1"});
        assert!(check(&header, &without("sid")).await.is_ok(), "sub only");
        assert!(check(&header, &without("sub")).await.is_ok(), "sid only");
        let exp = with("exp", json!(NOW + 60));
        assert!(check(&header, &exp).await.is_ok(), "exp in the future");
    }

    #[tokio::test]
    async fn every_refusal_has_its_reason() {
        let header = logout_header();
        let cases = [
            (without("events"), LogoutTokenError::NotALogoutToken),
            (
                with("events", json!({"http://example.com/other": {}})),
                LogoutTokenError::NotALogoutToken,
            ),
            (with("nonce", json!("n")), LogoutTokenError::NoncePresent),
            (with("aud", json!("api")), LogoutTokenError::WrongAudience),
            (
                with("aud", json!([CLIENT, "some-other-client"])),
                LogoutTokenError::WrongAudience,
            ),
            (with("aud", json!([])), LogoutTokenError::WrongAudience),
            (without("jti"), LogoutTokenError::MissingClaim("jti")),
            (without("iat"), LogoutTokenError::MissingClaim("iat")),
            (
                with("iat", json!(NOW - MAX_LOGOUT_TOKEN_AGE - LEEWAY - 1)),
                LogoutTokenError::Stale,
            ),
            (
                with("iat", json!(NOW + LEEWAY + 1)),
                LogoutTokenError::Stale,
            ),
            (with("exp", json!(NOW - LEEWAY)), LogoutTokenError::Stale),
            (
                {
                    let mut claims = without("sid");
                    claims.as_object_mut().expect("object").remove("sub");
                    claims
                },
                LogoutTokenError::NoSessionOrSubject,
            ),
            (
                with("iss", json!("https://evil.test")),
                LogoutTokenError::Token(TokenError::UnknownIssuer),
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(check(&header, &claims).await, Err(expected), "{claims}");
        }
    }

    #[tokio::test]
    async fn access_tokens_and_bad_signatures_are_refused() {
        let verifier = verifier().await;
        let access = TestKey::Rsa.mint(&TestKey::Rsa.claims());
        assert_eq!(
            verifier
                .verify_logout_token(&access, &audiences(), NOW)
                .await,
            Err(LogoutTokenError::WrongAudience)
        );
        let mut access_for_client = TestKey::Rsa.claims();
        access_for_client["aud"] = json!(CLIENT);
        assert_eq!(
            check(&TestKey::Rsa.header(), &access_for_client).await,
            Err(LogoutTokenError::NotALogoutToken)
        );
        let typed = json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"});
        assert_eq!(
            check(&typed, &claims()).await,
            Err(LogoutTokenError::NotALogoutToken)
        );
        let forged = sign(
            &logout_header(),
            &claims(),
            TestKey::Rsa.alg(),
            &TestKey::Untrusted.encoding_key(),
        );
        assert_eq!(
            verifier
                .verify_logout_token(&forged, &audiences(), NOW)
                .await,
            Err(LogoutTokenError::Token(TokenError::BadSignature))
        );
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims().to_string().as_bytes())
        );
        assert_eq!(
            verifier
                .verify_logout_token(&unsigned, &audiences(), NOW)
                .await,
            Err(LogoutTokenError::Token(TokenError::AlgorithmNone))
        );
        assert_eq!(
            verifier
                .verify_logout_token(&mint(&logout_header(), &claims()), &BTreeMap::new(), NOW)
                .await,
            Err(LogoutTokenError::NotEnabled)
        );
    }
}
