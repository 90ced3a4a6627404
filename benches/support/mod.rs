//! Shared by the benchmarks: test tokens signed with the fixture keys, the Check request
//! Envoy sends for them, a large mixed set of revocations, and writing such a set straight
//! into an embedded store file.

// Each benchmark and tool uses a different part of it.
#![allow(dead_code)]

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_revoker::revocation::{Revocation, RevocationKey, RevocationKind};
use jwt_revoker::store::embedded::{FILE_NAME, REVOCATIONS_TABLE};
use redb::{Database, TableDefinition};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The issuer of the fixture JWKS (`tests/fixtures/jwks.json`).
pub const ISSUER: &str = "https://issuer.test";

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(relative)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A config file body trusting the fixture issuer, with `extra` TOML appended.
pub fn config_toml(extra: &str) -> String {
    let jwks = fixture("jwks.json");
    format!(
        "{extra}\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"api\"]\njwks_file = \"{}\"\n\
         algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        jwks.display()
    )
}

/// `count` tokens signed with `alg`, each with its own `jti`, `sid`, `sub` and `client_id`
/// (none of which the revocations of [`revocation`] name), valid for an hour.
pub fn tokens(alg: Algorithm, count: usize) -> Vec<String> {
    let (file, kid) = match alg {
        Algorithm::ES256 => ("ec256.pem", "ec256-1"),
        Algorithm::EdDSA => ("ed25519.pem", "ed25519-1"),
        _ => ("rsa.pem", "rsa-1"),
    };
    let pem = std::fs::read(fixture(&format!("keys/{file}"))).expect("read a fixture key");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("load a fixture key");
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let now = unix_now();
    (0..count)
        .map(|i| {
            let claims = json!({
                "iss": ISSUER,
                "aud": "api",
                "sub": format!("user-{i}"),
                "sid": format!("session-{i}"),
                "client_id": format!("app-{}", i % 10),
                "jti": format!("{alg:?}-token-{i}"),
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            });
            jsonwebtoken::encode(&header, &claims, &key).expect("sign a token")
        })
        .collect()
}

/// The `i`-th revocation of a large set: 70% tokens, 10% each sessions, subjects and
/// clients, of the fixture issuer, with UUID-sized identifiers, live for a day.
pub fn revocation(i: usize, now: u64) -> Revocation {
    let kind = match i % 10 {
        0 => RevocationKind::Session,
        1 => RevocationKind::Subject,
        2 => RevocationKind::Client,
        _ => RevocationKind::Token,
    };
    let id = format!(
        "{i:08x}-6f1c-4a8e-9d2b-{:012x}",
        i.wrapping_mul(0x9e37_79b9)
    );
    let key = RevocationKey::new(ISSUER, kind, id).expect("a valid key");
    Revocation::new(key, now, now + 86_400, "").expect("a valid revocation")
}

/// Writes `count` revocations into `dir`'s embedded store file, in one transaction (the
/// store's own `insert` commits each one durably, far too slow for a million).
pub fn write_embedded(dir: &Path, count: usize, now: u64) {
    let table: TableDefinition<&[u8], &[u8]> = TableDefinition::new(REVOCATIONS_TABLE);
    let db = Database::create(dir.join(FILE_NAME)).expect("create the store file");
    let txn = db.begin_write().expect("begin a write");
    {
        let mut revocations = txn.open_table(table).expect("open the table");
        for i in 0..count {
            let revocation = revocation(i, now);
            let json = serde_json::to_vec(&revocation).expect("encode");
            revocations
                .insert(revocation.key.encode().as_bytes(), json.as_slice())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}

/// The headers Envoy sends to ext_authz for a `GET` carrying `token` as a bearer token.
pub fn envoy_headers(token: &str) -> HashMap<String, String> {
    HashMap::from([
        (":authority".into(), "api.example.com".into()),
        (":method".into(), "GET".into()),
        (":path".into(), "/api/items?page=2".into()),
        (":scheme".into(), "http".into()),
        ("user-agent".into(), "curl/8.5.0".into()),
        ("accept".into(), "*/*".into()),
        ("x-forwarded-proto".into(), "http".into()),
        (
            "x-request-id".into(),
            "0f8e3c52-6d1b-4b7a-9c1e-2a4d5f6b7c8d".into(),
        ),
        ("authorization".into(), format!("Bearer {token}")),
    ])
}

/// The `CheckRequest` Envoy sends for a `GET` carrying `token` as a bearer token.
pub fn check_request(token: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items?page=2".into(),
                    host: "api.example.com".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: envoy_headers(token),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}
