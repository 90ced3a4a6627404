//! Reading the verified token's claims from the payload `jwt_authn` forwards
//! (`forward_payload_header`), with the server's own reader ([`Claims::from_payload`]), into
//! the [`TokenIdentity`] the revocation set looks up. Any doubt refuses: the header sent twice,
//! not base64url, or claims the server would refuse (duplicate members, a claim of the wrong
//! type, no `iss`, `aud` or `exp`). Parsed claims are cached by payload, bounded in bytes: a
//! request of a token seen before costs one hash of its payload, as `jwt_authn`'s own JWT
//! cache does.

use crate::config::{LifetimeRule, MAX_PAYLOAD_CHARS};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_revoker::revocation::TokenIdentity;
use jwt_revoker::token::TokenError;
use jwt_revoker::token::claims::{Claims, revocable_claim_ids, token_id};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
    /// No payload header: `jwt_authn` verified no token for this request.
    NoToken,
    /// The payload header appears more than once.
    Repeated,
    /// The payload is not base64url of a JSON object, a claim has the wrong type, or a JSON
    /// member appears twice.
    Malformed,
    /// A claim the server requires (`iss`, `aud`, `exp`) is missing.
    Missing(&'static str),
    /// A revocable claim is not a string in the token, or its value could never be revoked
    /// (control characters, too long): the token would escape revocations by that claim.
    UnrevocableClaim,
}

/// Why a token's lifetime is refused (the server's rule: see [`LifetimeRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeError {
    /// No `iat` (and the rule does not allow that).
    MissingIssuedAt,
    /// `exp - iat` is longer than `max_token_lifetime`.
    TooLong,
}

/// The revocation-relevant claims of one token payload, and the replica generation at which
/// no revocation covered them (see [`Replica::lookup_remembered`]: while the set is
/// unchanged, a cached token skips the lookups, as in the server's Check).
///
/// [`Replica::lookup_remembered`]: jwt_revoker::revocation::Replica::lookup_remembered
#[derive(Debug)]
pub struct TokenClaims {
    issuer: String,
    token_id: String,
    session: Option<String>,
    subject: Option<String>,
    client: Option<String>,
    issued_at: Option<u64>,
    expires_at: u64,
    /// The `NAME=VALUE` lookup ids of the revocable claims the token carries.
    claims: Vec<String>,
    clear_at: AtomicU64,
}

/// Bytes a cached entry holds besides its strings (key box, `Arc`, the struct, the cache's
/// own slot), rounded up.
const ENTRY_OVERHEAD: usize = 192;

