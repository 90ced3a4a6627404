//! Walks revoked tokens through their whole lives in paused time, through the real Check
//! decision (verified-token cache included), the real embedded store and a replica that
//! follows it and purges expired revocations: once revoked, a token is never accepted again
//! (README, *Revocations: how long they last*).

use super::decision::{Decider, Decision};
use crate::admin::Revoker;
use crate::config::{ReplicaConfig, StalePolicy, TokenSources};
use crate::revocation::{Replica, ReplicaHealth, RevocationKey, RevocationKind, Store};
use crate::store::embedded::EmbeddedStore;
use crate::token::test_tokens::{AUDIENCE, HMAC_ISSUER, ISSUER, TestKey, test_issuers};
use crate::token::{VerifiedCache, Verifier};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const LEEWAY: u64 = 30;
const MAX_LIFETIME: u64 = 300;

/// Check, the revoker and the replica, all on one clock that moves with tokio's.
struct Stack {
    decider: Decider,
    revoker: Revoker,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// `ISSUER` allows tokens without `iat`; `HMAC_ISSUER` requires it (the default).
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let base = crate::clock::unix_now();
        let start = Instant::now();
        let clock: Arc<dyn Fn() -> u64 + Send + Sync> =
            Arc::new(move || base + start.elapsed().as_secs());
        let replica_clock = Arc::clone(&clock);
        let replica = Arc::new(Replica::with_clock(
            ReplicaConfig {
                max_staleness: Duration::from_secs(3600),
                stale_policy: StalePolicy::Deny,
                resync_interval: Duration::from_secs(120),
            },
            Box::new(move || replica_clock()),
        ));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(Arc::clone(&replica).follow(Arc::clone(&store), stop_rx));
        let mut issuers = test_issuers();
        assert_eq!(issuers[0].issuer, ISSUER);
        issuers[0].allow_missing_iat = true;
        for issuer in &mut issuers {
            issuer.revocable_claims = vec!["email".to_owned()];
        }
        let revocable: Vec<_> = issuers
            .iter()
            .map(|i| (i.issuer.clone(), i.revocable_claims.clone()))
            .collect();
        let verifier = Arc::new(
            Verifier::new(
                &issuers,
                Duration::from_secs(LEEWAY),
                8192,
                Duration::from_secs(MAX_LIFETIME),
            )
            .await
            .expect("verifier"),
        );
        let decider = Decider::new(
            Arc::clone(&verifier),
            VerifiedCache::new(1000, 1 << 24, Duration::from_secs(LEEWAY)),
            Arc::clone(&replica),
            TokenSources::default(),
            8192,
        );
        let revoker = Revoker::new(
            store,
            Arc::clone(&replica),
            verifier,
            [ISSUER.to_owned(), HMAC_ISSUER.to_owned()],
            Duration::from_secs(MAX_LIFETIME),
            Duration::from_secs(LEEWAY),
        )
        .with_revocable_claims(revocable);
        let deadline = Instant::now() + Duration::from_secs(60);
        while replica.health() != ReplicaHealth::Current {
            assert!(Instant::now() < deadline, "the replica never synced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            decider,
            revoker,
            clock,
            stop,
            _dir: dir,
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    async fn allowed(&self, token: &str) -> bool {
        let headers = HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]);
        matches!(
            self.decider.decide(&headers, self.now()).await,
            Decision::Allow(_)
        )
    }
}

/// One token to revoke, and a twin with other identifiers that nobody revokes.
struct Case {
    name: String,
    kind: RevocationKind,
    issuer: &'static str,
    revoked: String,
    control: String,
    /// The seconds `[from, until)` in which Check accepts the twin (and the token, unrevoked).
    window: Option<(u64, u64)>,
}

fn claims(issuer: &str, id: &str, iat: Option<u64>, exp: u64) -> Value {
    let mut claims = json!({
        "iss": issuer, "aud": AUDIENCE, "exp": exp,
        "jti": format!("jti-{id}"), "sid": format!("sid-{id}"),
        "sub": format!("sub-{id}"), "client_id": format!("app-{id}"),
        "email": format!("Mail-{id}@Example.com"),
    });
    if let Some(iat) = iat {
        claims["iat"] = json!(iat);
    }
    claims
}

