//! The local demo's committed assets are consistent: its config is accepted by the config
//! loader, and its JWKS verifies tokens signed with its private key.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use jwt_revoker::config::{Config, KeySource, Overrides};
use serde_json::{Value, json};
use std::path::Path;

fn demo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo")
        .join(relative)
}

#[test]
fn demo_config_is_valid() {
    let path = demo("config.toml");
    let text = std::fs::read_to_string(&path).expect("read demo/config.toml");
    // The demo generates its admin token file on first run; supply one instead.
    let overrides = Overrides {
        admin_token: Some("a-demo-admin-token-for-the-test".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(&text, &path, &demo(""), &overrides)
        .unwrap_or_else(|e| panic!("demo/config.toml is refused: {e}"));
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(
        config.issuers[0].keys,
        KeySource::File(demo("keys/jwks.json"))
    );
    assert!(config.authz_addr.ip().is_loopback() && config.admin_addr.ip().is_loopback());
}

#[test]
fn demo_jwks_verifies_demo_key_signatures() {
    let pem = std::fs::read(demo("keys/rsa.pem")).expect("read demo/keys/rsa.pem");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("demo-rsa-1".to_owned());
    let claims = json!({"iss": "https://demo.issuer", "aud": "api", "sub": "alice", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("load the demo key"),
    )
    .expect("sign");

    let jwks: JwkSet = serde_json::from_str(
        &std::fs::read_to_string(demo("keys/jwks.json")).expect("read demo/keys/jwks.json"),
    )
    .expect("parse the demo JWKS");
    let jwk = jwks
        .find("demo-rsa-1")
        .expect("kid demo-rsa-1 in the demo JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api"]);
    validation.set_issuer(&["https://demo.issuer"]);
    let verified = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_jwk(jwk).expect("decoding key from the JWK"),
        &validation,
    )
    .expect("the demo JWKS verifies the demo key's signature");
    assert_eq!(verified.claims["sub"], "alice");
}
