//! Revocations of kind `claim` in the Envoy dynamic module: a real Envoy 1.40 with
//! `envoy/module.yaml` (the module reads `email` from the payload `jwt_authn` forwards, after
//! `header_mutation` removed any payload header the client sent) follows a real jwt-revoker's
//! feed; the module enforces `email=…` revocations, refuses a token whose `email` is not a
//! string, and refuses everything (503) while a revocation names a claim its config does not
//! list.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use support::module::ModuleEnvoy;
use support::server::ServerProcess;
use support::tokens;
use support::upstream::TestUpstream;

const FEED_TOKEN: &str = "feed-token-0123456789abcdef";

fn with_email(sub: &str, email: serde_json::Value) -> String {
    let mut claims = tokens::claims(sub);
    claims["email"] = email;
    tokens::rs256(&claims)
}

#[test]
fn the_module_enforces_claim_revocations_and_refuses_what_it_cannot_enforce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("feed-token");
    std::fs::write(&token_file, FEED_TOKEN).expect("write the feed token");
    let server = ServerProcess::builder()
        .issuer_toml(0, r#"revocable_claims = ["email", "phone_number"]"#)
        .extra_toml(&format!(
            "[feed]\ntoken_file = {}",
            toml::Value::String(token_file.display().to_string())
        ))
        .start();
    let upstream = TestUpstream::start();
    let config = json!({
        "feed": server.admin_url(),
        "feed_token": FEED_TOKEN,
        "realm": "mesh",
        "revocable_claims": ["email"],
    });
    let envoy = ModuleEnvoy::start(upstream.port(), &config);

    let alice = with_email("alice", json!("Alice@Example.com"));
    let bob = with_email("bob", json!("bob@example.com"));
    envoy.wait_for_status(&alice, 200);
    assert_eq!(envoy.get(&bob, &[]).status, 200);
    let seen = upstream.last_request().expect("the upstream saw bob");
    let payload = URL_SAFE_NO_PAD
        .decode(seen.header("x-jwt-payload").expect("the verified payload"))
        .expect("base64url");
    let payload: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(payload["email"], "bob@example.com");

    // A revocable claim that is not a string cannot be looked up: refused.
    for email in [json!(["alice@example.com"]), json!(7), json!(false)] {
        let response = envoy.get(&with_email("alice", email.clone()), &[]);
        assert_eq!(response.status, 401, "{email}: {}", response.text());
    }

    server.cli_ok(&[
        "revoke",
        "--issuer",
        tokens::ISSUER,
        "--claim",
        "email=alice@example.com",
    ]);
    let (denied, _) = envoy.wait_for_status(&alice, 401);
    assert!(
        denied
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("the token has been revoked"),
        "{}",
        denied.text()
    );
    // A forged payload header is removed before jwt_authn writes the real one: it neither
    // rescues alice nor condemns bob.
    let forged = |email: &str| {
        let mut claims = tokens::claims("carol");
        claims["email"] = json!(email);
        URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    assert_eq!(
        envoy
            .get(&alice, &[("x-jwt-payload", &forged("carol@example.com"))])
            .status,
        401
    );
    assert_eq!(
        envoy
            .get(&bob, &[("x-jwt-payload", &forged("alice@example.com"))])
            .status,
        200
    );
    // A token issued after the revocation is not covered.
    let mut later = tokens::claims("alice");
    later["email"] = json!("alice@example.com");
    later["iat"] = json!(tokens::now() + 2);
    assert_eq!(envoy.get(&tokens::rs256(&later), &[]).status, 200);

    // The server accepts a phone_number revocation, which this module does not read: it
    // would go unenforced, so the module refuses every request until it is gone.
    let phone = [
        "--issuer",
        tokens::ISSUER,
        "--claim",
        "phone_number=+12065550100",
    ];
    let mut revoke = vec!["revoke"];
    revoke.extend(phone);
    server.cli_ok(&revoke);
    let (refused, _) = envoy.wait_for_status(&bob, 503);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    assert!(envoy.log().contains("phone_number"), "{}", envoy.log());
    let mut unrevoke = vec!["unrevoke"];
    unrevoke.extend(phone);
    server.cli_ok(&unrevoke);
    envoy.wait_for_status(&bob, 200);
    assert_eq!(envoy.get(&alice, &[]).status, 401, "alice stays revoked");
}
