//! End to end through a real Envoy and a real `jwt-revoker serve`, for the revocation scopes:
//! session, subject and client revocations with the CLI (and unrevoke), and logout routes
//! that revoke at the edge, still reach the upstream, propagate to every Envoy through a
//! shared Redis, and refuse with 503 when the store cannot record the logout.

mod support;

use serde_json::{Value, json};
use support::envoy::EnvoyProcess;
use support::http::{Request, Response};
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::stack::{Stack, get, wait_for_status};
use support::tokens;
use support::upstream::TestUpstream;

/// Logout routes used by the logout tests.
const LOGOUT_ROUTES: &str = r#"
[[logout_routes]]
method = "POST"
path = "/logout"
revoke = "session"

[[logout_routes]]
method = "POST"
path = "/logout-everywhere"
issuer = "https://issuer.test"
revoke = "subject"
"#;

/// An RS256 token for `sub` with extra claims.
fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = tokens::claims(sub);
    for (name, value) in extra.as_object().expect("an object of claims") {
        claims[name] = value.clone();
    }
    tokens::rs256(&claims)
}

/// An RS256 token for `sub` issued `seconds` from now (so after any revocation made so far).
fn issued_later(sub: &str, seconds: u64, extra: Value) -> String {
    let mut extra = extra;
    extra["iat"] = json!(tokens::now() + seconds);
    token_with(sub, extra)
}

fn logout(envoy: &EnvoyProcess, path: &str, token: &str) -> Response {
    Request::new("POST", path)
        .bearer(token)
        .send(envoy.listen_port())
}

