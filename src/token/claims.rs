//! The claims of a verified token, read from its JSON payload with strict types, and the
//! token's identifier used for revocation by token.

use super::TokenError;
use super::memo::TokenMemo;
use crate::revocation::model::claim_id;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The registered and revocation-relevant claims of a token, plus all of its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, given in the token as a string or an array of strings.
    pub aud: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// `nbf`, seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// `iat`, seconds since the Unix epoch.
    pub iat: Option<u64>,
    /// `jti` (an empty `jti` counts as absent).
    pub jti: Option<String>,
    /// `sid`, the session.
    pub sid: Option<String>,
    /// The client application: `client_id`, else `azp`.
    pub client_id: Option<String>,
    /// Every claim of the payload, as sent.
    pub all: Map<String, Value>,
}

/// A token whose signature, issuer, audience (and, unless ignored, lifetime) were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: Claims,
    /// Its identifier for revocation by token: the `jti`, or `sha256:<lowercase hex>` of the
    /// decoded payload bytes for a token without one.
    pub token_id: String,
    /// The `NAME=VALUE` lookup ids ([`claim_id`]) of its issuer's `revocable_claims` that it
    /// carries, for revocations of kind `claim`.
    pub revocable_claims: Vec<String>,
    /// What Check derived from it, kept while the token is cached.
    pub memo: TokenMemo,
}

impl VerifiedToken {
    /// Pairs `claims` with the identifier derived from them and the decoded `payload`.
    pub(crate) fn new(claims: Claims, payload: &[u8]) -> Self {
        let token_id = token_id(&claims, payload);
        Self {
            claims,
            token_id,
            revocable_claims: Vec::new(),
            memo: TokenMemo::default(),
        }
    }
}

/// A token's identifier for revocation by token: its `jti`, or [`payload_id`] of its decoded
/// `payload` when it has none.
pub fn token_id(claims: &Claims, payload: &[u8]) -> String {
    match &claims.jti {
        Some(jti) => jti.clone(),
        None => payload_id(payload),
    }
}

/// The lookup ids of the claims `names` in `all`: an absent claim (or an empty string) has
/// none. Fails closed: a present claim that is not a string, or whose id could never be
/// revoked (control characters, longer than an id may be), refuses the token, so that no
/// token can dodge the lookup with an array, a number or an unrevocable value.
pub fn revocable_claim_ids(
    all: &Map<String, Value>,
    names: &[String],
) -> Result<Vec<String>, TokenError> {
    let mut ids = Vec::new();
    for name in names {
        match all.get(name) {
            None => {}
            Some(Value::String(value)) if value.is_empty() => {}
            Some(Value::String(value)) => {
                ids.push(claim_id(name, value).map_err(|_| TokenError::UnrevocableClaim)?);
            }
            Some(_) => return Err(TokenError::UnrevocableClaim),
        }
    }
    Ok(ids)
}

/// `sha256:<lowercase hex>` of the decoded payload bytes: the token id of a token without
/// `jti` (also computed by the Envoy module from `jwt_authn`'s forwarded payload).
pub fn payload_id(payload: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload);
    let mut id = String::with_capacity(7 + 64);
    id.push_str("sha256:");
    for byte in digest.as_ref() {
        // Writing to a String cannot fail.
        let _ = write!(id, "{byte:02x}");
    }
    id
}

impl Claims {
    /// Reads the claims from a token's decoded payload bytes, with Check's rules: strict JSON
    /// (see [`parse_object`](super::json::parse_object)), then [`Claims::from_map`]'s types.
    /// The Envoy module reads `jwt_authn`'s forwarded payload with it, so both read a token
    /// the same way.
    pub fn from_payload(payload: &[u8]) -> Result<Self, TokenError> {
        Self::from_map(super::json::parse_object(payload)?)
    }

    /// Reads the claims from a token's JSON payload object. `iss`, `aud` and `exp` are
    /// required; a claim of the wrong type is [`TokenError::Malformed`].
    pub(crate) fn from_map(all: Map<String, Value>) -> Result<Self, TokenError> {
        let iss = string(&all, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        let aud = match all.get("aud") {
            None => return Err(TokenError::MissingClaim("aud")),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenError::Malformed)?,
            Some(_) => return Err(TokenError::Malformed),
        };
        let exp = numeric_date(&all, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        // Both are type-checked, whichever is used.
        let azp = string(&all, "azp")?;
        let client_id = string(&all, "client_id")?.or(azp);
        Ok(Self {
            iss,
            sub: string(&all, "sub")?,
            aud,
            exp,
            nbf: numeric_date(&all, "nbf")?,
            iat: numeric_date(&all, "iat")?,
            jti: string(&all, "jti")?.filter(|jti| !jti.is_empty()),
            sid: string(&all, "sid")?,
            client_id,
            all,
        })
    }
}

/// An optional string claim; another type is malformed.
fn string(all: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match all.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// An optional RFC 7519 NumericDate: a non-negative number of seconds, fractions floored.
fn numeric_date(all: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    let Some(value) = all.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(TokenError::Malformed);
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // `as` saturates: a huge date becomes u64::MAX, which is harmless.
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds.floor() as u64)),
        _ => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Claims, TokenError> {
        match value {
            Value::Object(all) => Claims::from_map(all),
            _ => panic!("not an object"),
        }
    }

    fn parse_bytes(payload: &[u8]) -> Result<Claims, TokenError> {
        parse(serde_json::from_slice(payload).expect("json"))
    }

    fn base() -> Value {
        json!({"iss": "https://issuer", "aud": "api", "exp": 2000})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut claims = base();
        claims[key] = value;
        claims
    }

