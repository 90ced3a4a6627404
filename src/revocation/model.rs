//! The revocation model: what can be revoked, how a revocation is named, and how long it lives.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest identifier (`jti`, `sid`, `sub`, client id) or issuer accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Longest free-text reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 512;

/// What a revocation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One token, by `jti` (or `sha256:<hex>` of its decoded payload when it has no `jti`).
    Token,
    /// Every token whose `sid` matches, issued at or before the revocation (a token issued
    /// later with the same `sid`, e.g. from an `offline_access` refresh, is not covered).
    Session,
    /// Every token of a `sub` issued at or before the revocation.
    Subject,
    /// Every token of a `client_id`/`azp` issued at or before the revocation.
    Client,
    /// Every token whose claim `NAME` (one of its issuer's `revocable_claims`) has the value
    /// `VALUE`, issued at or before the revocation; the identifier is `NAME=VALUE` (see
    /// [`claim_id`]).
    Claim,
}

impl RevocationKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RevocationKind; 5] = [
        Self::Token,
        Self::Session,
        Self::Subject,
        Self::Client,
        Self::Claim,
    ];

    /// The kind's lowercase name, as used in logs, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Session => "session",
            Self::Subject => "subject",
            Self::Client => "client",
            Self::Claim => "claim",
        }
    }

    /// Parses the name produced by [`RevocationKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether a revocation of this kind only covers tokens issued at or before it.
    pub fn covers_by_issue_time(self) -> bool {
        matches!(
            self,
            Self::Session | Self::Subject | Self::Client | Self::Claim
        )
    }
}

impl fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names a revocation: an issuer, a kind, and the identifier of that kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RevocationKey {
    /// The `iss` the identifier belongs to.
    pub issuer: String,
    /// What the identifier identifies.
    pub kind: RevocationKind,
    /// The `jti`, `sid`, `sub`, client id, or `NAME=VALUE` of a claim.
    pub id: String,
}

/// Longest claim name accepted in `revocable_claims` and in a claim revocation, in bytes.
pub const MAX_CLAIM_NAME_LEN: usize = 64;

/// Claims that can never be revocable: the registered claims that are not strings or that
/// every token shares (a `revocable_claims = ["exp"]` would refuse every token).
pub const RESERVED_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// Whether `name` can name a revocable claim: 1 to [`MAX_CLAIM_NAME_LEN`] ASCII letters,
/// digits, `_` or `-`. No `=` (so that `NAME=VALUE` splits at its first `=`), no `.` (which
/// Envoy's `claim_to_headers` reads as a path into nested claims), not a reserved claim.
pub fn valid_claim_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CLAIM_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !RESERVED_CLAIMS.contains(&name)
}

/// The identifier of a claim revocation, and the one a token's claim is looked up by:
/// `NAME=VALUE`, the value with ASCII letters lowercased (identity providers treat e-mail
/// addresses without case, and revoking more is the safe side); other bytes compare exactly.
/// Refuses an unusable name, an empty value, control characters, and an identifier longer
/// than [`MAX_ID_LEN`].
pub fn claim_id(name: &str, value: &str) -> Result<String, InvalidRevocation> {
    if !valid_claim_name(name) {
        return Err(InvalidRevocation::ClaimName);
    }
    if value.is_empty() {
        return Err(InvalidRevocation::Empty("id"));
    }
    let mut id = String::with_capacity(name.len() + 1 + value.len());
    id.push_str(name);
    id.push('=');
    id.push_str(value);
    id[name.len() + 1..].make_ascii_lowercase();
    check_text("id", &id, MAX_ID_LEN, true)?;
    Ok(id)
}

/// Why a [`RevocationKey`] or a reason was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRevocation {
    /// A required field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A field is longer than allowed.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A field holds control characters.
    #[error("{0} must not contain control characters")]
    ControlCharacters(&'static str),
    /// The id of a claim revocation is not `NAME=VALUE` with a usable claim name.
    #[error(
        "id of a claim revocation must be NAME=VALUE, NAME 1 to 64 letters, digits, _ or - \
         (not iss, aud, exp, nbf, iat or jti)"
    )]
    ClaimName,
}

