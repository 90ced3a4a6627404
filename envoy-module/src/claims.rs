//! Reading the verified claims that `jwt_authn` put into request headers, into the
//! [`TokenIdentity`] the revocation set looks up. Any doubt refuses: a claim header sent
//! twice, a value that is not UTF-8, an `iat` that is not a number, a revocable claim that is
//! not a string in the token (read from the forwarded payload, since `claim_to_headers`
//! writes numbers, booleans and base64 JSON for arrays alike) or that differs from its header.

use crate::config::{ClaimHeaders, LifetimeRule};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_revoker::revocation::TokenIdentity;
use jwt_revoker::revocation::model::claim_id;
use jwt_revoker::token::claims::payload_id;
use serde_json::{Map, Value};

/// One request header as Envoy holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    /// Not present.
    Absent,
    /// Present once, with this value.
    One(&'a [u8]),
    /// Present more than once.
    Repeated,
}

/// Read access to the request's headers.
pub trait RequestHeaders {
    /// The header `name` (lowercase).
    fn get(&self, name: &str) -> Header<'_>;
}

/// Why the claims cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsError {
    /// No issuer: `jwt_authn` verified no token for this request.
    NoToken,
    /// A claim header appears more than once.
    Repeated,
    /// A claim is not UTF-8, `iat` is not a number, or the payload is not base64url.
    Malformed,
    /// Neither `jti` nor the payload to derive the token id from.
    NoTokenId,
    /// A revocable claim is not a string in the token, or its value could never be revoked
    /// (control characters, too long): the token would escape revocations by that claim.
    UnrevocableClaim,
}

/// Why a token's lifetime is refused (the server's rule: see [`LifetimeRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeError {
    /// No `iat` (and the rule does not allow that).
    MissingIssuedAt,
    /// No `exp`.
    MissingExpiry,
    /// `exp - iat` is longer than `max_token_lifetime`.
    TooLong,
}

/// The claims of one request, borrowed from its headers where possible.
#[derive(Debug)]
pub struct RequestClaims<'a> {
    issuer: &'a str,
    token_id: TokenId<'a>,
    session: Option<&'a str>,
    subject: Option<&'a str>,
    client: Option<&'a str>,
    issued_at: Option<u64>,
    expires_at: Option<u64>,
    /// The `NAME=VALUE` lookup ids of the revocable claims the token carries.
    claims: Vec<String>,
}

#[derive(Debug)]
enum TokenId<'a> {
    Jti(&'a str),
    Digest(String),
}

fn text<'a>(header: Header<'a>) -> Result<Option<&'a str>, ClaimsError> {
    match header {
        Header::Absent => Ok(None),
        Header::Repeated => Err(ClaimsError::Repeated),
        Header::One(value) => std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| ClaimsError::Malformed),
    }
}

/// A NumericDate claim as `jwt_authn` writes it (an integer; a fraction is refused).
fn number(value: Option<&str>) -> Result<Option<u64>, ClaimsError> {
    value
        .map(|v| v.parse::<u64>().map_err(|_| ClaimsError::Malformed))
        .transpose()
}

fn decode_payload(payload: &str) -> Result<Vec<u8>, ClaimsError> {
    URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| ClaimsError::Malformed)
}

/// The lookup ids of the `revocable` claims (claim, header): each read from its header, and
/// checked against the token's payload, which must hold the same string (or, with no header,
/// not hold the claim).
fn revocable_claims(
    headers: &impl RequestHeaders,
    revocable: &[(String, String)],
    payload: Option<&str>,
) -> Result<Vec<String>, ClaimsError> {
    let mut ids = Vec::new();
    if revocable.is_empty() {
        return Ok(ids);
    }
    let payload = decode_payload(payload.ok_or(ClaimsError::Malformed)?)?;
    let all: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| ClaimsError::Malformed)?;
    for (name, header) in revocable {
        match (all.get(name), text(headers.get(header))?) {
            (None, None) => {}
            (Some(Value::String(value)), Some(written)) if value == written => {
                if !value.is_empty() {
                    ids.push(claim_id(name, value).map_err(|_| ClaimsError::UnrevocableClaim)?);
                }
            }
            (Some(Value::String(_)) | None, _) => return Err(ClaimsError::Malformed),
            (Some(_), _) => return Err(ClaimsError::UnrevocableClaim),
        }
    }
    Ok(ids)
}

