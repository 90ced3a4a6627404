//! The authorization decision for one request, independent of gRPC: find the token, verify it
//! (or take it from the verified-token cache), and look it up in the revocation replica.

use crate::config::TokenSources;
use crate::revocation::{Lookup, Replica, RevocationKind, TokenIdentity};
use crate::token::{
    HeaderSource, TimeRule, TokenError, VerifiedCache, VerifiedToken, Verifier, extract_token,
};
use std::sync::{Arc, OnceLock};

/// Work done on a freshly verified token before it goes into the verified-token cache.
pub type Prepare = Box<dyn Fn(&VerifiedToken) + Send + Sync>;

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
    prepare: OnceLock<Prepare>,
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
            prepare: OnceLock::new(),
        }
    }

    /// Runs `prepare` on every freshly verified token before it is cached (once; later calls
    /// are ignored): the Check service builds the token's allow response there, so that the
    /// cache counts it in the entry's bytes.
    pub fn prepare_with(&self, prepare: Prepare) {
        let _ = self.prepare.set(prepare);
    }

    /// The verified-token cache.
    pub fn cache(&self) -> &VerifiedCache {
        &self.cache
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
                    if let Some(prepare) = self.prepare.get() {
                        prepare(&verified);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::AuthzService;
    use crate::config::{ReplicaConfig, ResponseConfig, StalePolicy};
    use crate::token::cache::entry_bytes;
    use crate::token::test_tokens::{NOW, TestKey, test_issuers};
    use std::collections::HashMap;
    use std::time::Duration;

    #[tokio::test]
    async fn the_allow_response_is_built_before_caching_and_counted() {
        let verifier = Verifier::new(
            &test_issuers(),
            Duration::ZERO,
            8192,
            Duration::from_secs(3600),
        )
        .await
        .expect("verifier");
        let replica = Replica::new(ReplicaConfig {
            max_staleness: Duration::from_secs(30),
            stale_policy: StalePolicy::Deny,
            resync_interval: Duration::from_secs(600),
        });
        let decider = Arc::new(Decider::new(
            Arc::new(verifier),
            VerifiedCache::new(100_000, 1 << 20, Duration::ZERO),
            Arc::new(replica),
            TokenSources::default(),
            8192,
        ));
        let response = ResponseConfig {
            realm: "mesh".to_owned(),
            strip_headers: Vec::new(),
            strip_sources: None,
            claim_headers: Default::default(),
            dynamic_metadata: crate::config::MetadataClaims::All,
        };
        let _service = AuthzService::new(Arc::clone(&decider), response);
        let key = TestKey::Rsa;
        let token = key.mint(&key.claims());
        let headers = HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]);
        // The replica never synced: a 503, but the verified token is cached all the same.
        decider.decide(&headers, NOW).await;
        let cached = decider.cache().get(&token, NOW, 0).expect("cached");
        let (_, encoded) = cached
            .memo
            .allow_response
            .get()
            .expect("allow response built");
        assert!(!encoded.is_empty());
        assert_eq!(
            decider.cache().accounted_bytes(),
            entry_bytes(&token, &cached)
        );
        assert!(decider.cache().accounted_bytes() >= (token.len() + encoded.len()) as u64);
    }
}
