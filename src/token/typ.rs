//! The JOSE `typ` header (RFC 7515 §4.1.9): what kind of JWT a token says it is, and the rule
//! for access tokens on Check.
//!
//! `typ` is a media type: compared ASCII case-insensitively, with or without the
//! `application/` prefix (`at+jwt` = `application/AT+JWT`). An access token may say nothing,
//! the generic `JWT`, or `at+jwt` (RFC 9068); any other explicit type — a logout token
//! (`logout+jwt`), a Security Event Token (`secevent+jwt`), an ID token typed by its issuer,
//! anything unknown — says it is not an access token, and is refused, whatever its `aud`.
//! An issuer with `require_typ` must type every access token with exactly that type.

use super::TokenError;
use serde_json::{Map, Value};

/// The types an access token may carry when its issuer sets no `require_typ`.
pub const ACCESS_TYPES: [&str; 2] = ["jwt", "at+jwt"];

/// Types that name other kinds of token, never acceptable as `require_typ`.
pub const NON_ACCESS_TYPES: [&str; 2] = ["logout+jwt", "secevent+jwt"];

/// `typ` without a leading `application/` (in any case).
fn subtype(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &typ[PREFIX.len()..],
        _ => typ,
    }
}

/// Whether the `typ` values `a` and `b` name the same type (RFC 7515 §4.1.9).
pub fn same_type(a: &str, b: &str) -> bool {
    subtype(a).eq_ignore_ascii_case(subtype(b))
}