impl InvalidRevocation {
    /// The field at fault (`issuer`, `id`, `reason`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::Empty(field) | Self::ControlCharacters(field) => field,
            Self::TooLong { field, .. } => field,
            Self::ClaimName => "id",
        }
    }

    /// What is wrong with it, without the field's name.
    pub fn problem(&self) -> String {
        match self {
            Self::Empty(_) => "must not be empty".to_owned(),
            Self::TooLong { max, .. } => format!("is longer than {max} bytes"),
            Self::ControlCharacters(_) => "must not contain control characters".to_owned(),
            Self::ClaimName => "must be NAME=VALUE, NAME 1 to 64 letters, digits, _ or - (not \
                                iss, aud, exp, nbf, iat or jti)"
                .to_owned(),
        }
    }
}

impl RevocationKey {
    /// Builds a key, refusing empty, oversized or control-character identifiers. The id of a
    /// claim revocation must be `NAME=VALUE` and is normalised by [`claim_id`].
    pub fn new(
        issuer: impl Into<String>,
        kind: RevocationKind,
        id: impl Into<String>,
    ) -> Result<Self, InvalidRevocation> {
        let mut key = Self {
            issuer: issuer.into(),
            kind,
            id: id.into(),
        };
        check_text("issuer", &key.issuer, MAX_ID_LEN, true)?;
        check_text("id", &key.id, MAX_ID_LEN, true)?;
        if kind == RevocationKind::Claim {
            let (name, value) = key.id.split_once('=').ok_or(InvalidRevocation::ClaimName)?;
            key.id = claim_id(name, value)?;
        }
        Ok(key)
    }

    /// The claim name and value of a claim revocation.
    pub fn claim(&self) -> Option<(&str, &str)> {
        (self.kind == RevocationKind::Claim)
            .then(|| self.id.split_once('='))
            .flatten()
    }

    /// A stable, unambiguous string form (`kind`, issuer and id, each length-prefixed),
    /// used as the storage key and as the listing order.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}{}",
            self.kind.as_str(),
            self.issuer.len(),
            self.issuer,
            self.id
        )
    }

    /// Parses the output of [`RevocationKey::encode`].
    pub fn decode(encoded: &str) -> Option<Self> {
        let (kind, rest) = encoded.split_once(':')?;
        let kind = RevocationKind::parse(kind)?;
        let (len, rest) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let issuer = rest.get(..len)?;
        let id = rest.get(len..)?;
        Self::new(issuer, kind, id).ok()
    }
}

impl fmt::Display for RevocationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} of {:?}", self.kind, self.id, self.issuer)
    }
}

/// A recorded revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredRevocation", into = "StoredRevocation")]
pub struct Revocation {
    /// What is revoked.
    pub key: RevocationKey,
    /// When it was recorded, in Unix seconds.
    pub revoked_at: u64,
    /// When it expires (no covered token can still be valid), in Unix seconds.
    pub expires_at: u64,
    /// Free text given by whoever revoked.
    #[serde(default)]
    pub reason: String,
}

/// The stored form of a [`Revocation`], with the version of its meaning.
#[derive(Serialize, Deserialize)]
struct StoredRevocation {
    key: RevocationKey,
    revoked_at: u64,
    expires_at: u64,
    #[serde(default)]
    reason: String,
    /// [`SESSION_COVER_VERSION`] since session revocations cover only tokens issued at or
    /// before them; absent (0) in revocations written before.
    #[serde(default)]
    v: u8,
}

/// The stored version from which a session revocation covers only tokens issued at or before
/// its `revoked_at`.
pub const SESSION_COVER_VERSION: u8 = 2;

impl From<StoredRevocation> for Revocation {
    /// Reads a stored revocation. A session revocation written before
    /// [`SESSION_COVER_VERSION`] meant "every token of the session": it keeps that meaning by
    /// covering every token issued until it expires (`revoked_at` = `expires_at`).
    fn from(stored: StoredRevocation) -> Self {
        let legacy_session =
            stored.key.kind == RevocationKind::Session && stored.v < SESSION_COVER_VERSION;
        Self {
            revoked_at: if legacy_session {
                stored.revoked_at.max(stored.expires_at)
            } else {
                stored.revoked_at
            },
            key: stored.key,
            expires_at: stored.expires_at,
            reason: stored.reason,
        }
    }
}