impl<'a> RequestClaims<'a> {
    /// Reads the claims named by `names` from `headers`, and the `revocable` claims (claim,
    /// header).
    pub fn read(
        headers: &'a impl RequestHeaders,
        names: &ClaimHeaders,
        revocable: &[(String, String)],
    ) -> Result<Self, ClaimsError> {
        let issuer = text(headers.get(&names.issuer))?;
        let jti = text(headers.get(&names.token_id))?;
        let payload = text(headers.get(&names.payload))?;
        let session = text(headers.get(&names.session))?;
        let subject = text(headers.get(&names.subject))?;
        let client_id = text(headers.get(&names.client_id))?;
        let azp = text(headers.get(&names.azp))?;
        let issued_at = number(text(headers.get(&names.issued_at))?)?;
        let expires_at = number(text(headers.get(&names.expires_at))?)?;
        let issuer = issuer
            .filter(|i| !i.is_empty())
            .ok_or(ClaimsError::NoToken)?;
        let token_id = match (jti.filter(|j| !j.is_empty()), payload) {
            (Some(jti), _) => TokenId::Jti(jti),
            (None, Some(payload)) => TokenId::Digest(payload_id(&decode_payload(payload)?)),
            (None, None) => return Err(ClaimsError::NoTokenId),
        };
        let claims = revocable_claims(headers, revocable, payload)?;
        Ok(Self {
            issuer,
            token_id,
            session,
            subject,
            client: client_id.or(azp),
            issued_at,
            expires_at,
            claims,
        })
    }

    /// Checks the server's lifetime rule: `iat` (unless allowed to be absent) and `exp`
    /// present, `exp - iat` at most `max_token_lifetime`. Without it a token could outlive
    /// the revocation by session, subject or client meant to stop it.
    pub fn check_lifetime(&self, rule: LifetimeRule) -> Result<(), LifetimeError> {
        let expires_at = self.expires_at.ok_or(LifetimeError::MissingExpiry)?;
        match self.issued_at {
            None if rule.allow_missing_iat => Ok(()),
            None => Err(LifetimeError::MissingIssuedAt),
            Some(issued_at)
                if expires_at.saturating_sub(issued_at) > rule.max_token_lifetime.as_secs() =>
            {
                Err(LifetimeError::TooLong)
            }
            Some(_) => Ok(()),
        }
    }

    /// The token's `iss`.
    pub fn issuer(&self) -> &str {
        self.issuer
    }

    /// The identity the revocation set looks up.
    pub fn identity(&self) -> TokenIdentity<'_> {
        TokenIdentity {
            issuer: self.issuer,
            token_id: match &self.token_id {
                TokenId::Jti(jti) => jti,
                TokenId::Digest(digest) => digest,
            },
            session: self.session,
            subject: self.subject,
            client: self.client,
            issued_at: self.issued_at,
            claims: &self.claims,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Headers from (name, value) pairs; a name given twice is [`Header::Repeated`].
    pub(crate) struct Fixed(pub HashMap<String, Vec<Vec<u8>>>);

    impl Fixed {
        pub(crate) fn new(pairs: &[(&str, &str)]) -> Self {
            let mut map: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
            for (name, value) in pairs {
                map.entry((*name).to_owned())
                    .or_default()
                    .push(value.as_bytes().to_vec());
            }
            Self(map)
        }
    }

    impl RequestHeaders for Fixed {
        fn get(&self, name: &str) -> Header<'_> {
            match self.0.get(name).map(Vec::as_slice) {
                None | Some([]) => Header::Absent,
                Some([one]) => Header::One(one),
                Some(_) => Header::Repeated,
            }
        }
    }