#[test]
fn revoking_a_session_denies_its_tokens_only_until_unrevoked() {
    let stack = Stack::with(ServerProcess::builder());
    let alice_s1 = token_with("alice", json!({"sid": "s-1"}));
    let alice_s1_again = token_with("alice", json!({"sid": "s-1"}));
    let alice_s2 = token_with("alice", json!({"sid": "s-2"}));
    let bob_s1_other_issuer = tokens::hs256(&{
        let mut claims = tokens::hmac_claims("bob");
        claims["sid"] = json!("s-1");
        claims
    });
    for token in [&alice_s1, &alice_s2, &bob_s1_other_issuer] {
        assert_eq!(stack.get(token).status, 200);
    }

    stack.server.cli_ok(&[
        "revoke",
        "--session",
        "s-1",
        "--issuer",
        tokens::ISSUER,
        "--reason",
        "e2e",
    ]);
    stack.wait_for_status(&alice_s1, 401);
    assert_eq!(stack.get(&alice_s1_again).status, 401, "same session");
    assert_eq!(stack.get(&alice_s2).status, 200, "another session");
    assert_eq!(
        stack.get(&bob_s1_other_issuer).status,
        200,
        "the same sid from another issuer"
    );
    let got = stack
        .server
        .cli_ok(&["get", "--session", "s-1", "--issuer", tokens::ISSUER]);
    assert!(got.contains("session"), "{got}");

    stack
        .server
        .cli_ok(&["unrevoke", "--session", "s-1", "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&alice_s1, 200);
    assert_eq!(stack.get(&alice_s1_again).status, 200);
}

#[test]
fn revoking_a_subject_denies_earlier_tokens_only_until_unrevoked() {
    // Tokens without `iat` only pass at an issuer that opts out of requiring it.
    let stack = Stack::with(ServerProcess::builder().issuer_toml(0, "allow_missing_iat = true"));
    let alice = tokens::valid("alice");
    let alice_no_iat = {
        let mut claims = tokens::claims("alice");
        claims.as_object_mut().expect("object").remove("iat");
        tokens::es256(&claims)
    };
    let bob = tokens::valid("bob");
    assert_eq!(stack.get(&alice).status, 200);

    stack
        .server
        .cli_ok(&["revoke", "--subject", "alice", "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&alice, 401);
    assert_eq!(stack.get(&alice_no_iat).status, 401, "a token without iat");
    assert_eq!(stack.get(&bob).status, 200, "bob is not alice");
    // Alice logs in again: a token issued after the revocation passes.
    let alice_later = issued_later("alice", 2, json!({}));
    assert_eq!(stack.get(&alice_later).status, 200, "issued afterwards");

    let listed = stack.server.cli_ok(&["list", "--json"]);
    assert!(listed.contains(r#""kind":"subject""#), "{listed}");

    stack
        .server
        .cli_ok(&["unrevoke", "--subject", "alice", "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&alice, 200);
    assert_eq!(stack.get(&alice_no_iat).status, 200);
}

#[test]
fn revoking_a_client_denies_its_earlier_tokens_only_until_unrevoked() {
    let stack = Stack::with(ServerProcess::builder());
    let mobile = token_with("alice", json!({"client_id": "mobile"}));
    let mobile_by_azp = token_with("bob", json!({"azp": "mobile"}));
    let web = token_with("alice", json!({"client_id": "web"}));
    assert_eq!(stack.get(&mobile).status, 200);

    stack
        .server
        .cli_ok(&["revoke", "--client", "mobile", "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&mobile, 401);
    assert_eq!(
        stack.get(&mobile_by_azp).status,
        401,
        "azp names the client"
    );
    assert_eq!(stack.get(&web).status, 200, "another client");
    let mobile_later = issued_later("carol", 2, json!({"client_id": "mobile"}));
    assert_eq!(stack.get(&mobile_later).status, 200, "issued afterwards");

    stack
        .server
        .cli_ok(&["unrevoke", "--client", "mobile", "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&mobile, 200);
    assert_eq!(stack.get(&mobile_by_azp).status, 200);
}

#[test]
fn logout_routes_revoke_then_still_reach_the_upstream() {
    let stack = Stack::with(ServerProcess::builder().extra_toml(LOGOUT_ROUTES));
    let port = stack.envoy.listen_port();

    // Session logout: the request goes through, then every token of that session is refused.
    let alice = token_with("alice", json!({"sid": "s-1"}));
    let alice_same_session = token_with("alice", json!({"sid": "s-1"}));
    let alice_other_session = token_with("alice", json!({"sid": "s-2"}));
    let response = logout(&stack.envoy, "/logout?next=%2F", &alice);
    assert_eq!(response.status, 200, "{}", response.text());
    let received = stack
        .upstream
        .last_request()
        .expect("the logout reached the upstream");
    assert!(received.path.starts_with("/logout"), "{received:?}");
    assert_eq!(stack.get(&alice).status, 401);
    assert_eq!(stack.get(&alice_same_session).status, 401);
    assert_eq!(stack.get(&alice_other_session).status, 200);
    // A retried logout, or a second ext_authz hop (gateway, then sidecar) after the first
    // recorded it, still reaches the application's own logout; elsewhere the token is refused.
    let listed = stack.server.cli_ok(&["list"]);
    assert_eq!(
        logout(&stack.envoy, "/logout", &alice).status,
        200,
        "a logout with its token already revoked still reaches the application"
    );
    assert_eq!(
        stack.server.cli_ok(&["list"]),
        listed,
        "nothing recorded again"
    );
    assert_eq!(stack.get(&alice).status, 401);
    let got = stack
        .server
        .cli_ok(&["get", "--session", "s-1", "--issuer", tokens::ISSUER]);
    assert!(got.contains("logout route"), "{got}");

    // Other methods and paths are not logout routes.
    let dave = token_with("dave", json!({"sid": "s-dave"}));
    assert_eq!(Request::get("/logout").bearer(&dave).send(port).status, 200);
    assert_eq!(logout(&stack.envoy, "/logout/x", &dave).status, 200);
    assert_eq!(stack.get(&dave).status, 200, "nothing was revoked");

    // A token without sid on a session route: the token itself is revoked.
    let erin = tokens::valid("erin");
    let erin_other = tokens::valid("erin");
    assert_eq!(logout(&stack.envoy, "/logout", &erin).status, 200);
    assert_eq!(stack.get(&erin).status, 401);
    assert_eq!(stack.get(&erin_other).status, 200);

    // Subject logout: every earlier token of carol, not a later one.
    let carol = token_with("carol", json!({"sid": "c-1"}));
    let carol_elsewhere = token_with("carol", json!({"sid": "c-2"}));
    assert_eq!(
        logout(&stack.envoy, "/logout-everywhere", &carol).status,
        200
    );
    assert_eq!(stack.get(&carol).status, 401);
    assert_eq!(stack.get(&carol_elsewhere).status, 401);
    assert_eq!(stack.get(&issued_later("carol", 2, json!({}))).status, 200);

    // The subject route is for one issuer only: an HMAC-issuer token passes untouched.
    let frank = tokens::hs256(&tokens::hmac_claims("frank"));
    assert_eq!(
        logout(&stack.envoy, "/logout-everywhere", &frank).status,
        200
    );
    assert_eq!(stack.get(&frank).status, 200);
}

#[test]
fn a_logout_through_one_envoy_is_refused_through_another() {
    let redis = RedisProcess::start();
    let upstream = TestUpstream::start();
    let builder = ServerProcess::builder()
        .redis(&redis.url())
        .extra_toml(LOGOUT_ROUTES);
    let first = builder.clone().start();
    let second = builder.start();
    let envoy_a = EnvoyProcess::start(first.authz_port(), upstream.port());
    let envoy_b = EnvoyProcess::start(second.authz_port(), upstream.port());

    let alice = token_with("alice", json!({"sid": "mesh-1"}));
    assert_eq!(get(&envoy_b, &alice).status, 200);
    assert_eq!(logout(&envoy_a, "/logout", &alice).status, 200);
    wait_for_status(&envoy_b, &alice, 401);
    assert_eq!(get(&envoy_a, &alice).status, 401);
}

#[test]
fn a_logout_the_store_cannot_record_is_refused_with_503() {
    let mut redis = RedisProcess::start();
    let stack = Stack::with(
        ServerProcess::builder()
            .redis(&redis.url())
            .extra_toml(LOGOUT_ROUTES)
            // Stay "current" after Redis dies, so only the logout write fails.
            .extra_toml("[replica]\nmax_staleness = \"1h\""),
    );
    let alice = token_with("alice", json!({"sid": "s-down"}));
    assert_eq!(stack.get(&alice).status, 200);
    redis.kill();

    let before = stack.upstream.request_count();
    let response = logout(&stack.envoy, "/logout", &alice);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "a logout that did not happen must not reach the application"
    );
    assert_eq!(stack.get(&alice).status, 200, "nothing was revoked");
}
