//! End to end through a real Envoy and a real `jwt-revoker serve`: tokens are allowed,
//! revoked with the CLI, denied with RFC 6750's `WWW-Authenticate`, re-approved; hostile
//! tokens are denied; revocations survive a restart of the embedded store.
//!

mod support;

use support::http::{Request, Response};
use support::server::ServerProcess;
use support::stack::Stack;
use support::tokens;

fn assert_invalid_token(response: &Response) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    let challenge = response
        .header("www-authenticate")
        .expect("a 401 carries WWW-Authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

#[test]
fn valid_token_is_allowed_with_claim_headers_and_without_authorization() {
    let stack = Stack::start();
    let response = stack.get(&tokens::valid("alice"));
    assert_eq!(response.status, 200, "body: {}", response.text());
    let echo = response.json();
    assert_eq!(echo["headers"]["x-jwt-sub"], "alice");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(stack.upstream.request_count(), 1);
    // The claims also reached Envoy as dynamic metadata: its access log prints the `sub`
    // it read from there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stack.envoy.log().contains("/api/items 200 sub=alice") {
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line with the subject from the dynamic metadata:\n{}",
            stack.envoy.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn missing_token_is_denied_without_an_error_code() {
    let stack = Stack::start();
    let response = Request::get("/api/items").send(stack.envoy.listen_port());
    assert_eq!(response.status, 401, "body: {}", response.text());
    let challenge = response
        .header("www-authenticate")
        .expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
}

#[test]
fn revoke_then_unrevoke_with_the_cli() {
    let stack = Stack::start();
    let alice = tokens::valid("alice");
    let bob = tokens::valid("bob");
    assert_eq!(stack.get(&alice).status, 200);

    stack
        .server
        .cli_ok(&["revoke", "--token", &alice, "--reason", "e2e test"]);
    assert_invalid_token(&stack.wait_for_status(&alice, 401));
    assert_eq!(
        stack.get(&bob).status,
        200,
        "revoking alice's token denied bob's"
    );

    let listed = stack.server.cli_ok(&["list"]);
    assert!(
        !listed.contains(&alice),
        "list echoes the raw token: {listed}"
    );

    stack.server.cli_ok(&["unrevoke", "--token", &alice]);
    stack.wait_for_status(&alice, 200);
}

#[test]
fn revoke_by_jti_and_issuer() {
    let stack = Stack::start();
    let claims = tokens::claims("carol");
    let token = tokens::rs256(&claims);
    let jti = claims["jti"].as_str().expect("jti");
    assert_eq!(stack.get(&token).status, 200);
    stack
        .server
        .cli_ok(&["revoke", "--jti", jti, "--issuer", tokens::ISSUER]);
    assert_invalid_token(&stack.wait_for_status(&token, 401));
    stack
        .server
        .cli_ok(&["unrevoke", "--jti", jti, "--issuer", tokens::ISSUER]);
    stack.wait_for_status(&token, 200);
}

#[test]
fn every_supported_algorithm_is_allowed() {
    let stack = Stack::start();
    for (name, token) in tokens::every_algorithm("dave") {
        let response = stack.get(&token);
        assert_eq!(response.status, 200, "{name}: {}", response.text());
    }
}

#[test]
fn hostile_tokens_are_denied() {
    let stack = Stack::start();
    let claims = tokens::claims("mallory");
    let mut expired = tokens::claims("mallory");
    expired["exp"] = serde_json::json!(tokens::now() - 3600);
    let mut wrong_audience = tokens::claims("mallory");
    wrong_audience["aud"] = serde_json::json!("other");
    let mut hostile = vec![
        ("alg none", tokens::alg_none(&claims)),
        (
            "HS256 with the RSA public key",
            tokens::hs256_with_rsa_public_key(&claims),
        ),
        ("unknown kid", tokens::unknown_kid(&claims)),
        ("untrusted key", tokens::untrusted_key(&claims)),
        ("tampered signature", tokens::tampered_signature(&claims)),
        ("expired", tokens::rs256(&expired)),
        ("wrong audience", tokens::rs256(&wrong_audience)),
    ];
    // Garbage that can travel in a header (no empty value).
    hostile.extend(tokens::garbage().into_iter().filter(|(_, t)| !t.is_empty()));
    for (name, token) in hostile {
        let response = stack.get(&token);
        assert_eq!(response.status, 401, "{name}: {}", response.text());
        assert!(
            !response.text().contains(&token),
            "{name}: the deny body echoes the token"
        );
    }
    assert_eq!(stack.upstream.request_count(), 0);
    let mut server = stack.server;
    assert!(server.is_running(), "the server died on hostile input");
}

#[test]
fn revocations_survive_a_restart_of_the_embedded_store() {
    let mut stack = Stack::start();
    let token = tokens::valid("erin");
    stack.server.cli_ok(&["revoke", "--token", &token]);
    assert_invalid_token(&stack.wait_for_status(&token, 401));
    stack.server.restart();
    assert_invalid_token(&stack.wait_for_status(&token, 401));
    assert_eq!(stack.get(&tokens::valid("frank")).status, 200);
}

#[test]
fn tokens_outside_their_validity_or_trust_are_denied() {
    let stack = Stack::start();
    let mut not_yet = tokens::claims("nina");
    not_yet["nbf"] = serde_json::json!(tokens::now() + 3600);
    let mut foreign_issuer = tokens::claims("oscar");
    foreign_issuer["iss"] = serde_json::json!("https://evil.test");
    let mut no_exp = tokens::claims("paul");
    if let Some(map) = no_exp.as_object_mut() {
        map.remove("exp");
    }
    let mut hmac_for_rsa_issuer = tokens::claims("quinn");
    hmac_for_rsa_issuer["iss"] = serde_json::json!(tokens::HMAC_ISSUER);
    hmac_for_rsa_issuer["aud"] = serde_json::json!("other");
    for (name, token) in [
        ("not yet valid", tokens::rs256(&not_yet)),
        ("unconfigured issuer", tokens::rs256(&foreign_issuer)),
        ("no exp", tokens::rs256(&no_exp)),
        (
            "wrong audience (HS256)",
            tokens::hs256(&hmac_for_rsa_issuer),
        ),
    ] {
        let response = stack.get(&token);
        assert_invalid_token(&response);
        assert!(!response.text().contains(&token), "{name}: echoed");
    }
    let nbf = stack.get(&tokens::rs256(&not_yet));
    assert!(
        nbf.header("www-authenticate")
            .is_some_and(|c| c.contains("not yet valid")),
        "{:?}",
        nbf.header("www-authenticate")
    );
    assert_eq!(stack.upstream.request_count(), 0);
}

#[test]
fn tokens_are_also_found_in_the_configured_header_and_cookie() {
    let stack = Stack::with(
        ServerProcess::builder()
            .extra_toml("[token]\nheader = \"x-access-token\"\ncookie = \"access_token\""),
    );
    let port = stack.envoy.listen_port();
    let header = Request::get("/api/items")
        .header("x-access-token", &tokens::valid("rita"))
        .send(port);
    assert_eq!(header.status, 200, "{}", header.text());
    assert_eq!(header.json()["headers"]["x-jwt-sub"], "rita");
    assert!(
        header.json()["headers"].get("x-access-token").is_none(),
        "strip_authorization also strips the token header: {}",
        header.text()
    );
    let cookie = Request::get("/api/items")
        .header(
            "cookie",
            &format!("theme=dark; access_token={}", tokens::valid("sam")),
        )
        .send(port);
    assert_eq!(cookie.status, 200, "{}", cookie.text());
    assert_eq!(cookie.json()["headers"]["x-jwt-sub"], "sam");
    let revoked = tokens::valid("tess");
    stack.server.cli_ok(&["revoke", "--token", &revoked]);
    let denied = Request::get("/api/items")
        .header("cookie", &format!("access_token={revoked}"))
        .send(port);
    assert_invalid_token(&denied);
}

#[test]
fn a_client_cannot_forge_claim_headers() {
    let stack = Stack::start();
    let mut no_sub = tokens::claims("ignored");
    if let Some(map) = no_sub.as_object_mut() {
        map.remove("sub");
    }
    let forged = Request::get("/api/items")
        .bearer(&tokens::rs256(&no_sub))
        .header("x-jwt-sub", "admin")
        .send(stack.envoy.listen_port());
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert!(
        forged.json()["headers"].get("x-jwt-sub").is_none(),
        "a client-sent x-jwt-sub reached the upstream: {}",
        forged.text()
    );
    let overwritten = Request::get("/api/items")
        .bearer(&tokens::valid("uma"))
        .header("x-jwt-sub", "admin")
        .send(stack.envoy.listen_port());
    assert_eq!(overwritten.json()["headers"]["x-jwt-sub"], "uma");
    // Another spelling, which CGI-style servers read as the same variable, is removed.
    let spelled = Request::get("/api/items")
        .bearer(&tokens::valid("uma"))
        .header("x_jwt_sub", "admin")
        .send(stack.envoy.listen_port());
    assert_eq!(spelled.status, 200, "{}", spelled.text());
    assert!(
        spelled.json()["headers"].get("x_jwt_sub").is_none(),
        "a client-sent x_jwt_sub reached the upstream: {}",
        spelled.text()
    );
    assert_eq!(spelled.json()["headers"]["x-jwt-sub"], "uma");
}

#[tokio::test]
async fn a_revoke_through_the_admin_api_is_enforced_on_the_next_request() {
    use jwt_revoker::admin::pb::{
        RevokeRequest, revocation_admin_client::RevocationAdminClient, revoke_request,
    };
    let stack = Stack::start();
    let token = tokens::valid("victor");
    assert_eq!(stack.get(&token).status, 200);
    let mut client = RevocationAdminClient::connect(stack.server.admin_url())
        .await
        .expect("connect to the admin port");
    let mut request = tonic::Request::new(RevokeRequest {
        target: Some(revoke_request::Target::Token(token.clone())),
        reason: "logout".to_owned(),
        expires_at: None,
    });
    let bearer = format!("Bearer {}", support::server::admin_token());
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("metadata"));
    client.revoke(request).await.expect("revoke");
    // Acknowledged means enforced here at once: no waiting.
    assert_invalid_token(&stack.get(&token));
}