/// A token's shape: a name, the issuer's key, `iat`, `exp`, and the seconds `[from, until)`
/// in which Check accepts it.
type Shape = (&'static str, TestKey, Option<u64>, u64, Option<(u64, u64)>);

/// The shapes a token can take, each at its longest life, for each revocation kind, when
/// the revocation is made at `r`.
fn cases(r: u64) -> Vec<Case> {
    let shapes: [Shape; 6] = [
        (
            "iat a leeway before",
            TestKey::Rsa,
            Some(r - LEEWAY),
            r - LEEWAY + MAX_LIFETIME,
            Some((r - 2 * LEEWAY, r + MAX_LIFETIME)),
        ),
        (
            "iat at the revocation, accepted a leeway before",
            TestKey::Rsa,
            Some(r),
            r + MAX_LIFETIME,
            Some((r - LEEWAY, r + MAX_LIFETIME + LEEWAY)),
        ),
        (
            "iat a leeway after (accepted at the revocation)",
            TestKey::Rsa,
            Some(r + LEEWAY),
            r + LEEWAY + MAX_LIFETIME,
            Some((r, r + MAX_LIFETIME + 2 * LEEWAY)),
        ),
        (
            "no iat (allowed), the latest exp accepted at the revocation",
            TestKey::Rsa,
            None,
            r + MAX_LIFETIME + LEEWAY,
            Some((r, r + MAX_LIFETIME + 2 * LEEWAY)),
        ),
        (
            "no iat (required)",
            TestKey::Hmac,
            None,
            r + MAX_LIFETIME,
            None,
        ),
        (
            "iat far in the future",
            TestKey::Rsa,
            Some(r + 2 * MAX_LIFETIME),
            r + 3 * MAX_LIFETIME,
            Some((r + 2 * MAX_LIFETIME - LEEWAY, r + 3 * MAX_LIFETIME + LEEWAY)),
        ),
    ];
    let mut cases = Vec::new();
    for kind in RevocationKind::ALL {
        for (index, (shape, key, iat, exp, window)) in shapes.iter().enumerate() {
            // Only tokens that exist at the revocation are covered by an identifier
            // revocation: Check accepts an `iat` up to a leeway ahead; subject and client
            // revocations cover tokens issued at or before them.
            let latest_iat = if kind.covers_by_issue_time() {
                r
            } else {
                r + LEEWAY
            };
            if kind != RevocationKind::Token && iat.is_some_and(|iat| iat > latest_iat) {
                continue;
            }
            let id = format!("{kind}-{index}");
            cases.push(Case {
                name: format!("{kind} revocation, {shape}"),
                kind,
                issuer: key.issuer(),
                revoked: key.mint(&claims(key.issuer(), &id, *iat, *exp)),
                control: key.mint(&claims(key.issuer(), &format!("{id}-twin"), *iat, *exp)),
                window: *window,
            });
        }
    }
    cases
}

async fn revoke(stack: &Stack, case: &Case) {
    let now = stack.now();
    if case.kind == RevocationKind::Token {
        stack
            .revoker
            .revoke_token(&case.revoked, "walk", now)
            .await
            .expect("revoke the token");
        return;
    }
    let verified = stack
        .revoker
        .verifier()
        .verify(&case.revoked, now, crate::token::TimeRule::Ignore)
        .await
        .expect("verifies");
    let claims = &verified.claims;
    let id = match case.kind {
        RevocationKind::Session => claims.sid.clone(),
        RevocationKind::Subject => claims.sub.clone(),
        RevocationKind::Claim => claims
            .all
            .get("email")
            .and_then(Value::as_str)
            .map(|email| format!("email={email}")),
        _ => claims.client_id.clone(),
    }
    .expect("the claim");
    let key = RevocationKey::new(case.issuer, case.kind, id).expect("key");
    stack
        .revoker
        .revoke_key(key, None, "walk", now)
        .await
        .expect("revoke by identifier");
}

#[tokio::test(start_paused = true)]
async fn a_revoked_token_is_never_accepted_again_in_its_whole_life() {
    let stack = Stack::start().await;
    let b = stack.now() + 2 * LEEWAY;
    let cases = cases(b);
    tokio::time::sleep(Duration::from_secs(LEEWAY)).await;
    // Accepted before the revocation (and so in the verified-token cache).
    for case in &cases {
        let acceptable_now = case.window.is_some_and(|(from, _)| from <= stack.now());
        assert_eq!(
            stack.allowed(&case.revoked).await,
            acceptable_now,
            "{}",
            case.name
        );
    }
    tokio::time::sleep(Duration::from_secs(LEEWAY)).await;
    assert_eq!(stack.now(), b);
    for case in &cases {
        revoke(&stack, case).await;
    }
    let end = b + 3 * MAX_LIFETIME + 3 * LEEWAY;
    loop {
        let now = stack.now();
        for case in &cases {
            assert!(
                !stack.allowed(&case.revoked).await,
                "{}: accepted again {}s after the revocation",
                case.name,
                now - b
            );
            let expected = case
                .window
                .is_some_and(|(from, until)| from <= now && now < until);
            assert_eq!(
                stack.allowed(&case.control).await,
                expected,
                "{}: the unrevoked twin at +{}s",
                case.name,
                now - b
            );
        }
        if now >= end {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stack.stop.send_replace(true);
}

#[tokio::test(start_paused = true)]
async fn an_issuer_allowed_to_omit_iat_can_outlive_identifier_revocations() {
    // The documented consequence of `allow_missing_iat`: a token without `iat` whose `exp` is
    // further than `max_token_lifetime` away is refused now but accepted later, after a
    // revocation of its subject has expired; a revocation of the token itself still holds.
    let stack = Stack::start().await;
    let b = stack.now();
    let key = TestKey::Rsa;
    let exp = b + 3 * MAX_LIFETIME;
    let by_subject = key.mint(&claims(ISSUER, "long-subject", None, exp));
    let by_token = key.mint(&claims(ISSUER, "long-token", None, exp));
    assert!(!stack.allowed(&by_subject).await, "too long-lived for now");
    let subject =
        RevocationKey::new(ISSUER, RevocationKind::Subject, "sub-long-subject").expect("key");
    stack
        .revoker
        .revoke_key(subject, None, "walk", b)
        .await
        .expect("revoke subject");
    stack
        .revoker
        .revoke_token(&by_token, "walk", b)
        .await
        .expect("revoke token");
    tokio::time::sleep(Duration::from_secs(exp - MAX_LIFETIME - LEEWAY - b)).await;
    assert!(
        stack.allowed(&by_subject).await,
        "the subject revocation has expired"
    );
    assert!(!stack.allowed(&by_token).await);
    stack.stop.send_replace(true);
}