    #[test]
    fn reads_every_claim_and_prefers_client_id_over_azp() {
        let headers = Fixed::new(&[
            ("x-jwt-iss", "https://idp"),
            ("x-jwt-jti", "j1"),
            ("x-jwt-sid", "s1"),
            ("x-jwt-sub", "alice"),
            ("x-jwt-client-id", "web"),
            ("x-jwt-azp", "other"),
            ("x-jwt-iat", "1700000000"),
        ]);
        let claims = RequestClaims::read(&headers, &ClaimHeaders::default(), &[]).expect("claims");
        let id = claims.identity();
        assert_eq!(
            (
                id.issuer,
                id.token_id,
                id.session,
                id.subject,
                id.client,
                id.issued_at
            ),
            (
                "https://idp",
                "j1",
                Some("s1"),
                Some("alice"),
                Some("web"),
                Some(1_700_000_000)
            )
        );
    }

    #[test]
    fn a_token_without_jti_is_named_by_its_payload_digest_like_the_server() {
        let payload = br#"{"iss":"https://idp","sub":"a"}"#;
        let encoded = URL_SAFE_NO_PAD.encode(payload);
        let headers = Fixed::new(&[("x-jwt-iss", "https://idp"), ("x-jwt-payload", &encoded)]);
        let claims = RequestClaims::read(&headers, &ClaimHeaders::default(), &[]).expect("claims");
        assert_eq!(claims.identity().token_id, payload_id(payload));
        assert!(claims.identity().token_id.starts_with("sha256:"));
    }

    #[test]
    fn the_servers_lifetime_rule_holds_here_too() {
        let rule = LifetimeRule {
            max_token_lifetime: std::time::Duration::from_secs(3600),
            allow_missing_iat: false,
        };
        let names = ClaimHeaders::default();
        let check = |pairs: &[(&str, &str)], rule: LifetimeRule| {
            let mut all = vec![("x-jwt-iss", "https://idp"), ("x-jwt-jti", "j")];
            all.extend_from_slice(pairs);
            let headers = Fixed::new(&all);
            RequestClaims::read(&headers, &names, &[])
                .expect("claims")
                .check_lifetime(rule)
        };
        let iat = ("x-jwt-iat", "1700000000");
        assert_eq!(check(&[iat, ("x-jwt-exp", "1700003600")], rule), Ok(()));
        assert_eq!(
            check(&[iat, ("x-jwt-exp", "1700003601")], rule),
            Err(LifetimeError::TooLong)
        );
        assert_eq!(check(&[iat], rule), Err(LifetimeError::MissingExpiry));
        assert_eq!(
            check(&[("x-jwt-exp", "1700003600")], rule),
            Err(LifetimeError::MissingIssuedAt)
        );
        let lenient = LifetimeRule {
            allow_missing_iat: true,
            ..rule
        };
        assert_eq!(check(&[("x-jwt-exp", "1900000000")], lenient), Ok(()));
        // exp before iat is no lifetime at all: jwt_authn refuses an expired token itself.
        assert_eq!(check(&[iat, ("x-jwt-exp", "1")], rule), Ok(()));
        let headers = Fixed::new(&[("x-jwt-iss", "i"), ("x-jwt-jti", "j"), ("x-jwt-exp", "1.5")]);
        assert_eq!(
            RequestClaims::read(&headers, &names, &[]).map(|_| ()),
            Err(ClaimsError::Malformed)
        );
    }

