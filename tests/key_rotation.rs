//! Key rotation loses nothing: an identity provider that starts signing with a new key (OIDC
//! Core §10.1.1 allows it at once) has its new tokens accepted at once — through the real
//! Envoy and through Check directly — and its back-channel logouts recorded at once; while
//! its JWKS cannot be fetched, a token or a logout naming an unknown key is answered "retry"
//! (503), never "invalid" (401) or a final 400, so no logout is lost; and a flood of random
//! kids that spends the budget of fetches delays a new key by at most
//! `jwks_min_refresh_interval`.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::check::{CheckClient, Outcome};
use support::http::{Request, Response};
use support::jwks::{JwksServer, NEW_KID, OLD_KID};
use support::server::{ServerProcess, admin_token};
use support::stack::{PROPAGATION, Stack};
use support::{fixture, tokens, wait_until};

const ISSUER: &str = "https://rotating.test";
const CLIENT_ID: &str = "web-app";
/// A kid the provider has not published yet (the old key's material under another name).
const NEXT_KID: &str = "rsa-next";

/// The server config's extra issuer, whose keys come from `jwks`, with at most three fetches
/// on unknown kids per `min_refresh`.
fn rotating_issuer(jwks: &JwksServer, min_refresh: &str) -> String {
    format!(
        r#"
[[issuers]]
issuer = "{ISSUER}"
audiences = ["{aud}"]
jwks_uri = "{uri}"
algorithms = ["RS256"]
backchannel_audiences = ["{CLIENT_ID}"]
jwks_min_refresh_interval = "{min_refresh}"
"#,
        aud = tokens::AUDIENCE,
        uri = jwks.url(),
    )
}

fn key(kid: &str) -> EncodingKey {
    let file = if kid == NEW_KID {
        "keys/rsa-untrusted.pem"
    } else {
        "keys/rsa.pem"
    };
    EncodingKey::from_rsa_pem(&std::fs::read(fixture(file)).expect("read the key"))
        .expect("an RSA key")
}

fn sign(kid: &str, typ: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key(kid)).expect("sign")
}

/// An access token of the rotating issuer, signed with the key `kid`, for session `sid`.
fn access_token(kid: &str, sid: &str) -> String {
    let now = tokens::now();
    let claims = json!({
        "iss": ISSUER, "aud": tokens::AUDIENCE, "sub": "alice", "sid": sid,
        "iat": now, "exp": now + 600, "jti": tokens::unique_jti(),
    });
    sign(kid, "JWT", &claims)
}

/// A back-channel logout token of the rotating issuer for session `sid`, signed with `kid`.
fn logout_token(kid: &str, sid: &str) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sid": sid, "iat": tokens::now(),
        "jti": tokens::unique_jti(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    sign(kid, "logout+jwt", &claims)
}

fn post_form(server: &ServerProcess, path: &str, bearer: Option<&str>, form: &str) -> Response {
    let mut request = Request::new("POST", path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.as_bytes().to_vec());
    if let Some(bearer) = bearer {
        request = request.bearer(bearer);
    }
    request.send(server.admin_port())
}

fn backchannel(server: &ServerProcess, logout_token: &str) -> Response {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", logout_token)
        .finish();
    post_form(server, "/backchannel-logout", None, &form)
}

/// Whether a 503 says "retry" the way the admin port does.
fn is_retry(response: &Response) -> bool {
    response.status == 503
        && response.header("retry-after").is_some()
        && response.json()["error"] == "temporarily_unavailable"
}

#[test]
fn a_new_signing_key_is_accepted_at_once_through_envoy_and_check() {
    let jwks = JwksServer::start(&[OLD_KID]);
    let stack = Stack::with(ServerProcess::builder().extra_toml(&rotating_issuer(&jwks, "30s")));
    let mut check = CheckClient::connect(stack.server.authz_port());
    assert_eq!(stack.get(&access_token(OLD_KID, "s-1")).status, 200);
    let fetched_at_start = jwks.hits();

    // The provider rotates and signs with the new key at once.
    jwks.rotate_to(&[NEW_KID]);
    let new = access_token(NEW_KID, "s-1");
    let first = stack.get(&new);
    // Never "invalid": allowed, or (if the one fetch outlasted the wait) "retry".
    assert!(
        first.status == 200 || first.status == 503,
        "{} {}",
        first.status,
        first.text()
    );
    stack.wait_for_status(&new, 200);
    assert_eq!(check.check(&new), Outcome::Allowed);
    assert_eq!(jwks.hits(), fetched_at_start + 1, "one fetch, at once");

    // A kid the fresh key set lacks is invalid.
    let forged = access_token(NEXT_KID, "s-1");
    assert_eq!(stack.get(&forged).status, 401);

    // While the provider's JWKS cannot be fetched, an unknown kid cannot be judged: 503 (the
    // client retries), never 401 (the client would drop a good token).
    jwks.fail(500);
    let unknown = stack.get(&forged);
    assert_eq!(unknown.status, 503, "{}", unknown.text());
    assert_eq!(check.check(&forged), Outcome::Denied(503));
    // The fetch budget is spent now; still 503, and no more fetches.
    let hits = jwks.hits();
    for _ in 0..5 {
        assert_eq!(check.check(&forged), Outcome::Denied(503));
    }
    assert_eq!(jwks.hits(), hits);
    // Known keys keep working throughout.
    assert_eq!(stack.get(&new).status, 200);
}

