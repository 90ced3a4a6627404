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
            Self::Revoked(RevocationKind::Claim, _) => "revoked_claim",
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
        claims: &token.revocable_claims,
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

    #[tokio::test]
    async fn revocable_claims_are_looked_up_and_one_that_is_not_a_string_is_refused() {
        use crate::revocation::{Change, ReplicaHealth, Revocation, RevocationKey, Store};
        use crate::store::embedded::EmbeddedStore;
        use crate::token::test_tokens::ISSUER;
        use serde_json::{Value, json};

        let mut issuers = test_issuers();
        issuers[0].revocable_claims = vec!["email".to_owned()];
        let verifier = Verifier::new(&issuers, Duration::ZERO, 8192, Duration::from_secs(3600))
            .await
            .expect("verifier");
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let replica = Arc::new(Replica::with_clock(
            ReplicaConfig {
                max_staleness: Duration::from_secs(3600),
                stale_policy: StalePolicy::Deny,
                resync_interval: Duration::from_secs(600),
            },
            Box::new(|| NOW),
        ));
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::clone(&replica).follow(store, stopped));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while replica.health() != ReplicaHealth::Current {
            assert!(std::time::Instant::now() < deadline, "never synced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let decider = Decider::new(
            Arc::new(verifier),
            VerifiedCache::new(1000, 1 << 20, Duration::ZERO),
            Arc::clone(&replica),
            TokenSources::default(),
            8192,
        );
        let token = |key: TestKey, email: Value, iat: u64| {
            let mut claims = key.claims();
            claims["email"] = email;
            claims["iat"] = json!(iat);
            key.mint(&claims)
        };
        let decide = |token: String| {
            let decider = &decider;
            async move {
                let headers =
                    HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]);
                match decider.decide(&headers, NOW).await {
                    Decision::Allow(_) => "allow",
                    Decision::Deny(denial) => denial.reason(),
                }
            }
        };
        let alice = token(TestKey::Rsa, json!("Alice@Example.com"), NOW - 10);
        let bob = token(TestKey::Rsa, json!("bob@example.com"), NOW - 10);
        let later = token(TestKey::Rsa, json!("alice@example.com"), NOW - 1);
        let other_issuer = token(TestKey::Hmac, json!("alice@example.com"), NOW - 10);
        // Cached as clear at this generation before the revocation.
        assert_eq!(decide(alice.clone()).await, "allow");
        let key = RevocationKey::new(ISSUER, RevocationKind::Claim, "email=alice@EXAMPLE.com")
            .expect("key");
        replica.apply_local(&Change::Put(
            Revocation::new(key, NOW - 5, NOW + 3600, "").expect("revocation"),
        ));
        assert_eq!(decide(alice).await, "revoked_claim", "the cached token too");
        assert_eq!(decide(bob).await, "allow");
        assert_eq!(decide(later).await, "allow", "issued after the revocation");
        assert_eq!(
            decide(other_issuer).await,
            "allow",
            "an issuer without revocable_claims"
        );
        for email in [json!(["alice@example.com"]), json!(5), json!({"a": "b"})] {
            assert_eq!(
                decide(token(TestKey::Rsa, email.clone(), NOW - 10)).await,
                "unrevocable_claim",
                "{email}"
            );
        }
        assert_eq!(
            decide(token(TestKey::Hmac, json!(5), NOW - 10)).await,
            "allow",
            "a claim the issuer does not list is not read"
        );
    }
}