impl TokenClaims {
    /// Reads the claims from the base64url `payload` as `jwt_authn` forwards it, with the
    /// lookup ids of the `revocable` claims it carries (the server's rules: a present one
    /// must be a string).
    pub fn from_encoded(payload: &[u8], revocable: &[String]) -> Result<Self, ClaimsError> {
        if payload.len() > MAX_PAYLOAD_CHARS {
            return Err(ClaimsError::Malformed);
        }
        let decoded = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ClaimsError::Malformed)?;
        let claims = Claims::from_payload(&decoded).map_err(|error| match error {
            TokenError::MissingClaim(name) => ClaimsError::Missing(name),
            _ => ClaimsError::Malformed,
        })?;
        let claim_ids = revocable_claim_ids(&claims.all, revocable)
            .map_err(|_| ClaimsError::UnrevocableClaim)?;
        Ok(Self {
            token_id: token_id(&claims, &decoded),
            issuer: claims.iss,
            session: claims.sid,
            subject: claims.sub,
            client: claims.client_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
            claims: claim_ids,
            clear_at: AtomicU64::new(0),
        })
    }

    /// The heap bytes this entry holds in the cache under a key of `key_len` bytes.
    fn weight(&self, key_len: usize) -> u64 {
        let strings = [&self.session, &self.subject, &self.client]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
            + self.claims.iter().map(String::len).sum::<usize>()
            + self.issuer.len()
            + self.token_id.len();
        (key_len + strings + ENTRY_OVERHEAD) as u64
    }

    /// Checks the server's lifetime rule: `iat` present (unless allowed to be absent) and
    /// `exp - iat` at most `max_token_lifetime`. Without it a token could outlive the
    /// revocation by session, subject or client meant to stop it.
    pub fn check_lifetime(&self, rule: LifetimeRule) -> Result<(), LifetimeError> {
        match self.issued_at {
            None if rule.allow_missing_iat => Ok(()),
            None => Err(LifetimeError::MissingIssuedAt),
            Some(issued_at)
                if self.expires_at.saturating_sub(issued_at)
                    > rule.max_token_lifetime.as_secs() =>
            {
                Err(LifetimeError::TooLong)
            }
            Some(_) => Ok(()),
        }
    }

    /// The token's `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where [`Replica::lookup_remembered`] remembers the generation at which the token was
    /// clear.
    ///
    /// [`Replica::lookup_remembered`]: jwt_revoker::revocation::Replica::lookup_remembered
    pub fn clear_at(&self) -> &AtomicU64 {
        &self.clear_at
    }

    /// The identity the revocation set looks up.
    pub fn identity(&self) -> TokenIdentity<'_> {
        TokenIdentity {
            issuer: &self.issuer,
            token_id: &self.token_id,
            session: self.session.as_deref(),
            subject: self.subject.as_deref(),
            client: self.client.as_deref(),
            issued_at: self.issued_at,
            claims: &self.claims,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ByWeight;

impl Weighter<Box<[u8]>, Arc<TokenClaims>> for ByWeight {
    fn weight(&self, key: &Box<[u8]>, claims: &Arc<TokenClaims>) -> u64 {
        claims.weight(key.len())
    }
}

/// Parsed claims by payload, shared by every Envoy worker, bounded in bytes.
pub struct ClaimsCache {
    cache: Option<Cache<Box<[u8]>, Arc<TokenClaims>, ByWeight>>,
    revocable: Vec<String>,
}

impl std::fmt::Debug for ClaimsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsCache")
            .field("entries", &self.cache.as_ref().map_or(0, Cache::len))
            .finish()
    }
}

impl ClaimsCache {
    /// A cache holding at most `max_bytes` (0: none, every request parses its payload) of
    /// claims read with the `revocable` claim names.
    pub fn new(max_bytes: usize, revocable: Vec<String>) -> Self {
        let cache = (max_bytes > 0).then(|| {
            let estimated = (max_bytes / 1024).max(16);
            Cache::with_weighter(estimated, max_bytes as u64, ByWeight)
        });
        Self { cache, revocable }
    }

    /// The claims of the request's payload header `name`.
    pub fn read(
        &self,
        headers: &impl RequestHeaders,
        name: &str,
    ) -> Result<Arc<TokenClaims>, ClaimsError> {
        let payload = match headers.get(name) {
            Header::Absent => return Err(ClaimsError::NoToken),
            Header::Repeated => return Err(ClaimsError::Repeated),
            Header::One([]) => return Err(ClaimsError::NoToken),
            Header::One(payload) => payload,
        };
        let Some(cache) = &self.cache else {
            return TokenClaims::from_encoded(payload, &self.revocable).map(Arc::new);
        };
        if let Some(claims) = cache.get(payload) {
            return Ok(claims);
        }
        let claims = Arc::new(TokenClaims::from_encoded(payload, &self.revocable)?);
        cache.insert(payload.into(), Arc::clone(&claims));
        Ok(claims)
    }

    /// How many payloads are cached.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::DEFAULT_PAYLOAD_HEADER;
    use jwt_revoker::token::claims::payload_id;
    use serde_json::{Value, json};
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

