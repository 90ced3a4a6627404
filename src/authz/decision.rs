//! The authorization decision for one request, independent of gRPC: find the token, verify it
//! (or take it from the verified-token cache), and look it up in the revocation replica.

use crate::config::TokenSources;
use crate::revocation::{Lookup, Replica, RevocationKind, TokenIdentity};
use crate::token::{
    HeaderSource, TimeRule, TokenError, VerifiedCache, VerifiedToken, Verifier, extract_token,
};
use std::sync::Arc;

/// Why a request is refused.
#[derive(Debug)]
pub enum Denial {
    /// No bearer token was sent.
    NoToken,
    /// The token is not acceptable.
    InvalidToken(TokenError),
    /// The token (verified) is valid, but a revocation of this kind covers it.
    Revoked(RevocationKind, Arc<VerifiedToken>),
    /// The revocation replica cannot vouch for the set (never synced, or stale under `deny`).
    Unavailable,
    /// A logout route's revocation could not be recorded durably, so the logout did not happen.
    LogoutFailed,
}

impl Denial {
    /// A bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoToken => "missing_token",
            Self::InvalidToken(error) => error.reason(),
            Self::Revoked(RevocationKind::Token, _) => "revoked_token",
            Self::Revoked(RevocationKind::Session, _) => "revoked_session",
            Self::Revoked(RevocationKind::Subject, _) => "revoked_subject",
            Self::Revoked(RevocationKind::Client, _) => "revoked_client",
            Self::Unavailable => "revocations_unavailable",
            Self::LogoutFailed => "logout_not_recorded",
        }
    }
}

/// The outcome of a Check.
#[derive(Debug)]
pub enum Decision {
    /// Let the request through; these are the token's verified claims.
    Allow(Arc<VerifiedToken>),
    /// Refuse it.
    Deny(Denial),
}

/// Makes decisions: token extraction, verification with a cache, revocation lookup.
pub struct Decider {
    verifier: Arc<Verifier>,
    cache: VerifiedCache,
    replica: Arc<Replica>,
    sources: TokenSources,
    max_token_bytes: usize,
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decider").finish_non_exhaustive()
    }
}

impl Decider {
    /// A decider over these parts.
    pub fn new(
        verifier: Arc<Verifier>,
        cache: VerifiedCache,
        replica: Arc<Replica>,
        sources: TokenSources,
        max_token_bytes: usize,
    ) -> Self {
        Self {
            verifier,
            cache,
            replica,
            sources,
            max_token_bytes,
        }
    }

    /// Decides on a request with these headers at `now` (Unix seconds).
    pub async fn decide(&self, headers: &(impl HeaderSource + ?Sized), now: u64) -> Decision {
        let token = match extract_token(headers, &self.sources, self.max_token_bytes) {
            Ok(Some(token)) => token,
            Ok(None) => return Decision::Deny(Denial::NoToken),
            Err(error) => return Decision::Deny(Denial::InvalidToken(error)),
        };
        let generation = self.verifier.key_generation();
        let verified = match self.cache.get(token, now, generation) {
            Some(verified) => verified,
            None => match self.verifier.verify(token, now, TimeRule::Enforce).await {
                Ok(verified) => {
                    let verified = Arc::new(verified);
                    self.cache
                        .insert(token, Arc::clone(&verified), now, generation);
                    verified
                }
                Err(error) => return Decision::Deny(Denial::InvalidToken(error)),
            },
        };
        let memo = &verified.memo.clear_at_generation;
        let lookup = self
            .replica
            .lookup_remembered(&identity(&verified), now, memo);
        match lookup {
            Lookup::Clear => Decision::Allow(verified),
            Lookup::Revoked(kind) => Decision::Deny(Denial::Revoked(kind, verified)),
            Lookup::Unavailable => Decision::Deny(Denial::Unavailable),
        }
    }
}

/// What a verified token presents to the revocation lookup.
pub fn identity(token: &VerifiedToken) -> TokenIdentity<'_> {
    let claims = &token.claims;
    TokenIdentity {
        issuer: &claims.iss,
        token_id: &token.token_id,
        session: claims.sid.as_deref(),
        subject: claims.sub.as_deref(),
        client: claims.client_id.as_deref(),
        issued_at: claims.iat,
    }
}
