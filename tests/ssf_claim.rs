//! Identity-provider signals that name a user by e-mail, against a real `jwt-revoker serve`:
//! a SET pushed by the test transmitter with an `email` subject, and a Global Token
//! Revocation with an `email` `sub_id`, revoke by the `email` claim of the access tokens
//! (`subject_claims = { email = "email" }`, the claim in the issuer's `revocable_claims`):
//! the user's earlier tokens are denied, whatever their `sub`; other users' tokens and
//! tokens issued afterwards pass.

mod support;

use serde_json::{Value, json};
use support::check::{CheckClient, Outcome};
use support::http::Request;
use support::server::{ServerProcess, admin_token};
use support::tokens;
use support::transmitter::{ACCOUNT_DISABLED, Transmitter, push};

const AUDIENCE: &str = "https://revoker.test/ssf";
const SECRET: &str = "0123456789abcdef-push-secret";

fn server(transmitter: &Transmitter) -> ServerProcess {
    ServerProcess::builder()
        .issuer_toml(0, r#"revocable_claims = ["email"]"#)
        .env("TEST_SSF_PUSH_SECRET", SECRET)
        .extra_toml(&format!(
            r#"
[[ssf.streams]]
name = "okta"
issuer = "{issuer}"
audience = "{AUDIENCE}"
token_issuers = ["{token_issuer}"]
authorization_header_env = "TEST_SSF_PUSH_SECRET"
subject_claims = {{ email = "email" }}

[ssf.global_token_revocation]
token_issuers = ["{token_issuer}"]
subject_claims = {{ email = "email" }}
"#,
            issuer = transmitter.issuer(),
            token_issuer = tokens::ISSUER,
        ))
        .start()
}

fn with_email(sub: &str, email: &str) -> String {
    let mut claims = tokens::claims(sub);
    claims["email"] = json!(email);
    tokens::rs256(&claims)
}

fn later(sub: &str, email: &str) -> String {
    let mut claims = tokens::claims(sub);
    claims["email"] = json!(email);
    claims["iat"] = json!(tokens::now() + 2);
    tokens::rs256(&claims)
}

fn email(address: &str) -> Value {
    json!({"format": "email", "email": address})
}

#[test]
fn a_pushed_event_with_an_email_subject_revokes_by_the_email_claim() {
    let transmitter = Transmitter::start();
    let server = server(&transmitter);
    let mut check = CheckClient::connect(server.authz_port());
    // Two tokens of alice's with different `sub`s (the IdP's id, a federated one).
    let alice = with_email("00u1abcd", "alice@example.com");
    let alice_federated = with_email("google-123", "Alice@Example.com");
    let bob = with_email("00u2efgh", "bob@example.com");
    for token in [&alice, &alice_federated, &bob] {
        assert_eq!(check.check(token), Outcome::Allowed);
    }
    let set = transmitter.set(
        AUDIENCE,
        ACCOUNT_DISABLED,
        email("ALICE@example.com"),
        json!({"reason": "hijacking"}),
    );
    let answer = push(
        server.admin_port(),
        "/ssf/push/okta",
        &set,
        Some(&format!("Bearer {SECRET}")),
    );
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(check.check(&alice), Outcome::Denied(401));
    assert_eq!(check.check(&alice_federated), Outcome::Denied(401));
    assert_eq!(check.check(&bob), Outcome::Allowed);
    assert_eq!(
        check.check(&later("00u1abcd", "alice@example.com")),
        Outcome::Allowed,
        "issued after the event"
    );
    let listed = server.cli_ok(&["list"]);
    assert!(listed.contains("claim"), "{listed}");
    assert!(listed.contains("email=alice@example.com"), "{listed}");
    assert!(listed.contains("ssf stream=okta"), "{listed}");
}

#[test]
fn global_token_revocation_with_an_email_revokes_by_the_email_claim() {
    let transmitter = Transmitter::start();
    let server = server(&transmitter);
    let mut check = CheckClient::connect(server.authz_port());
    let erin = with_email("00u3", "erin@example.com");
    let frank = with_email("00u4", "frank@example.com");
    assert_eq!(check.check(&erin), Outcome::Allowed);
    let answer = Request::new("POST", "/global-token-revocation")
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {}", admin_token()))
        .body(json!({"sub_id": email("erin@example.com")}).to_string())
        .send(server.admin_port());
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(check.check(&erin), Outcome::Denied(401));
    assert_eq!(check.check(&frank), Outcome::Allowed);
    assert_eq!(
        check.check(&later("00u3", "erin@example.com")),
        Outcome::Allowed
    );
    // A phone number is not mapped here: refused as unsupported, nothing revoked.
    let answer = Request::new("POST", "/global-token-revocation")
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {}", admin_token()))
        .body(
            json!({"sub_id": {"format": "phone_number", "phone_number": "+12065550100"}})
                .to_string(),
        )
        .send(server.admin_port());
    assert_eq!(answer.status, 422, "{}", answer.text());
}