impl From<Revocation> for StoredRevocation {
    fn from(revocation: Revocation) -> Self {
        Self {
            key: revocation.key,
            revoked_at: revocation.revoked_at,
            expires_at: revocation.expires_at,
            reason: revocation.reason,
            v: SESSION_COVER_VERSION,
        }
    }
}

impl Revocation {
    /// Builds a revocation, refusing an oversized reason or one that has already expired.
    pub fn new(
        key: RevocationKey,
        revoked_at: u64,
        expires_at: u64,
        reason: impl Into<String>,
    ) -> Result<Self, InvalidRevocation> {
        let reason = reason.into();
        check_text("reason", &reason, MAX_REASON_LEN, false)?;
        Ok(Self {
            key,
            revoked_at,
            expires_at,
            reason,
        })
    }

    /// This revocation extended by a newer one with the same key, or `None` if the newer one
    /// adds nothing: the later expiry wins, and for subject and client revocations (which
    /// cover tokens issued up to `revoked_at`) the later revocation time wins too, so a
    /// repeated "sign out everywhere" also covers tokens issued since the first. The newer
    /// reason replaces the old one when it is given.
    pub fn extended_by(&self, newer: &Revocation) -> Option<Revocation> {
        let later_expiry = newer.expires_at > self.expires_at;
        let later_cover =
            self.key.kind.covers_by_issue_time() && newer.revoked_at > self.revoked_at;
        if !later_expiry && !later_cover {
            return None;
        }
        Some(Revocation {
            key: self.key.clone(),
            revoked_at: if later_cover {
                newer.revoked_at
            } else {
                self.revoked_at
            },
            expires_at: self.expires_at.max(newer.expires_at),
            reason: if newer.reason.is_empty() {
                self.reason.clone()
            } else {
                newer.reason.clone()
            },
        })
    }

