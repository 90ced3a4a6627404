//! The filter: the claims of a request looked up in the replica, and the answer, either
//! continue or a refusal with the server's RFC 6750 texts.

use crate::claims::{ClaimsCache, ClaimsError, LifetimeError, RequestHeaders};
use crate::config::{ConfigError, FilterSettings};
use crate::feed::{Feed, FeedError};
use jwt_revoker::authz::challenge;
use jwt_revoker::revocation::{Lookup, Replica, RevocationKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why the filter could not be created.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The feed could not start.
    #[error(transparent)]
    Feed(#[from] FeedError),
}

/// A local reply refusing the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u32,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
    /// Envoy's response-code details (for access logs).
    pub details: &'static str,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Continue,
    /// Answer it with this.
    Refuse(Refusal),
}

fn refusal(
    status: u32,
    challenge: Option<String>,
    error: &str,
    description: &str,
    details: &'static str,
) -> Verdict {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    headers.extend(challenge.map(|c| ("www-authenticate", c)));
    Verdict::Refuse(Refusal {
        status,
        headers,
        body: challenge::error_body(error, description),
        details,
    })
}

fn invalid_token(realm: &str, description: &str, details: &'static str) -> Verdict {
    refusal(
        401,
        Some(challenge::invalid_token_challenge(realm, description)),
        "invalid_token",
        description,
        details,
    )
}

/// The `details` of a refusal caused by a bug (a caught panic).
pub const INTERNAL_ERROR_DETAILS: &str = "jwt_revoker_internal_error";

/// The reply to a request whose check failed unexpectedly: 500, fail closed.
pub fn internal_error() -> Refusal {
    let description = "the revocation check failed; retry later";
    match refusal(
        500,
        None,
        "server_error",
        description,
        INTERNAL_ERROR_DETAILS,
    ) {
        Verdict::Refuse(refusal) => refusal,
        Verdict::Continue => unreachable!("refusal() refuses"),
    }
}

/// How the filter decides, apart from where revocations come from.
#[derive(Debug)]
pub struct Decider {
    settings: FilterSettings,
    claims: ClaimsCache,
    /// Whether the unmapped claim revocation was logged (once per filter config).
    warned_unknown_claim: AtomicBool,
    /// The replica generation at which no claim revocation named an unmapped claim (0:
    /// not checked yet).
    claims_known_at: AtomicU64,
}

impl Decider {
    /// A decider with `settings`.
    pub fn new(settings: FilterSettings) -> Self {
        Self {
            claims: ClaimsCache::new(settings.cache_max_bytes, settings.revocable_claims.clone()),
            settings,
            warned_unknown_claim: AtomicBool::new(false),
            claims_known_at: AtomicU64::new(0),
        }
    }

    /// The verdict on a request with `headers`, looked up in `replica` at `now`.
    pub fn decide(&self, headers: &impl RequestHeaders, replica: &Replica, now: u64) -> Verdict {
        let realm = &self.settings.realm;
        let revocable = &self.settings.revocable_claims;
        let claims = match self.claims.read(headers, &self.settings.payload_header) {
            Ok(claims) => claims,
            Err(ClaimsError::NoToken) => {
                return refusal(
                    401,
                    Some(challenge::bearer_challenge(realm)),
                    "unauthorized",
                    "a bearer token is required",
                    "jwt_revoker_no_token",
                );
            }
            Err(ClaimsError::Repeated) => {
                return invalid_token(
                    realm,
                    "the token's claims are ambiguous",
                    "jwt_revoker_repeated_claim",
                );
            }
            Err(ClaimsError::Malformed) => {
                return invalid_token(
                    realm,
                    "the token's claims are malformed",
                    "jwt_revoker_malformed_claim",
                );
            }
            Err(ClaimsError::Missing(claim)) => {
                return invalid_token(
                    realm,
                    &format!("the token has no {claim}"),
                    "jwt_revoker_missing_claim",
                );
            }
            Err(ClaimsError::UnrevocableClaim) => {
                return invalid_token(
                    realm,
                    "the token is invalid",
                    "jwt_revoker_unrevocable_claim",
                );
            }
        };
        let issuers = &self.settings.issuers;
        if !issuers.is_empty() && !issuers.iter().any(|i| i == claims.issuer()) {
            return invalid_token(
                realm,
                "the token's issuer is not accepted here",
                "jwt_revoker_issuer_not_accepted",
            );
        }
        if let Err(error) = claims.check_lifetime(self.settings.lifetime) {
            let (description, details) = match error {
                LifetimeError::MissingIssuedAt => {
                    ("the token has no iat", "jwt_revoker_missing_iat")
                }
                LifetimeError::TooLong => (
                    "the token lives longer than allowed",
                    "jwt_revoker_lifetime_too_long",
                ),
            };
            return invalid_token(realm, description, details);
        }
        // A claim revocation naming a claim this filter does not read would go unenforced:
        // refuse everything until the configuration maps it (or the revocation is gone).
        // Checked once per generation of the set (read before the set, as in
        // `Replica::lookup_remembered`), so a request costs an atomic load.
        let generation = replica.generation();
        if self.claims_known_at.load(Ordering::Relaxed) != generation {
            let known = |name: &str| revocable.iter().any(|c| c == name);
            match replica.unknown_claim(known) {
                None => self.claims_known_at.store(generation, Ordering::Relaxed),
                Some(claim) => {
                    if !self.warned_unknown_claim.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            claim,
                            "a revocation names claim {claim:?}, which \
                             filter_config.revocable_claims does not list: refusing \
                             every request (503) until it does"
                        );
                    }
                    return refusal(
                        503,
                        None,
                        "temporarily_unavailable",
                        challenge::UNAVAILABLE,
                        "jwt_revoker_unenforced_claim",
                    );
                }
            }
        }
        match replica.lookup_remembered(&claims.identity(), now, claims.clear_at()) {
            Lookup::Clear => Verdict::Continue,
            Lookup::Revoked(kind) => {
                invalid_token(realm, challenge::REVOKED, revoked_details(kind))
            }
            Lookup::Unavailable => refusal(
                503,
                None,
                "temporarily_unavailable",
                challenge::UNAVAILABLE,
                "jwt_revoker_unavailable",
            ),
        }
    }
}