    #[test]
    fn doubt_refuses() {
        let names = ClaimHeaders::default();
        let read = |pairs: &[(&str, &str)]| {
            RequestClaims::read(&Fixed::new(pairs), &names, &[]).map(|_| ())
        };
        assert_eq!(read(&[("x-jwt-jti", "j")]), Err(ClaimsError::NoToken));
        assert_eq!(read(&[("x-jwt-iss", "i")]), Err(ClaimsError::NoTokenId));
        assert_eq!(
            read(&[("x-jwt-iss", "i"), ("x-jwt-jti", "a"), ("x-jwt-jti", "b")]),
            Err(ClaimsError::Repeated)
        );
        assert_eq!(
            read(&[
                ("x-jwt-iss", "i"),
                ("x-jwt-jti", "a"),
                ("x-jwt-iat", "soon")
            ]),
            Err(ClaimsError::Malformed)
        );
        assert_eq!(
            read(&[("x-jwt-iss", "i"), ("x-jwt-payload", "%%%")]),
            Err(ClaimsError::Malformed)
        );
        let not_utf8 = Fixed(HashMap::from([
            ("x-jwt-iss".to_owned(), vec![b"i".to_vec()]),
            ("x-jwt-jti".to_owned(), vec![vec![0xff, 0xfe]]),
        ]));
        assert_eq!(
            RequestClaims::read(&not_utf8, &names, &[]).map(|_| ()),
            Err(ClaimsError::Malformed)
        );
    }

    #[test]
    fn revocable_claims_are_read_from_their_headers_and_typed_by_the_payload() {
        let names = ClaimHeaders::default();
        let revocable = [("email".to_owned(), "x-jwt-email".to_owned())];
        let read = |payload: serde_json::Value, email: &[&str]| {
            let encoded = URL_SAFE_NO_PAD.encode(payload.to_string());
            let mut pairs = vec![
                ("x-jwt-iss", "https://idp"),
                ("x-jwt-jti", "j"),
                ("x-jwt-payload", encoded.as_str()),
            ];
            pairs.extend(email.iter().map(|value| ("x-jwt-email", *value)));
            let headers = Fixed::new(&pairs);
            RequestClaims::read(&headers, &names, &revocable)
                .map(|claims| claims.identity().claims.to_vec())
        };
        assert_eq!(
            read(
                serde_json::json!({"email": "Alice@X.org"}),
                &["Alice@X.org"]
            ),
            Ok(vec!["email=alice@x.org".to_owned()])
        );
        assert_eq!(read(serde_json::json!({}), &[]), Ok(Vec::new()));
        // jwt_authn writes "5", "true" or base64 JSON for these: refused, not looked up.
        for not_a_string in [
            serde_json::json!({"email": 5}),
            serde_json::json!({"email": true}),
            serde_json::json!({"email": ["a@x.org"]}),
            serde_json::json!({"email": {"a": 1}}),
        ] {
            assert_eq!(
                read(not_a_string.clone(), &["whatever"]),
                Err(ClaimsError::UnrevocableClaim),
                "{not_a_string}"
            );
        }
        // A header sent twice, one the payload does not back, or one missing.
        assert_eq!(
            read(
                serde_json::json!({"email": "a@x.org"}),
                &["a@x.org", "b@x.org"]
            ),
            Err(ClaimsError::Repeated)
        );
        assert_eq!(
            read(serde_json::json!({}), &["a@x.org"]),
            Err(ClaimsError::Malformed)
        );
        assert_eq!(
            read(serde_json::json!({"email": "a@x.org"}), &[]),
            Err(ClaimsError::Malformed)
        );
        assert_eq!(
            read(serde_json::json!({"email": "a@x.org"}), &["b@x.org"]),
            Err(ClaimsError::Malformed)
        );
        // Without the payload, nothing can vouch for the claim's type.
        let headers = Fixed::new(&[
            ("x-jwt-iss", "https://idp"),
            ("x-jwt-jti", "j"),
            ("x-jwt-email", "a@x.org"),
        ]);
        assert_eq!(
            RequestClaims::read(&headers, &names, &revocable).map(|_| ()),
            Err(ClaimsError::Malformed)
        );
    }
}