    fn without(key: &str) -> Value {
        let mut claims = base();
        claims.as_object_mut().expect("object").remove(key);
        claims
    }

    #[test]
    fn reads_every_claim() {
        let claims = parse(json!({
            "iss": "https://issuer", "sub": "alice", "aud": ["api", "other"], "exp": 2000,
            "nbf": 1000, "iat": 1000, "jti": "id-1", "sid": "s-1", "client_id": "app",
            "azp": "ignored", "scope": "read"
        }))
        .expect("claims");
        assert_eq!(claims.iss, "https://issuer");
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.aud, ["api", "other"]);
        assert_eq!(
            (claims.exp, claims.nbf, claims.iat),
            (2000, Some(1000), Some(1000))
        );
        assert_eq!(claims.jti.as_deref(), Some("id-1"));
        assert_eq!(claims.sid.as_deref(), Some("s-1"));
        assert_eq!(claims.client_id.as_deref(), Some("app"));
        assert_eq!(claims.all["scope"], "read");
    }

    #[test]
    fn aud_may_be_a_string_or_an_array() {
        assert_eq!(parse(base()).expect("claims").aud, ["api"]);
        assert_eq!(
            parse(with("aud", json!(["a", "b"]))).expect("claims").aud,
            ["a", "b"]
        );
        assert!(
            parse(with("aud", json!([])))
                .expect("claims")
                .aud
                .is_empty()
        );
        assert_eq!(
            parse(with("aud", json!(["a", 1]))),
            Err(TokenError::Malformed)
        );
        assert_eq!(parse(with("aud", json!(7))), Err(TokenError::Malformed));
    }

    #[test]
    fn client_id_falls_back_to_azp() {
        let claims = parse(with("azp", json!("spa"))).expect("claims");
        assert_eq!(claims.client_id.as_deref(), Some("spa"));
        assert_eq!(parse(base()).expect("claims").client_id, None);
    }

    #[test]
    fn required_claims_must_be_present() {
        assert_eq!(parse(without("iss")), Err(TokenError::MissingClaim("iss")));
        assert_eq!(parse(without("aud")), Err(TokenError::MissingClaim("aud")));
        assert_eq!(parse(without("exp")), Err(TokenError::MissingClaim("exp")));
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        for (key, value) in [
            ("iss", json!(1)),
            ("sub", json!(["a"])),
            ("jti", json!(5)),
            ("sid", json!(null)),
            ("client_id", json!(true)),
            ("azp", json!({})),
            ("exp", json!("2000")),
            ("exp", json!(-1)),
            ("exp", json!(-0.5)),
            ("nbf", json!(null)),
            ("iat", json!("1")),
        ] {
            assert_eq!(
                parse(with(key, value.clone())),
                Err(TokenError::Malformed),
                "{key}: {value}"
            );
        }
    }

    #[test]
    fn numeric_dates_floor_fractions() {
        let claims = parse(json!({
            "iss": "i", "aud": "a", "exp": 2000.9, "nbf": 1000.2, "iat": 0
        }))
        .expect("claims");
        assert_eq!(
            (claims.exp, claims.nbf, claims.iat),
            (2000, Some(1000), Some(0))
        );
        let huge = parse(with("exp", json!(1e300))).expect("claims");
        assert_eq!(huge.exp, u64::MAX);
    }

    #[test]
    fn token_id_is_the_jti_or_a_payload_hash() {
        let payload = serde_json::to_vec(&with("jti", json!("abc"))).expect("json");
        let claims = parse_bytes(&payload).expect("claims");
        assert_eq!(VerifiedToken::new(claims, &payload).token_id, "abc");

        let payload = br#"{"iss":"i","aud":"a","exp":1}"#;
        let claims = parse_bytes(payload).expect("claims");
        let id = VerifiedToken::new(claims, payload).token_id;
        let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload);
        let hex: String = expected
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(id, format!("sha256:{hex}"));

        let payload = br#"{"iss":"i","aud":"a","exp":1,"jti":""}"#;
        let claims = parse_bytes(payload).expect("claims");
        assert!(
            VerifiedToken::new(claims, payload)
                .token_id
                .starts_with("sha256:")
        );
    }

    #[test]
    fn revocable_claims_give_lookup_ids_and_refuse_what_could_dodge_the_lookup() {
        let names = ["email".to_owned(), "phone_number".to_owned()];
        let ids = |claims: Value| {
            let Value::Object(all) = claims else {
                panic!("object")
            };
            revocable_claim_ids(&all, &names)
        };
        assert_eq!(
            ids(json!({"email": "Alice@Example.com", "phone_number": "+1 555"})),
            Ok(vec![
                "email=alice@example.com".to_owned(),
                "phone_number=+1 555".to_owned()
            ])
        );
        assert_eq!(ids(json!({"other": 1})), Ok(Vec::new()));
        assert_eq!(ids(json!({"email": ""})), Ok(Vec::new()));
        for dodge in [
            json!({"email": ["alice@example.com"]}),
            json!({"email": 5}),
            json!({"email": true}),
            json!({"email": null}),
            json!({"email": {"v": "alice@example.com"}}),
            json!({"email": "a\u{0}b"}),
            json!({"email": "x".repeat(2000)}),
        ] {
            assert_eq!(
                ids(dodge.clone()),
                Err(TokenError::UnrevocableClaim),
                "{dodge}"
            );
        }
        let Value::Object(all) = json!({"email": 5}) else {
            panic!("object")
        };
        assert_eq!(
            revocable_claim_ids(&all, &[]),
            Ok(Vec::new()),
            "unconfigured claims are not read"
        );
    }
}