fn revoked_details(kind: RevocationKind) -> &'static str {
    match kind {
        RevocationKind::Token => "jwt_revoker_revoked_token",
        RevocationKind::Session => "jwt_revoker_revoked_session",
        RevocationKind::Subject => "jwt_revoker_revoked_subject",
        RevocationKind::Client => "jwt_revoker_revoked_client",
        RevocationKind::Claim => "jwt_revoker_revoked_claim",
    }
}

/// The filter config Envoy holds: the decider and the feed keeping its replica current.
#[derive(Debug)]
pub struct RevocationFilter {
    decider: Decider,
    feed: Feed,
}

impl RevocationFilter {
    /// Parses the JSON `config` and starts the feed thread.
    pub fn new(config: &[u8]) -> Result<Self, FilterError> {
        let settings = FilterSettings::parse(config)?;
        let feed = Feed::start(&settings.feed, settings.replica.clone())?;
        Ok(Self {
            decider: Decider::new(settings),
            feed,
        })
    }

    /// The verdict on a request with `headers` at `now` (Unix seconds).
    pub fn decide(&self, headers: &impl RequestHeaders, now: u64) -> Verdict {
        self.decider.decide(headers, self.feed.replica(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::tests::{Fixed, claims, encoded};
    use serde_json::json;

    fn decider() -> Decider {
        let settings = FilterSettings::parse(
            br#"{"feed": "127.0.0.1:1", "feed_token": "t", "issuers": ["https://idp"], "realm": "mesh"}"#,
        )
        .expect("settings");
        Decider::new(settings)
    }

    fn status(verdict: &Verdict) -> u32 {
        match verdict {
            Verdict::Continue => 0,
            Verdict::Refuse(refusal) => refusal.status,
        }
    }

    #[test]
    fn a_replica_that_never_synced_refuses_with_503_and_no_challenge() {
        let replica = Replica::new(jwt_revoker::config::ReplicaConfig {
            max_staleness: std::time::Duration::from_secs(30),
            stale_policy: jwt_revoker::config::StalePolicy::ServeStale,
            resync_interval: std::time::Duration::from_secs(600),
        });
        let headers = Fixed::payload(&claims(json!({"iat": 1, "exp": 60})));
        let Verdict::Refuse(refusal) = decider().decide(&headers, &replica, 1) else {
            panic!("a replica that never synced must refuse");
        };
        assert_eq!(refusal.status, 503);
        assert!(
            refusal
                .headers
                .iter()
                .all(|(name, _)| *name != "www-authenticate")
        );
        assert!(refusal.body.contains(challenge::UNAVAILABLE));
    }

    #[test]
    fn missing_ambiguous_or_foreign_claims_refuse_with_401_before_any_lookup() {
        let replica = Replica::new(jwt_revoker::config::ReplicaConfig {
            max_staleness: std::time::Duration::from_secs(30),
            stale_policy: jwt_revoker::config::StalePolicy::Deny,
            resync_interval: std::time::Duration::from_secs(600),
        });
        let decider = decider();
        let no_token = decider.decide(&Fixed::new(&[]), &replica, 1);
        let Verdict::Refuse(refusal) = &no_token else {
            panic!("no claims must refuse");
        };
        assert_eq!(refusal.status, 401);
        assert!(
            refusal
                .headers
                .contains(&("www-authenticate", "Bearer realm=\"mesh\"".to_owned()))
        );
        let payload = encoded(&claims(json!({})));
        let mut no_exp = claims(json!({}));
        no_exp.as_object_mut().expect("object").remove("exp");
        let mut no_iat = claims(json!({}));
        no_iat.as_object_mut().expect("object").remove("iat");
        for headers in [
            Fixed::new(&[("x-jwt-payload", &payload), ("x-jwt-payload", &payload)]),
            Fixed::payload(&claims(json!({"iss": "https://other"}))),
            Fixed::payload(&claims(json!({"sub": 1}))),
            // The lifetime rule: no iat, no exp, longer than max_token_lifetime.
            Fixed::payload(&no_exp),
            Fixed::payload(&no_iat),
            Fixed::payload(&claims(json!({"iat": 1, "exp": 99_999_999}))),
        ] {
            assert_eq!(
                status(&decider.decide(&headers, &replica, 1)),
                401,
                "{:?}",
                headers.0
            );
        }
    }

    #[test]
    fn the_internal_error_reply_is_a_500() {
        assert_eq!(internal_error().status, 500);
        assert_eq!(internal_error().details, INTERNAL_ERROR_DETAILS);
    }
}
