//! Revocations of kind `claim` end to end through a real Envoy (ext_authz) and a real
//! `jwt-revoker serve`: revoking `email=…` with the CLI denies every earlier token carrying
//! that e-mail (in any ASCII case), not another user's, not one issued afterwards; a token
//! whose revocable claim is not a string is refused; the admin API refuses a claim its issuer
//! does not make revocable, and hostile claim ids.

mod support;

use serde_json::json;
use support::http::Response;
use support::server::ServerProcess;
use support::stack::Stack;
use support::tokens;

fn assert_revoked(response: &Response) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    let challenge = response
        .header("www-authenticate")
        .expect("a 401 carries WWW-Authenticate");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(response.json()["error"], "invalid_token");
}

fn with_email(sub: &str, email: serde_json::Value) -> serde_json::Value {
    let mut claims = tokens::claims(sub);
    claims["email"] = email;
    claims
}

fn stack() -> Stack {
    Stack::with(ServerProcess::builder().issuer_toml(0, r#"revocable_claims = ["email"]"#))
}

#[test]
fn revoking_an_email_denies_that_users_earlier_tokens_only() {
    let stack = stack();
    let alice = tokens::rs256(&with_email("alice", json!("Alice@Example.com")));
    let alice_other_sub = tokens::rs256(&with_email("alice-2", json!("alice@example.COM")));
    let bob = tokens::rs256(&with_email("bob", json!("bob@example.com")));
    let no_email = tokens::valid("carol");
    for token in [&alice, &alice_other_sub, &bob, &no_email] {
        assert_eq!(stack.get(token).status, 200);
    }

    let out = stack.server.cli_ok(&[
        "revoke",
        "--issuer",
        tokens::ISSUER,
        "--claim",
        "email=ALICE@example.com",
        "--reason",
        "e2e claim",
    ]);
    assert!(out.contains("claim"), "{out}");
    assert_revoked(&stack.wait_for_status(&alice, 401));
    assert_revoked(&stack.get(&alice_other_sub));
    assert_eq!(stack.get(&bob).status, 200, "another user's token");
    assert_eq!(stack.get(&no_email).status, 200, "a token without e-mail");

    // A token issued after the revocation (its `iat` later than the revocation's time).
    let mut later = with_email("alice", json!("alice@example.com"));
    later["iat"] = json!(tokens::now() + 2);
    let later = tokens::rs256(&later);
    assert_eq!(stack.get(&later).status, 200, "issued after the revocation");

    // get and list name the kind and the normalised id.
    let got = stack.server.cli_ok(&[
        "get",
        "--issuer",
        tokens::ISSUER,
        "--claim",
        "email=alice@EXAMPLE.com",
    ]);
    assert!(
        got.contains("claim") && got.contains("email=alice@example.com"),
        "{got}"
    );
    let listed = stack.server.cli_ok(&["list", "--json"]);
    assert!(listed.contains("\"claim\""), "{listed}");
    let metrics = support::http::get(stack.server.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(r#"jwt_revoker_revocations{kind="claim"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reason="revoked_claim""#), "{metrics}");

    stack.server.cli_ok(&[
        "unrevoke",
        "--issuer",
        tokens::ISSUER,
        "--claim",
        "email=alice@example.com",
    ]);
    stack.wait_for_status(&alice, 200);
}

#[test]
fn a_revocable_claim_that_is_not_a_string_is_refused() {
    let stack = stack();
    for email in [
        json!(["alice@example.com"]),
        json!(42),
        json!(true),
        json!({"address": "alice@example.com"}),
    ] {
        let token = tokens::rs256(&with_email("alice", email.clone()));
        let response = stack.get(&token);
        assert_eq!(response.status, 401, "{email}: {}", response.text());
        assert_eq!(response.json()["error"], "invalid_token", "{email}");
    }
    let metrics = support::http::get(stack.server.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(r#"reason="unrevocable_claim""#),
        "{metrics}"
    );
    // The control: the same token with a string e-mail passes.
    let good = tokens::rs256(&with_email("alice", json!("alice@example.com")));
    assert_eq!(stack.get(&good).status, 200);
}

#[test]
fn claims_that_are_not_revocable_and_hostile_ids_are_refused() {
    let stack = stack();
    let refused = |claim: &str| {
        let out = stack
            .server
            .cli(&["revoke", "--issuer", tokens::ISSUER, "--claim", claim]);
        assert!(!out.status.success(), "{claim:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let error = refused("phone_number=+12065550100");
    assert!(error.contains("revocable_claims"), "{error}");
    // `e` is not revocable either (the split is at the first `=`).
    assert!(refused("e=mail=alice@example.com").contains("revocable_claims"));
    for hostile in [
        "email",
        "=alice@example.com",
        "email=",
        "e.mail=alice@example.com",
        "email=alice\u{1}@example.com",
        &format!("email={}", "a".repeat(2000)),
    ] {
        refused(hostile);
    }
    // The HMAC issuer makes no claim revocable.
    let out = stack.server.cli(&[
        "revoke",
        "--issuer",
        tokens::HMAC_ISSUER,
        "--claim",
        "email=alice@example.com",
    ]);
    assert!(!out.status.success());
    let listed = stack.server.cli_ok(&["list", "--json"]);
    assert!(!listed.contains("\"claim\""), "{listed}");
}
