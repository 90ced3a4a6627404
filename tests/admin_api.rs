//! The admin gRPC API against a real `jwt-revoker serve`: authentication, INVALID_ARGUMENT
//! naming the field (and nothing stored), revoke outcomes, pagination, and a store outage
//! answered with UNAVAILABLE.

mod support;

use jwt_revoker::admin::pb::{
    GetRevocationRequest, GetStatusRequest, ListRevocationsRequest, RevocationKey, RevocationKind,
    RevokeOutcome, RevokeRequest, UnrevokeRequest, revocation_admin_client::RevocationAdminClient,
    revoke_request, unrevoke_request,
};
use std::time::Duration;
use support::redis::RedisProcess;
use support::server::{ServerProcess, admin_token};
use support::tokens;
use support::wait_until;
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn client(server: &ServerProcess) -> RevocationAdminClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.admin_url())
        .expect("admin url")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the admin port");
    RevocationAdminClient::new(channel)
}

fn authed<T>(message: T) -> Request<T> {
    with_token(message, &admin_token())
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("metadata value");
    request.metadata_mut().insert("authorization", value);
    request
}

fn key(kind: RevocationKind, id: &str) -> RevocationKey {
    RevocationKey {
        issuer: tokens::ISSUER.to_owned(),
        kind: kind.into(),
        id: id.to_owned(),
    }
}

fn revoke_key(key: RevocationKey) -> RevokeRequest {
    RevokeRequest {
        target: Some(revoke_request::Target::Key(key)),
        reason: "test".to_owned(),
        expires_at: None,
    }
}

fn revoke_token(token: &str) -> RevokeRequest {
    RevokeRequest {
        target: Some(revoke_request::Target::Token(token.to_owned())),
        reason: String::new(),
        expires_at: None,
    }
}