/// The header's `typ`, if any; a `typ` that is not a string is malformed.
pub fn header_typ(header: &Map<String, Value>) -> Result<Option<&str>, TokenError> {
    match header.get("typ") {
        None => Ok(None),
        Some(Value::String(typ)) => Ok(Some(typ)),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// Checks an access token's `typ` on Check: with `require` (the issuer's `require_typ`),
/// `typ` must be that type; without, absent or one of [`ACCESS_TYPES`]. Otherwise
/// [`TokenError::WrongType`].
pub fn check_access_typ(
    header: &Map<String, Value>,
    require: Option<&str>,
) -> Result<(), TokenError> {
    let typ = header_typ(header)?;
    let accepted = match (typ, require) {
        (Some(typ), Some(required)) => same_type(typ, required),
        (None, Some(_)) => false,
        (Some(typ), None) => ACCESS_TYPES.iter().any(|access| same_type(typ, access)),
        (None, None) => true,
    };
    if accepted {
        Ok(())
    } else {
        Err(TokenError::WrongType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(typ: Option<Value>, require: Option<&str>) -> Result<(), TokenError> {
        let mut header = Map::new();
        header.insert("alg".to_owned(), json!("RS256"));
        if let Some(typ) = typ {
            header.insert("typ".to_owned(), typ);
        }
        check_access_typ(&header, require)
    }

    #[test]
    fn access_types_pass_in_any_case_with_or_without_the_prefix() {
        assert_eq!(check(None, None), Ok(()));
        for typ in [
            "JWT",
            "jwt",
            "application/jwt",
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert_eq!(check(Some(json!(typ)), None), Ok(()), "{typ}");
        }
    }

    #[test]
    fn other_explicit_types_are_refused() {
        for typ in [
            "logout+jwt",
            "application/logout+jwt",
            "LOGOUT+JWT",
            "secevent+jwt",
            "application/secevent+jwt",
            "id_token+jwt",
            "dpop+jwt",
            "JOSE",
            "",
            "application/",
            "jwt ",
            "at+jwt+x",
            "text/at+jwt",
        ] {
            assert_eq!(
                check(Some(json!(typ)), None),
                Err(TokenError::WrongType),
                "{typ}"
            );
        }
        assert_eq!(check(Some(json!(1)), None), Err(TokenError::Malformed));
    }

    #[test]
    fn require_typ_admits_only_that_type() {
        let at = Some("at+jwt");
        assert_eq!(check(Some(json!("application/at+jwt")), at), Ok(()));
        assert_eq!(check(Some(json!("AT+JWT")), at), Ok(()));
        assert_eq!(check(Some(json!("JWT")), at), Err(TokenError::WrongType));
        assert_eq!(check(None, at), Err(TokenError::WrongType));
        let custom = Some("application/vnd.example.at+jwt");
        assert_eq!(check(Some(json!("vnd.example.at+jwt")), custom), Ok(()));
    }

    #[test]
    fn same_type_ignores_case_and_prefix_only() {
        assert!(same_type("application/logout+jwt", "logout+JWT"));
        assert!(!same_type("logout+jwt", "jwt"));
        assert!(!same_type("xapplication/jwt", "jwt"));
        // A multi-byte character where the prefix would end must not split a char.
        assert!(!same_type("applicatio\u{e9}/jwt", "jwt"));
    }
}

/// The rule through the [`Verifier`](super::Verifier) (access tokens) and next to the
/// back-channel logout rule (logout tokens).
#[cfg(test)]
mod verifier_tests {
    use crate::config::KeySource;
    use crate::token::logout::BACKCHANNEL_LOGOUT_EVENT;
    use crate::token::test_tokens::*;
    use crate::token::{LogoutTokenError, TimeRule, TokenError, Verifier};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::time::Duration;

    async fn verifier(require_typ: Option<&str>) -> Verifier {
        let mut issuer = issuer_with_jwks(KeySource::File(fixture("jwks.json")));
        issuer.require_typ = require_typ.map(str::to_owned);
        Verifier::new(
            &[issuer],
            Duration::from_secs(30),
            8192,
            Duration::from_secs(3600),
        )
        .await
        .expect("verifier")
    }

    fn typed(typ: Option<&str>, claims: &Value) -> String {
        let key = TestKey::Rsa;
        let mut header = key.header();
        match typ {
            Some(typ) => header["typ"] = json!(typ),
            None => {
                header.as_object_mut().expect("object").remove("typ");
            }
        }
        sign(&header, claims, key.alg(), &key.encoding_key())
    }

    /// A logout token whose `aud` is also the API's audience.
    fn logout_claims() -> Value {
        json!({
            "iss": ISSUER, "aud": [AUDIENCE, "web-app"], "sub": "alice", "sid": "s-1",
            "iat": NOW - 5, "exp": NOW + 120, "jti": "lt-1",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}}
        })
    }

    #[tokio::test]
    async fn logout_and_event_tokens_are_not_access_tokens() {
        let verifier = verifier(None).await;
        for typ in [
            "logout+jwt",
            "application/logout+jwt",
            "secevent+jwt",
            "application/secevent+jwt",
            "Logout+JWT",
        ] {
            let token = typed(Some(typ), &logout_claims());
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await.err(),
                Some(TokenError::WrongType),
                "{typ}"
            );
        }
        // Untyped or typed as an access token, claims that carry `events` are still a
        // logout token or a SET: refused too.
        for typ in [None, Some("JWT"), Some("at+jwt")] {
            let token = typed(typ, &logout_claims());
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await.err(),
                Some(TokenError::WrongType),
                "{typ:?} with events"
            );
        }
        // The control: the same claims without `events`, untyped or typed as an access
        // token, pass Check's rules (a valid JWT for the API's audience).
        let mut without_events = logout_claims();
        if let Some(claims) = without_events.as_object_mut() {
            claims.remove("events");
        }
        for typ in [
            None,
            Some("JWT"),
            Some("at+jwt"),
            Some("application/at+jwt"),
        ] {
            let token = typed(typ, &without_events);
            assert!(
                verifier
                    .verify(&token, NOW, TimeRule::Enforce)
                    .await
                    .is_ok(),
                "{typ:?}"
            );
        }
    }

    #[tokio::test]
    async fn require_typ_is_enforced_per_issuer() {
        let verifier = verifier(Some("at+jwt")).await;
        let claims = TestKey::Rsa.claims();
        for typ in [Some("at+jwt"), Some("application/AT+JWT")] {
            let token = typed(typ, &claims);
            assert!(
                verifier
                    .verify(&token, NOW, TimeRule::Enforce)
                    .await
                    .is_ok()
            );
        }
        for typ in [None, Some("JWT"), Some("logout+jwt")] {
            let token = typed(typ, &claims);
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await.err(),
                Some(TokenError::WrongType),
                "{typ:?}"
            );
        }
    }

    #[tokio::test]
    async fn access_tokens_stay_refused_as_logout_tokens() {
        let verifier = verifier(None).await;
        let audiences = BTreeMap::from([(
            ISSUER.to_owned(),
            vec![AUDIENCE.to_owned(), "web-app".to_owned()],
        )]);
        let token = typed(Some("at+jwt"), &logout_claims());
        assert_eq!(
            verifier.verify_logout_token(&token, &audiences, NOW).await,
            Err(LogoutTokenError::NotALogoutToken)
        );
        let token = typed(Some("application/logout+jwt"), &logout_claims());
        assert!(
            verifier
                .verify_logout_token(&token, &audiences, NOW)
                .await
                .is_ok()
        );
    }
}
