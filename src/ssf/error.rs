//! Why a Security Event Token was refused, and the RFC 8935 error code each refusal answers
//! with (`invalid_request`, `invalid_key`, `invalid_issuer`, `invalid_audience`,
//! `authentication_failed`, `access_denied`, and SSF's `invalid_state`).

/// A refused SET. The message is safe to return to the transmitter: it names the rule, never
/// echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Not a compact JWS with JSON header and claims, or a claim of the wrong type.
    #[error("malformed SET: {0}")]
    Malformed(&'static str),
    /// A well-formed JWT that is not a SET (wrong `typ`, a `sub` or `exp` claim, no single
    /// event): an access, ID or logout token posted as a SET.
    #[error("not a security event token: {0}")]
    NotASet(&'static str),
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// The event's payload does not fit its definition (e.g. no subject).
    #[error("invalid event: {0}")]
    InvalidEvent(&'static str),
    /// The signature algorithm, key or signature is unacceptable (`alg: none`, an algorithm
    /// not configured for the stream, an unknown `kid`, a bad signature).
    #[error("unacceptable key or signature: {0}")]
    Key(&'static str),
    /// `iss` is not the stream's transmitter.
    #[error("the SET's issuer is not this stream's transmitter")]
    WrongIssuer,
    /// `aud` does not contain the stream's audience.
    #[error("the SET is not addressed to this stream's audience")]
    WrongAudience,
    /// The push request's authorization header is missing or wrong.
    #[error("the authorization header is missing or wrong")]
    AuthenticationFailed,
    /// The transmitter may not make this revocation (an issuer it may not revoke for).
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
    /// A verification event's `state` is not the one this receiver asked for.
    #[error("the verification state does not match")]
    InvalidState,
    /// The transmitter's keys could not be fetched yet: the SET may be good, retry later.
    #[error("the transmitter's keys are not available yet")]
    KeysUnavailable,
}

impl SetError {
    /// The RFC 8935 §2.4 (and SSF) error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_)
            | Self::NotASet(_)
            | Self::MissingClaim(_)
            | Self::InvalidEvent(_) => "invalid_request",
            Self::Key(_) | Self::KeysUnavailable => "invalid_key",
            Self::WrongIssuer => "invalid_issuer",
            Self::WrongAudience => "invalid_audience",
            Self::AuthenticationFailed => "authentication_failed",
            Self::AccessDenied(_) => "access_denied",
            Self::InvalidState => "invalid_state",
        }
    }

    /// Whether the SET may be accepted later unchanged (the transmitter should redeliver).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::KeysUnavailable)
    }
}