async fn count(client: &mut RevocationAdminClient<Channel>) -> usize {
    client
        .list_revocations(authed(ListRevocationsRequest {
            page_size: 1000,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner()
        .revocations
        .len()
}

#[tokio::test]
async fn every_admin_call_needs_the_admin_token() {
    let server = ServerProcess::start();
    let mut client = client(&server).await;
    let missing = client
        .get_status(Request::new(GetStatusRequest {}))
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = client
        .revoke(with_token(
            revoke_key(key(RevocationKind::Subject, "alice")),
            "not-the-admin-token-0000",
        ))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        count(&mut client).await,
        0,
        "a refused revoke stored nothing"
    );
    let status = client
        .get_status(authed(GetStatusRequest {}))
        .await
        .expect("status with the admin token")
        .into_inner();
    assert_eq!(status.store, "embedded");
    assert!(status.synced);
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_naming_the_field_and_store_nothing() {
    let server = ServerProcess::start();
    let mut client = client(&server).await;
    let long = "x".repeat(2000);
    let unknown_issuer = RevocationKey {
        issuer: "https://elsewhere.test".to_owned(),
        ..key(RevocationKind::Subject, "alice")
    };
    let mut unknown_kind = key(RevocationKind::Subject, "alice");
    unknown_kind.kind = 42;
    let mut past = revoke_key(key(RevocationKind::Subject, "alice"));
    past.expires_at = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let mut far = revoke_key(key(RevocationKind::Subject, "alice"));
    far.expires_at = Some(prost_types::Timestamp {
        seconds: i64::try_from(tokens::now()).expect("now") + 10 * 24 * 3600,
        nanos: 0,
    });
    let mut token_with_expiry = revoke_token(&tokens::valid("alice"));
    token_with_expiry.expires_at = Some(prost_types::Timestamp {
        seconds: 2_000_000_000,
        nanos: 0,
    });
    let mut long_reason = revoke_key(key(RevocationKind::Subject, "alice"));
    long_reason.reason = long.clone();
    let cases: Vec<(&str, RevokeRequest, &str)> = vec![
        (
            "no target",
            RevokeRequest {
                target: None,
                reason: String::new(),
                expires_at: None,
            },
            "target",
        ),
        (
            "unspecified kind",
            revoke_key(RevocationKey {
                kind: 0,
                ..key(RevocationKind::Token, "a")
            }),
            "key.kind",
        ),
        ("unknown kind", revoke_key(unknown_kind), "key.kind"),
        (
            "empty id",
            revoke_key(key(RevocationKind::Session, "")),
            "key.id",
        ),
        (
            "oversized id",
            revoke_key(key(RevocationKind::Session, &long)),
            "key.id",
        ),
        (
            "control characters",
            revoke_key(key(RevocationKind::Session, "a\u{0}b")),
            "key.id",
        ),
        (
            "unconfigured issuer",
            revoke_key(unknown_issuer),
            "key.issuer",
        ),
        ("expiry in the past", past, "expires_at"),
        ("expiry beyond the longest token", far, "expires_at"),
        ("expiry with a raw token", token_with_expiry, "expires_at"),
        ("reason too long", long_reason, "reason"),
        ("garbage token", revoke_token("not.a.jwt"), "token"),
        ("empty token", revoke_token(""), "token"),
        (
            "token of an unknown issuer",
            revoke_token(&tokens::untrusted_key(&tokens::claims("x"))),
            "token",
        ),
    ];
    for (name, request, field) in cases {
        let status = client.revoke(authed(request)).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{name}: {:?} should name {field}",
            status.message()
        );
    }
    let bad_page = client
        .list_revocations(authed(ListRevocationsRequest {
            page_size: 5000,
            page_token: String::new(),
        }))
        .await
        .expect_err("page too large");
    assert!(bad_page.message().starts_with("page_size"), "{bad_page:?}");
    let bad_cursor = client
        .list_revocations(authed(ListRevocationsRequest {
            page_size: 10,
            page_token: "garbage".to_owned(),
        }))
        .await
        .expect_err("bad page token");
    assert!(
        bad_cursor.message().starts_with("page_token"),
        "{bad_cursor:?}"
    );
    assert_eq!(
        count(&mut client).await,
        0,
        "refused requests stored nothing"
    );
}

#[tokio::test]
async fn revoke_reports_what_happened() {
    let server = ServerProcess::start();
    let mut client = client(&server).await;
    let jti = tokens::unique_jti();
    let mut claims = tokens::claims("alice");
    claims["jti"] = serde_json::json!(jti);
    let token = tokens::rs256(&claims);

    let first = client
        .revoke(authed(revoke_token(&token)))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(first.outcome(), RevokeOutcome::Revoked);
    let revocation = first.revocation.expect("the revocation");
    let stored_key = revocation.key.clone().expect("key");
    assert_eq!(stored_key, key(RevocationKind::Token, &jti));
    let exp = claims["exp"].as_i64().expect("exp");
    let expires_at = revocation.expires_at.expect("expires_at").seconds;
    assert!(
        expires_at >= exp && expires_at <= exp + 300,
        "lives until exp plus leeway: {expires_at} vs {exp}"
    );

    let again = client
        .revoke(authed(revoke_token(&token)))
        .await
        .expect("revoke again")
        .into_inner();
    assert_eq!(again.outcome(), RevokeOutcome::AlreadyRevoked);
    assert_eq!(
        again.revocation.expect("kept").revoked_at,
        revocation.revoked_at
    );

    let by_key = client
        .get_revocation(authed(GetRevocationRequest {
            key: Some(stored_key.clone()),
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(by_key.key, Some(stored_key.clone()));

    let mut expired = tokens::claims("old");
    expired["exp"] = serde_json::json!(tokens::now() - 3600);
    let gone = client
        .revoke(authed(revoke_token(&tokens::rs256(&expired))))
        .await
        .expect("revoke an expired token")
        .into_inner();
    assert_eq!(gone.outcome(), RevokeOutcome::AlreadyExpired);
    assert!(gone.revocation.is_none());
    assert_eq!(
        count(&mut client).await,
        1,
        "nothing stored for the expired token"
    );

    let removed = client
        .unrevoke(authed(UnrevokeRequest {
            target: Some(unrevoke_request::Target::Token(token.clone())),
        }))
        .await
        .expect("unrevoke")
        .into_inner();
    assert!(removed.removed);
    let not_there = client
        .unrevoke(authed(UnrevokeRequest {
            target: Some(unrevoke_request::Target::Key(stored_key.clone())),
        }))
        .await
        .expect("unrevoke again")
        .into_inner();
    assert!(!not_there.removed);
    let missing = client
        .get_revocation(authed(GetRevocationRequest {
            key: Some(stored_key),
        }))
        .await
        .expect_err("gone");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn listing_pages_through_every_revocation_in_order() {
    let server = ServerProcess::start();
    let mut client = client(&server).await;
    for n in 0..25 {
        client
            .revoke(authed(revoke_key(key(
                RevocationKind::Subject,
                &format!("user-{n:02}"),
            ))))
            .await
            .expect("revoke");
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_revocations(authed(ListRevocationsRequest {
                page_size: 10,
                page_token: page_token.clone(),
            }))
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.revocations.len() <= 10);
        seen.extend(page.revocations.into_iter().map(|r| r.key.expect("key").id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|n| format!("user-{n:02}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_store_outage_answers_unavailable_and_recovers_without_a_restart() {
    let mut redis = RedisProcess::start();
    let server = ServerProcess::builder()
        .redis(&redis.url())
        .extra_toml("[replica]\nmax_staleness = \"2s\"")
        .start();
    let mut client = client(&server).await;
    client
        .revoke(authed(revoke_key(key(RevocationKind::Subject, "before"))))
        .await
        .expect("revoke while Redis is up");

    redis.kill();
    let refused = client
        .revoke(authed(revoke_key(key(RevocationKind::Subject, "during"))))
        .await
        .expect_err("Redis is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    wait_until(
        "authz NOT_SERVING once stale",
        Duration::from_secs(15),
        |_| (!server.authz_serving()).then_some(()),
    );

    redis.restart();
    wait_until("authz SERVING again", Duration::from_secs(15), |_| {
        server.authz_serving().then_some(())
    });
    let after = client
        .revoke(authed(revoke_key(key(RevocationKind::Subject, "after"))))
        .await
        .expect("revoke once Redis is back")
        .into_inner();
    assert_eq!(after.outcome(), RevokeOutcome::Revoked);
    let missing = client
        .get_revocation(authed(GetRevocationRequest {
            key: Some(key(RevocationKind::Subject, "during")),
        }))
        .await
        .expect_err("the refused revoke was not stored");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn a_token_revocation_never_outlives_max_token_lifetime() {
    let server = ServerProcess::start();
    let mut client = client(&server).await;
    let mut claims = tokens::claims("long-lived");
    let now = tokens::now();
    claims["exp"] = serde_json::json!(now + 10 * 24 * 3600);
    let revoked = client
        .revoke(authed(revoke_token(&tokens::rs256(&claims))))
        .await
        .expect("revoke")
        .into_inner();
    let expires_at = revoked
        .revocation
        .and_then(|r| r.expires_at)
        .expect("expires_at")
        .seconds;
    let now = i64::try_from(now).expect("now");
    // Default max_token_lifetime 24h and leeway 30s: capped at 24h plus twice the leeway.
    assert!(
        expires_at >= now + 24 * 3600 && expires_at <= now + 24 * 3600 + 60 + 5,
        "{expires_at} vs now {now}"
    );
}