#[test]
fn a_logout_signed_with_a_new_key_is_recorded_or_retryable_never_refused() {
    let jwks = JwksServer::start(&[OLD_KID]);
    // The budget of fetches comes back within a second, for the retry at the end.
    let stack = Stack::with(ServerProcess::builder().extra_toml(&rotating_issuer(&jwks, "1s")));
    let session_1 = access_token(OLD_KID, "s-1");
    let session_2 = access_token(OLD_KID, "s-2");
    assert_eq!(stack.get(&session_1).status, 200);
    assert_eq!(stack.get(&session_2).status, 200);

    // The provider rotates and ends session s-1 with a logout signed by the new key.
    jwks.rotate_to(&[OLD_KID, NEW_KID]);
    let logout = logout_token(NEW_KID, "s-1");
    let answer = wait_until("the logout recorded", PROPAGATION, |last| {
        let answer = backchannel(&stack.server, &logout);
        *last = format!("{} {}", answer.status, answer.text());
        assert!(answer.status == 200 || is_retry(&answer), "{last}");
        (answer.status == 200).then_some(answer)
    });
    assert_eq!(answer.status, 200);
    assert_eq!(stack.get(&session_1).status, 401);

    // The provider is unreachable while it rotates again: the logout for s-2 cannot be
    // verified yet, so it is answered "retry" and nothing is recorded.
    jwks.fail(503);
    let logout = logout_token(NEXT_KID, "s-2");
    let answer = backchannel(&stack.server, &logout);
    assert!(is_retry(&answer), "{} {}", answer.status, answer.text());
    assert_eq!(stack.get(&session_2).status, 200);
    // Likewise an RFC 7009 revocation of a token naming a key that cannot be fetched: not
    // "200, nothing to revoke", which would lose it.
    let unverifiable = access_token(NEXT_KID, "s-3");
    let form = format!("token={unverifiable}");
    let answer = post_form(&stack.server, "/revoke", Some(&admin_token()), &form);
    assert!(is_retry(&answer), "{} {}", answer.status, answer.text());

    // The provider is back: the retried logout is recorded.
    jwks.rotate_to(&[OLD_KID, NEW_KID, NEXT_KID]);
    let answer = wait_until("the retried logout recorded", PROPAGATION, |last| {
        let answer = backchannel(&stack.server, &logout);
        *last = format!("{} {}", answer.status, answer.text());
        assert!(answer.status == 200 || is_retry(&answer), "{last}");
        (answer.status == 200).then_some(answer)
    });
    assert_eq!(answer.status, 200);
    assert_eq!(stack.get(&session_2).status, 401);
}

#[test]
fn a_flood_of_random_kids_delays_a_new_key_by_at_most_the_minimum_interval() {
    const MIN_REFRESH: Duration = Duration::from_secs(2);
    let jwks = JwksServer::start(&[OLD_KID]);
    let stack = Stack::with(ServerProcess::builder().extra_toml(&rotating_issuer(&jwks, "2s")));
    let mut check = CheckClient::connect(stack.server.authz_port());
    let session = access_token(OLD_KID, "s-1");
    assert_eq!(check.check(&session), Outcome::Allowed);
    let before = jwks.hits();

    // An attacker sends tokens naming random kids: three fetches (a fresh key set lacks the
    // kid: invalid), then the budget is spent and the rest are "retry", with no fetch.
    let flood_began = Instant::now();
    for i in 0..40 {
        let outcome = check.check(&access_token(&format!("random-{i}"), "s-1"));
        // (401 unless a fetch outlasted the 200 ms wait.)
        let refused = if i < 3 { [401, 503] } else { [503, 503] };
        assert!(
            refused
                .iter()
                .any(|status| outcome == Outcome::Denied(*status)),
            "random kid {i}: {outcome:?}"
        );
    }
    assert_eq!(jwks.hits(), before + 3);

    // The provider rotates, and its new-key token and logout come while the budget is spent:
    // "retry", never "invalid".
    jwks.rotate_to(&[OLD_KID, NEW_KID]);
    let new = access_token(NEW_KID, "s-2");
    let refused = stack.get(&new);
    assert_eq!(refused.status, 503, "{}", refused.text());
    let logout = logout_token(NEW_KID, "s-1");
    let answer = backchannel(&stack.server, &logout);
    assert!(is_retry(&answer), "{} {}", answer.status, answer.text());
    assert_eq!(jwks.hits(), before + 3);

    // With no further request, one deferred fetch runs as soon as the budget allows...
    wait_until("the deferred fetch", MIN_REFRESH + PROPAGATION, |last| {
        *last = format!("{} fetches", jwks.hits() - before);
        (jwks.hits() > before + 3).then_some(())
    });
    let fetched_after = flood_began.elapsed();
    assert!(
        fetched_after < MIN_REFRESH + Duration::from_secs(1),
        "the new key was fetched {fetched_after:?} after the flood began"
    );
    // ...so the retries pass at once, without fetches of their own.
    assert_eq!(stack.get(&new).status, 200);
    assert_eq!(check.check(&new), Outcome::Allowed);
    assert_eq!(backchannel(&stack.server, &logout).status, 200);
    assert_eq!(stack.get(&session).status, 401);
    assert_eq!(
        jwks.hits(),
        before + 4,
        "one deferred fetch for the whole flood"
    );
}