        /// The headers of a request whose verified payload is `claims`.
        pub(crate) fn payload(claims: &Value) -> Self {
            Self::new(&[(DEFAULT_PAYLOAD_HEADER, &encoded(claims))])
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

    /// `claims` as `jwt_authn` forwards them: base64url, no padding.
    pub(crate) fn encoded(claims: &Value) -> String {
        URL_SAFE_NO_PAD.encode(claims.to_string())
    }

    /// Claims every test token has, with `extra` merged in.
    pub(crate) fn claims(extra: Value) -> Value {
        let mut claims = json!({"iss": "https://idp", "aud": "api", "iat": 1_700_000_000_u64,
            "exp": 1_700_003_600_u64, "jti": "j"});
        for (name, value) in extra.as_object().into_iter().flatten() {
            claims[name] = value.clone();
        }
        claims
    }

    fn read(headers: &Fixed) -> Result<Arc<TokenClaims>, ClaimsError> {
        ClaimsCache::new(1 << 20, Vec::new()).read(headers, DEFAULT_PAYLOAD_HEADER)
    }

    #[test]
    fn reads_every_claim_and_prefers_client_id_over_azp() {
        let headers = Fixed::payload(&claims(json!({"sid": "s1", "sub": "alice",
            "client_id": "web", "azp": "other"})));
        let claims = read(&headers).expect("claims");
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
                "j",
                Some("s1"),
                Some("alice"),
                Some("web"),
                Some(1_700_000_000)
            )
        );
    }

    #[test]
    fn a_token_without_jti_is_named_by_its_payload_digest_like_the_server() {
        let payload = br#"{"iss":"https://idp","aud":"api","exp":1,"sub":"a"}"#;
        let encoded = URL_SAFE_NO_PAD.encode(payload);
        let headers = Fixed::new(&[(DEFAULT_PAYLOAD_HEADER, &encoded)]);
        let claims = read(&headers).expect("claims");
        assert_eq!(claims.identity().token_id, payload_id(payload));
        assert!(claims.identity().token_id.starts_with("sha256:"));
    }

    #[test]
    fn the_servers_lifetime_rule_holds_here_too() {
        let rule = LifetimeRule {
            max_token_lifetime: std::time::Duration::from_secs(3600),
            allow_missing_iat: false,
        };
        let check = |extra: Value, rule: LifetimeRule| {
            let mut claims = claims(extra);
            claims
                .as_object_mut()
                .expect("object")
                .retain(|_, v| !v.is_null());
            read(&Fixed::payload(&claims))
                .expect("claims")
                .check_lifetime(rule)
        };
        assert_eq!(check(json!({}), rule), Ok(()));
        assert_eq!(
            check(json!({"exp": 1_700_003_601_u64}), rule),
            Err(LifetimeError::TooLong)
        );
        assert_eq!(
            check(json!({"iat": null}), rule),
            Err(LifetimeError::MissingIssuedAt)
        );
        let lenient = LifetimeRule {
            allow_missing_iat: true,
            ..rule
        };
        assert_eq!(check(json!({"iat": null}), lenient), Ok(()));
        // exp before iat is no lifetime at all: jwt_authn refuses an expired token itself.
        assert_eq!(check(json!({"exp": 1}), rule), Ok(()));
    }

    #[test]
    fn doubt_refuses() {
        let read_pairs = |pairs: &[(&str, &str)]| read(&Fixed::new(pairs)).map(|_| ());
        let good = encoded(&claims(json!({})));
        assert_eq!(read_pairs(&[]), Err(ClaimsError::NoToken));
        assert_eq!(
            read_pairs(&[(DEFAULT_PAYLOAD_HEADER, "")]),
            Err(ClaimsError::NoToken)
        );
        assert_eq!(
            read_pairs(&[
                (DEFAULT_PAYLOAD_HEADER, &good),
                (DEFAULT_PAYLOAD_HEADER, &good)
            ]),
            Err(ClaimsError::Repeated)
        );
        for malformed in [
            "%%%".to_owned(),
            format!("{good}="),
            URL_SAFE_NO_PAD.encode("[1]"),
            URL_SAFE_NO_PAD.encode(r#"{"iss":"a","iss":"b","aud":"api","exp":1}"#),
            encoded(&claims(json!({"iat": "soon"}))),
            encoded(&claims(json!({"sub": ["alice", "bob"]}))),
            encoded(&claims(json!({"sid": 7}))),
            "A".repeat(MAX_PAYLOAD_CHARS + 1),
        ] {
            assert_eq!(
                read_pairs(&[(DEFAULT_PAYLOAD_HEADER, &malformed)]),
                Err(ClaimsError::Malformed),
                "{malformed:.80}"
            );
        }
        let mut no_exp = claims(json!({}));
        no_exp.as_object_mut().expect("object").remove("exp");
        assert_eq!(
            read_pairs(&[(DEFAULT_PAYLOAD_HEADER, &encoded(&no_exp))]),
            Err(ClaimsError::Missing("exp"))
        );
        let not_utf8 = Fixed(HashMap::from([(
            DEFAULT_PAYLOAD_HEADER.to_owned(),
            vec![vec![0xff, 0xfe]],
        )]));
        assert_eq!(read(&not_utf8).map(|_| ()), Err(ClaimsError::Malformed));
    }

    #[test]
    fn the_cache_returns_the_same_claims_and_stays_within_its_bytes() {
        let cache = ClaimsCache::new(64 * 1024, Vec::new());
        let headers = Fixed::payload(&claims(json!({"sub": "alice"})));
        let first = cache
            .read(&headers, DEFAULT_PAYLOAD_HEADER)
            .expect("claims");
        let again = cache
            .read(&headers, DEFAULT_PAYLOAD_HEADER)
            .expect("claims");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second read is a cache hit"
        );
        for n in 0..2_000 {
            let headers = Fixed::payload(&claims(json!({"jti": format!("token-{n}")})));
            cache
                .read(&headers, DEFAULT_PAYLOAD_HEADER)
                .expect("claims");
        }
        // Each entry weighs at least ENTRY_OVERHEAD bytes: 64 KiB holds far fewer than 2,000.
        assert!(cache.len() < 64 * 1024 / ENTRY_OVERHEAD, "{}", cache.len());
        let uncached = ClaimsCache::new(0, Vec::new());
        let one = uncached
            .read(&headers, DEFAULT_PAYLOAD_HEADER)
            .expect("claims");
        let two = uncached
            .read(&headers, DEFAULT_PAYLOAD_HEADER)
            .expect("claims");
        assert_eq!(one.identity().token_id, two.identity().token_id);
        assert!(!Arc::ptr_eq(&one, &two));
        assert!(uncached.is_empty());
    }

    #[test]
    fn revocable_claims_are_read_from_the_payload_and_must_be_strings() {
        let cache = ClaimsCache::new(1 << 20, vec!["email".to_owned()]);
        let read = |extra: Value| {
            cache
                .read(&Fixed::payload(&claims(extra)), DEFAULT_PAYLOAD_HEADER)
                .map(|claims| claims.identity().claims.to_vec())
        };
        assert_eq!(
            read(json!({"email": "Alice@X.org"})),
            Ok(vec!["email=alice@x.org".to_owned()])
        );
        assert_eq!(read(json!({})), Ok(Vec::new()));
        assert_eq!(read(json!({"email": ""})), Ok(Vec::new()));
        // A token must not dodge the lookup with another type or an unrevocable value.
        for not_a_string in [
            json!({"email": 5}),
            json!({"email": true}),
            json!({"email": ["a@x.org"]}),
            json!({"email": {"a": 1}}),
            json!({"email": "a\u{0}@x.org"}),
        ] {
            assert_eq!(
                read(not_a_string.clone()),
                Err(ClaimsError::UnrevocableClaim),
                "{not_a_string}"
            );
        }
        // Claims not configured are not read.
        let plain = ClaimsCache::new(1 << 20, Vec::new());
        let headers = Fixed::payload(&claims(json!({"email": 5})));
        assert!(plain.read(&headers, DEFAULT_PAYLOAD_HEADER).is_ok());
    }
}
