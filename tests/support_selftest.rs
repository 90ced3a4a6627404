//! Checks the shared test helpers themselves, without Envoy or a running server: the
//! config `ServerProcess` writes is accepted by the real config loader, the minted tokens
//! verify (or not) against the fixture JWKS as intended, and the upstream and HTTP client
//! agree with each other.

mod support;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwt_revoker::config::{Config, Overrides, RedisConfig, RedisTopology, StoreConfig};
use serde_json::Value;
use support::http::Request;
use support::server::{ServerProcess, admin_token};
use support::tokens::{self, AUDIENCE, HMAC_ISSUER, ISSUER};
use support::upstream::TestUpstream;
use support::{fixture, repo_root};

fn load(text: &str) -> Config {
    let overrides = Overrides {
        admin_token: Some(admin_token()),
        ..Overrides::default()
    };
    Config::parse(
        text,
        &repo_root().join("generated.toml"),
        repo_root(),
        &overrides,
    )
    .unwrap_or_else(|e| panic!("the generated config is refused: {e}\n{text}"))
}

#[test]
fn default_server_config_is_valid() {
    let data_dir = std::env::temp_dir().join("unused-data-dir");
    let config = load(&ServerProcess::builder().config_toml(40001, 40002, &data_dir));
    assert_eq!(config.authz_addr.to_string(), "127.0.0.1:40001");
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:40002");
    assert_eq!(config.store, StoreConfig::Embedded { data_dir });
    assert!(
        config
            .response
            .strip_headers
            .contains(&"authorization".to_owned())
    );
    assert_eq!(
        config.response.claim_headers.get("sub").map(String::as_str),
        Some("x-jwt-sub")
    );
    let issuers: Vec<&str> = config.issuers.iter().map(|i| i.issuer.as_str()).collect();
    assert_eq!(issuers, [ISSUER, HMAC_ISSUER]);
}

#[test]
fn extra_toml_merges_into_the_server_config() {
    let text = ServerProcess::builder()
        .redis("redis://127.0.0.1:6390/")
        .extra_toml("leeway = \"0s\"\n[token]\ncookie = \"session\"\n[response]\nrealm = \"t\"")
        .extra_toml(
            "[[issuers]]\nissuer = \"https://third.test\"\naudiences = [\"api\"]\n\
             algorithms = [\"HS256\"]\nhmac_secret_file = \"tests/fixtures/hmac-secret.txt\"",
        )
        .config_toml(40001, 40002, &std::env::temp_dir());
    let config = load(&text);
    assert!(
        matches!(config.store, StoreConfig::Redis(RedisConfig { topology: RedisTopology::Standalone { ref url }, .. }) if url == "redis://127.0.0.1:6390/")
    );
    assert!(config.leeway.is_zero());
    assert_eq!(config.token_sources.cookie.as_deref(), Some("session"));
    assert_eq!(config.response.realm, "t");
    // Merged tables keep their other keys.
    assert!(
        config
            .response
            .strip_headers
            .contains(&"authorization".to_owned())
    );
    assert_eq!(config.issuers.len(), 3);
}

fn verify(token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[AUDIENCE]);
    let key = if header.alg == Algorithm::HS256 {
        validation.set_issuer(&[HMAC_ISSUER]);
        DecodingKey::from_secret(&tokens::hmac_secret())
    } else {
        validation.set_issuer(&[ISSUER]);
        let jwks: JwkSet = serde_json::from_str(
            &std::fs::read_to_string(fixture("jwks.json")).expect("read jwks.json"),
        )
        .expect("parse jwks.json");
        let kid = header.kid.ok_or("no kid")?;
        let jwk = jwks
            .find(&kid)
            .ok_or_else(|| format!("unknown kid {kid}"))?;
        DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?
    };
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[test]
fn minted_tokens_verify_against_the_fixture_keys() {
    for (name, token) in tokens::every_algorithm("alice") {
        let verified = verify(&token).unwrap_or_else(|e| panic!("{name} token refused: {e}"));
        assert_eq!(verified["sub"], "alice", "{name}");
    }
    assert_ne!(tokens::claims("a")["jti"], tokens::claims("a")["jti"]);
}

#[test]
fn hostile_tokens_do_not_verify() {
    let claims = tokens::claims("mallory");
    let mut hostile = vec![
        ("alg none", tokens::alg_none(&claims)),
        (
            "HS256 keyed with the RSA public key",
            tokens::hs256_with_rsa_public_key(&claims),
        ),
        ("unknown kid", tokens::unknown_kid(&claims)),
        ("untrusted key", tokens::untrusted_key(&claims)),
        (
            "untrusted key, own kid",
            tokens::untrusted_key_own_kid(&claims),
        ),
        ("tampered signature", tokens::tampered_signature(&claims)),
    ];
    hostile.extend(tokens::garbage());
    for (name, token) in hostile {
        assert!(verify(&token).is_err(), "{name} verified");
    }
    let mut expired = tokens::claims("bob");
    expired["exp"] = serde_json::json!(tokens::now() - 3600);
    assert!(
        verify(&tokens::rs256(&expired)).is_err(),
        "expired verified"
    );
}

#[test]
fn upstream_echoes_what_it_received() {
    let upstream = TestUpstream::start();
    let response = Request::new("POST", "/echo?x=1")
        .header("x-custom", "one")
        .header("x-custom", "two")
        .bearer("abc")
        .body("hello")
        .send(upstream.port());
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let echo = response.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo?x=1");
    assert_eq!(echo["headers"]["x-custom"], "one, two");
    assert_eq!(echo["headers"]["authorization"], "Bearer abc");
    assert_eq!(upstream.request_count(), 1);
    let received = upstream.last_request().expect("one request");
    assert_eq!(received.header("x-custom"), Some("one"));
}

#[tokio::test]
async fn http_client_works_from_async_tests() {
    let upstream = TestUpstream::start();
    let response = support::http::send_async(Request::get("/a"), upstream.port()).await;
    assert_eq!(response.json()["path"], "/a");
}