    /// Whether it has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), InvalidRevocation> {
    if required && value.is_empty() {
        return Err(InvalidRevocation::Empty(field));
    }
    if value.len() > max {
        return Err(InvalidRevocation::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidRevocation::ControlCharacters(field));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_round_trips_even_with_separators_in_fields() {
        let key = RevocationKey::new("https://idp:8443/a:b", RevocationKind::Session, "s:1:x")
            .expect("valid key");
        assert_eq!(RevocationKey::decode(&key.encode()), Some(key));
    }

    #[test]
    fn decode_refuses_garbage() {
        for bad in [
            "",
            "token",
            "token:5:abc",
            "nope:1:ab",
            "token:x:ab",
            "token:0:",
        ] {
            assert_eq!(RevocationKey::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_refuse_empty_oversized_and_control_characters() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            RevocationKey::new("", RevocationKind::Token, "a"),
            Err(InvalidRevocation::Empty("issuer"))
        );
        assert_eq!(
            RevocationKey::new("iss", RevocationKind::Token, ""),
            Err(InvalidRevocation::Empty("id"))
        );
        assert!(matches!(
            RevocationKey::new("iss", RevocationKind::Token, long),
            Err(InvalidRevocation::TooLong { field: "id", .. })
        ));
        assert_eq!(
            RevocationKey::new("iss", RevocationKind::Token, "a\nb"),
            Err(InvalidRevocation::ControlCharacters("id"))
        );
    }

    #[test]
    fn a_newer_revocation_extends_expiry_and_for_subjects_the_covered_time() {
        let at = |kind, revoked_at, expires_at, reason: &str| {
            Revocation::new(
                RevocationKey::new("iss", kind, "x").expect("key"),
                revoked_at,
                expires_at,
                reason,
            )
            .expect("revocation")
        };
        let token = at(RevocationKind::Token, 100, 200, "first");
        assert_eq!(
            token.extended_by(&at(RevocationKind::Token, 150, 180, "")),
            None
        );
        let longer = token
            .extended_by(&at(RevocationKind::Token, 150, 300, ""))
            .expect("a later expiry extends");
        assert_eq!((longer.revoked_at, longer.expires_at), (100, 300));
        assert_eq!(longer.reason, "first");

        let subject = at(RevocationKind::Subject, 100, 200, "first");
        let again = subject
            .extended_by(&at(RevocationKind::Subject, 150, 180, "second"))
            .expect("a later revocation time extends a subject revocation");
        assert_eq!((again.revoked_at, again.expires_at), (150, 200));
        assert_eq!(again.reason, "second");
        assert_eq!(
            subject.extended_by(&at(RevocationKind::Subject, 90, 190, "")),
            None
        );
    }

    #[test]
    fn session_revocations_stored_before_version_2_keep_covering_the_whole_session() {
        let legacy = r#"{"key":{"issuer":"iss","kind":"session","id":"s-1"},"revoked_at":100,"expires_at":900,"reason":"old"}"#;
        let read: Revocation = serde_json::from_str(legacy).expect("legacy record");
        assert_eq!((read.revoked_at, read.expires_at), (900, 900));
        let subject = legacy.replace("session", "subject");
        let read: Revocation = serde_json::from_str(&subject).expect("legacy subject");
        assert_eq!(read.revoked_at, 100, "only sessions change meaning");
        let current = at_kind(RevocationKind::Session, 100, 900);
        let json = serde_json::to_string(&current).expect("json");
        assert!(json.contains(r#""v":2"#), "{json}");
        let back: Revocation = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, current);
    }

    fn at_kind(kind: RevocationKind, revoked_at: u64, expires_at: u64) -> Revocation {
        Revocation::new(
            RevocationKey::new("iss", kind, "s-1").expect("key"),
            revoked_at,
            expires_at,
            "",
        )
        .expect("revocation")
    }

    #[test]
    fn claim_ids_split_at_the_first_equals_sign_and_ignore_ascii_case_in_values() {
        let key = RevocationKey::new("iss", RevocationKind::Claim, "email=Alice=X@Example.COM")
            .expect("a value may hold =");
        assert_eq!(key.id, "email=alice=x@example.com");
        assert_eq!(key.claim(), Some(("email", "alice=x@example.com")));
        assert_eq!(RevocationKey::decode(&key.encode()), Some(key.clone()));
        // Non-ASCII bytes compare exactly.
        assert_eq!(claim_id("name", "ÉLODIE").expect("id"), "name=\u{c9}lodie");
        assert_eq!(
            claim_id("phone_number", "+1 555").expect("id"),
            "phone_number=+1 555"
        );
        assert_eq!(
            RevocationKey::new("iss", RevocationKind::Subject, "Alice")
                .expect("subject")
                .id,
            "Alice",
            "only claim values are case-folded"
        );
    }

    #[test]
    fn hostile_claim_ids_are_refused() {
        let long_name = "n".repeat(MAX_CLAIM_NAME_LEN + 1);
        let long_value = format!("email={}", "v".repeat(MAX_ID_LEN));
        for bad in [
            "email",
            "=alice",
            "email=",
            "e.mail=alice",
            "e:mail=alice",
            "exp=1",
            "aud=api",
            &format!("{long_name}=v"),
            &long_value,
            "email=a\u{7f}b",
            "email=a\nb",
        ] {
            assert!(
                RevocationKey::new("iss", RevocationKind::Claim, bad).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            RevocationKey::new("iss", RevocationKind::Claim, "e=mail=x")
                .expect("name e, value mail=x")
                .claim(),
            Some(("e", "mail=x"))
        );
        assert!(valid_claim_name("phone_number") && valid_claim_name("x-tenant"));
        assert!(!valid_claim_name("a=b") && !valid_claim_name("iss") && !valid_claim_name(""));
    }

    #[test]
    fn claim_revocations_cover_by_issue_time_and_extend_like_subjects() {
        assert!(RevocationKind::Claim.covers_by_issue_time());
        let at = |revoked_at| {
            Revocation::new(
                RevocationKey::new("iss", RevocationKind::Claim, "email=a@x").expect("key"),
                revoked_at,
                revoked_at + 100,
                "",
            )
            .expect("revocation")
        };
        let later = at(100).extended_by(&at(150)).expect("later cover");
        assert_eq!((later.revoked_at, later.expires_at), (150, 250));
        let stored = serde_json::to_string(&at(100)).expect("json");
        assert!(stored.contains(r#""kind":"claim""#), "{stored}");
        assert_eq!(
            serde_json::from_str::<Revocation>(&stored).expect("back"),
            at(100)
        );
    }

    #[test]
    fn kinds_parse_their_names() {
        for kind in RevocationKind::ALL {
            assert_eq!(RevocationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RevocationKind::parse("user"), None);
    }
}
