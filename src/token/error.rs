//! Why a token was refused: one variant per rule, with a bounded metrics label and a coarse
//! client-facing description.

/// Why a bearer token was refused.
///
/// "No token sent" is not an error here: [`extract_token`](super::extract_token) returns
/// `Ok(None)` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS: wrong number of parts, bad base64url, not JSON, wrong
    /// claim types, forbidden characters in the header value.
    #[error("malformed token")]
    Malformed,
    /// Longer than the configured `max_token_bytes`.
    #[error("token too large")]
    TooLarge,
    /// An encrypted token (JWE: five parts, or an `enc` header).
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// `alg: none`, an unsecured token.
    #[error("unsecured token (alg none)")]
    AlgorithmNone,
    /// An algorithm that is unknown or not among the issuer's configured algorithms.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// A `crit` header: we implement no JWS extensions, so we must refuse it (RFC 7515 §4.1.11).
    #[error("unsupported critical header extension")]
    UnknownCritical,
    /// The `iss` claim names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The issuer has no key for the token's `kid` (or, without `kid`, none for its algorithm).
    #[error("no key for the token's key id")]
    UnknownKey,
    /// The key named by `kid` does not fit the token's algorithm (key type, curve, or JWK `alg`).
    #[error("key type does not match the token's algorithm")]
    KeyTypeMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// The token could stay valid longer than the configured `max_token_lifetime`.
    #[error("token lifetime longer than max_token_lifetime")]
    LifetimeTooLong,
    /// No audience of the token is among the issuer's configured audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// The issuer's keys are not at hand: its `jwks_uri` has never been fetched successfully,
    /// or the token names a `kid` the last key set lacks and no fresh one could be fetched
    /// (failed, too slow, or the fetch budget is spent). Retryable: the key may exist.
    #[error("issuer keys unavailable")]
    KeysUnavailable,
    /// The JOSE header's `typ` names another kind of token (`logout+jwt`, `secevent+jwt`, …),
    /// or not the issuer's `require_typ`.
    #[error("not an access token (typ)")]
    WrongType,
    /// The JOSE header or the claims name a JSON member twice.
    #[error("duplicate JSON member name")]
    DuplicateMember,
    /// The request carries more than one token, and they differ (RFC 6750 §2: one method, one
    /// token); refused as a bad request, not as a bad token.
    #[error("more than one token in the request")]
    MultipleTokens,
    /// One of the issuer's `revocable_claims` is present but not a string, or its value
    /// could never be revoked (control characters, too long): such a token would escape
    /// revocations of kind `claim`.
    #[error("a revocable claim is not a revocable string")]
    UnrevocableClaim,
}

impl TokenError {
    /// A bounded snake_case label for metrics and logs, e.g. `"expired"`, `"bad_signature"`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Encrypted => "encrypted",
            Self::AlgorithmNone => "alg_none",
            Self::AlgorithmNotAllowed => "alg_not_allowed",
            Self::UnknownCritical => "unknown_critical",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::KeyTypeMismatch => "key_type_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::KeysUnavailable => "keys_unavailable",
            Self::WrongType => "wrong_token_type",
            Self::DuplicateMember => "duplicate_member",
            Self::MultipleTokens => "multiple_tokens",
            Self::UnrevocableClaim => "unrevocable_claim",
        }
    }

    /// The short RFC 6750 `error_description` for the client. Deliberately coarse: it tells
    /// an honest client whether to refresh its token and tells an attacker nothing else.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not yet valid",
            Self::MultipleTokens => "the request carries more than one token",
            _ => "the token is invalid",
        }
    }
}

impl From<super::json::JsonError> for TokenError {
    /// A JOSE header or claims set refused by [`parse_object`](super::json::parse_object).
    fn from(error: super::json::JsonError) -> Self {
        match error {
            super::json::JsonError::Invalid => Self::Malformed,
            super::json::JsonError::DuplicateMember => Self::DuplicateMember,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenError;

    const ALL: [TokenError; 21] = [
        TokenError::Malformed,
        TokenError::TooLarge,
        TokenError::Encrypted,
        TokenError::AlgorithmNone,
        TokenError::AlgorithmNotAllowed,
        TokenError::UnknownCritical,
        TokenError::UnknownIssuer,
        TokenError::UnknownKey,
        TokenError::KeyTypeMismatch,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::LifetimeTooLong,
        TokenError::WrongAudience,
        TokenError::MissingClaim("exp"),
        TokenError::KeysUnavailable,
        TokenError::WrongType,
        TokenError::DuplicateMember,
        TokenError::MultipleTokens,
        TokenError::UnrevocableClaim,
    ];

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let mut seen = std::collections::HashSet::new();
        for error in ALL {
            let reason = error.reason();
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{reason}"
            );
            assert!(seen.insert(reason), "duplicate reason {reason}");
        }
    }

    #[test]
    fn descriptions_are_coarse() {
        assert_eq!(TokenError::Expired.description(), "the token has expired");
        assert_eq!(
            TokenError::NotYetValid.description(),
            "the token is not yet valid"
        );
        for error in ALL {
            if !matches!(
                error,
                TokenError::Expired | TokenError::NotYetValid | TokenError::MultipleTokens
            ) {
                assert_eq!(error.description(), "the token is invalid");
            }
        }
    }
}
