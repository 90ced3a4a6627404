//! The fuzz targets' seed corpus (`fuzz/seeds/<target>/`): each committed seed must still do
//! what its name says against today's parsers — `ok-*` seeds are accepted (a seed token
//! verifies at the fuzz "now", a seed config validates), `refused-*` seeds are refused — so
//! that the seeds keep leading the fuzzer past the checks they were made for.
//!
//! `JWT_REVOKER_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds` rewrites the seeds from the
//! fixtures (then this test checks the files it wrote).

// Shared with the fuzz targets; each includer uses a different subset.
#[allow(dead_code)]
#[path = "../fuzz/src/fixture.rs"]
mod fixture;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use fixture::{AUDIENCE, HMAC_ISSUER, ISSUER, Key, LOGOUT_AUDIENCE, NOW};
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_revoker::admin::http::parse_form;
use jwt_revoker::authz::request::{CheckRequestView, CheckedRequest, RequestHeaders};
use jwt_revoker::config::{Config, Overrides};
use jwt_revoker::token::logout::BACKCHANNEL_LOGOUT_EVENT;
use jwt_revoker::token::{TimeRule, Verifier, extract_token};
use prost::Message;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where the seeds live.
fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

/// A fixture private key, read from `tests/fixtures/keys`.
fn pem_key(alg: Algorithm) -> (EncodingKey, &'static str) {
    let read = |name: &str| std::fs::read(fixture::fixtures_dir().join(name)).expect("key");
    let key = match alg {
        Algorithm::RS256 => (EncodingKey::from_rsa_pem(&read("keys/rsa.pem")), "rsa-1"),
        Algorithm::PS256 => (
            EncodingKey::from_rsa_pem(&read("keys/rsa.pem")),
            "rsa-pss-1",
        ),
        Algorithm::ES384 => (EncodingKey::from_ec_pem(&read("keys/ec384.pem")), "ec384-1"),
        other => panic!("no PEM fixture used for {other:?}"),
    };
    (key.0.expect("fixture key"), key.1)
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        other => panic!("unused algorithm {other:?}"),
    }
}

/// Access token claims valid at [`NOW`] for `iss`.
fn access_claims(iss: &str) -> Value {
    json!({
        "iss": iss, "sub": "alice", "aud": AUDIENCE, "iat": NOW, "nbf": NOW,
        "exp": NOW + 300, "jti": "seed-1", "sid": "session-1", "client_id": "web",
        "scope": "read write"
    })
}

/// Back-channel logout token claims valid at [`NOW`] for `iss`.
fn logout_claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": LOGOUT_AUDIENCE, "iat": NOW, "jti": "logout-1", "sid": "session-1",
        "sub": "alice", "events": { BACKCHANNEL_LOGOUT_EVENT: {} }
    })
}

/// The `token_claims` seeds: (name, key, header, claims).
fn claims_seeds() -> Vec<(String, Key, Value, Value)> {
    let mut seeds = Vec::new();
    for key in Key::ALL {
        let (iss, kid) = match key {
            Key::Hmac => (HMAC_ISSUER, None),
            Key::Ed25519 => (ISSUER, Some("ed25519-1")),
            Key::Ec256 => (ISSUER, Some("ec256-1")),
        };
        let name = format!("{key:?}").to_lowercase();
        let mut header = json!({"alg": alg_name(key.alg()), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        seeds.push((
            format!("ok-access-{name}"),
            key,
            header.clone(),
            access_claims(iss),
        ));
        let mut logout_header = header.clone();
        logout_header["typ"] = json!("logout+jwt");
        seeds.push((
            format!("ok-logout-{name}"),
            key,
            logout_header,
            logout_claims(iss),
        ));
    }
    seeds
}

/// Signs `claims` under `header` with a PEM fixture key.
fn mint_pem(alg: Algorithm, claims: &Value) -> String {
    let (key, kid) = pem_key(alg);
    let header = json!({"alg": alg_name(alg), "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("sign");
    format!("{input}.{signature}")
}

/// Valid access tokens in every fixture algorithm: (algorithm name, token).
fn valid_tokens() -> Vec<(String, String)> {
    let keys: Vec<(Key, EncodingKey)> = Key::ALL.iter().map(|k| (*k, k.encoding_key())).collect();
    let mut tokens: Vec<(String, String)> = claims_seeds()
        .into_iter()
        .filter(|(name, ..)| name.starts_with("ok-access-"))
        .map(|(name, key, header, claims)| {
            let encoding_key = &keys.iter().find(|(k, _)| *k == key).expect("key").1;
            let token = fixture::sign(
                key,
                encoding_key,
                header.to_string().as_bytes(),
                claims.to_string().as_bytes(),
            );
            (name.trim_start_matches("ok-access-").to_owned(), token)
        })
        .collect();
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES384] {
        tokens.push((
            alg_name(alg).to_lowercase(),
            mint_pem(alg, &access_claims(ISSUER)),
        ));
    }
    tokens
}

/// A valid back-channel logout token (HS256).
fn logout_token() -> String {
    fixture::sign(
        Key::Hmac,
        &Key::Hmac.encoding_key(),
        br#"{"alg":"HS256","typ":"logout+jwt"}"#,
        logout_claims(HMAC_ISSUER).to_string().as_bytes(),
    )
}

/// Hostile tokens every verifier must refuse: (name, token).
fn hostile_tokens() -> Vec<(&'static str, String)> {
    let good = valid_tokens().remove(0).1;
    let mut parts = good.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let b64 = |value: &str| URL_SAFE_NO_PAD.encode(value);
    let claims = access_claims(HMAC_ISSUER).to_string();
    vec![
        (
            "alg-none",
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims)),
        ),
        ("tampered", format!("{header}.{payload}.{signature}x")),
        ("padded", format!("{header}.{payload}==.{signature}")),
        ("four-parts", format!("{header}.{payload}.{signature}.x")),
        (
            "jwe",
            format!(
                "{}.a2V5.aXY.Y2lwaGVy.dGFn",
                b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ),
        ),
        (
            "crit",
            format!(
                "{}.{payload}.{signature}",
                b64(r#"{"alg":"HS256","crit":["exp"]}"#)
            ),
        ),
        (
            "huge-exp",
            format!(
                "{header}.{}.{signature}",
                b64(&claims.replace(&(NOW + 300).to_string(), "1e400"))
            ),
        ),
    ]
}

/// An Envoy `CheckRequest` carrying `http`, encoded.
fn check_request(http: HttpRequest) -> Vec<u8> {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
    .encode_to_vec()
}

/// Every seed: (target, file name, bytes).
fn all_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let tokens = valid_tokens();
    for (alg, token) in &tokens {
        seeds.push(("token_raw", format!("ok-{alg}"), token.clone().into_bytes()));
    }
    seeds.push((
        "token_raw",
        "ok-logout".to_owned(),
        logout_token().into_bytes(),
    ));
    for (name, token) in hostile_tokens() {
        seeds.push(("token_raw", format!("refused-{name}"), token.into_bytes()));
    }
    for (name, key, header, claims) in claims_seeds() {
        let data = fixture::join_signed_input(
            key,
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        );
        seeds.push(("token_claims", name, data));
    }
    let token = &tokens[0].1;
    let extract = [
        ("ok-bearer", format!("authorization: Bearer {token}\n")),
        ("ok-header", format!("x-access-token: {token}\n")),
        (
            "ok-cookie",
            format!(
                "authorization: Basic dXNlcjpwYXNz\ncookie: theme=dark; access_token={token}; lang=en\n"
            ),
        ),
        (
            "ok-all-sources",
            format!(
                "authorization: bearer {token}\nx-access-token: Bearer {token}\ncookie: access_token=\"{token}\"\n"
            ),
        ),
        (
            "refused-two-tokens",
            format!("authorization: Bearer {token} {token}\n"),
        ),
    ];
    for (name, text) in extract {
        seeds.push(("token_extract", name.to_owned(), text.into_bytes()));
    }
    let header_value = |key: &str, value: &str| HeaderValue {
        key: key.to_owned(),
        value: value.to_owned(),
        ..HeaderValue::default()
    };
    let headers_map = check_request(HttpRequest {
        method: "GET".to_owned(),
        path: "/api/items?x=1".to_owned(),
        headers: HashMap::from([
            ("authorization".to_owned(), format!("Bearer {token}")),
            (":authority".to_owned(), "api.test".to_owned()),
        ]),
        ..HttpRequest::default()
    });
    let raw_header_map = check_request(HttpRequest {
        method: "POST".to_owned(),
        path: "/logout".to_owned(),
        header_map: Some(HeaderMap {
            headers: vec![
                header_value("Cookie", "theme=dark"),
                HeaderValue {
                    key: "cookie".to_owned(),
                    raw_value: format!("access_token={token}").into_bytes(),
                    ..HeaderValue::default()
                },
                header_value("X-Access-Token", token),
            ],
        }),
        ..HttpRequest::default()
    });
    seeds.push(("check_request", "ok-headers-map".to_owned(), headers_map));
    seeds.push(("check_request", "ok-header-map".to_owned(), raw_header_map));
    let form = "application/x-www-form-urlencoded";
    let admin_token = std::fs::read_to_string(fixture::fixtures_dir().join("admin-token.txt"))
        .expect("admin token");
    let admin = [
        (
            "ok-revoke-by-admin",
            format!(
                "{form}\nBearer {}\ntoken={token}&token_type_hint=access_token",
                admin_token.trim()
            ),
        ),
        (
            "ok-revoke-by-owner",
            format!("{form}; charset=UTF-8\nBearer {token}\ntoken={token}"),
        ),
        (
            "ok-logout",
            format!("{form}\n\nlogout_token={}", logout_token()),
        ),
        ("refused-repeated", format!("{form}\n\ntoken=a&token=b")),
        (
            "refused-json",
            "application/json\n\n{\"token\":\"a\"}".to_owned(),
        ),
    ];
    for (name, text) in admin {
        seeds.push(("admin_form", name.to_owned(), text.into_bytes()));
    }
    let full = format!(
        r#"authz_addr = "127.0.0.1:9191"
admin_addr = "[::1]:9192"
metrics_addr = "127.0.0.1:9090"
log_level = "info,jwt_revoker=debug"
leeway = "1m"
max_token_lifetime = "12h"
max_token_bytes = 4096

[store]
url = "redis://:secret@127.0.0.1:6379/0"
key_prefix = "jwt-revoker"

[admin]
token_file = "admin-token.txt"

[token]
header = "X-Access-Token"
cookie = "access_token"

[response]
realm = "api"
strip_authorization = true
claim_headers = {{ sub = "x-jwt-sub", client_id = "x-client" }}
dynamic_metadata = false

[replica]
max_staleness = "30s"
resync_interval = "5m"
stale_policy = "serve-stale"

[cache]
max_entries = 1000

[tls.authz]
cert_file = "keys/rsa.pub.pem"
key_file = "keys/rsa.pem"

[[issuers]]
issuer = "{ISSUER}"
audiences = ["api", "other"]
jwks_uri = "https://issuer.test/jwks"
jwks_refresh_interval = "10m"
jwks_min_refresh_interval = "30s"
algorithms = ["RS256", "ES256", "EdDSA"]

[[issuers]]
issuer = "https://inline.test"
audiences = ["api"]
algorithms = ["RS256"]
jwks = '{}'

[[logout_routes]]
method = "post"
path = "/logout"
issuer = "{ISSUER}"
revoke = "session"
"#,
        std::fs::read_to_string(fixture::fixtures_dir().join("jwks.json"))
            .expect("jwks")
            .trim()
            .replace('\n', "")
    );
    seeds.push((
        "config",
        "ok-fixture".to_owned(),
        fixture::CONFIG.as_bytes().to_vec(),
    ));
    seeds.push(("config", "ok-every-section".to_owned(), full.into_bytes()));
    seeds.push((
        "config",
        "refused-unknown-key".to_owned(),
        format!("{}\nunknown = 1\n", fixture::CONFIG).into_bytes(),
    ));
    seeds
}

/// The verifier of the fuzz fixture config.
fn verifier(runtime: &tokio::runtime::Runtime, config: &Config) -> Verifier {
    runtime
        .block_on(Verifier::new(
            &config.issuers,
            config.leeway,
            config.max_token_bytes,
            config.max_token_lifetime,
        ))
        .expect("verifier")
}

/// Whether `seed` of `target` passes the check its target starts with, and (for tokens)
/// verifies as an access token or a logout token.
fn accepted(
    runtime: &tokio::runtime::Runtime,
    (config, verifier): (&Config, &Verifier),
    target: &str,
    seed: &[u8],
) -> bool {
    let verifies = |token: &str| {
        let access = runtime.block_on(verifier.verify(token, NOW, TimeRule::Enforce));
        let logout = runtime.block_on(verifier.verify_logout_token(
            token,
            &config.backchannel_audiences,
            NOW,
        ));
        access.is_ok() || logout.is_ok()
    };
    let text = || String::from_utf8(seed.to_vec()).expect("UTF-8 seed");
    match target {
        "token_raw" => verifies(&text()),
        "token_claims" => {
            let (key, header, claims) = fixture::split_signed_input(seed).expect("split");
            verifies(&fixture::sign(key, &key.encoding_key(), header, claims))
        }
        "token_extract" => {
            let text = text();
            let headers = RequestHeaders::from_pairs(text.lines().filter_map(|line| {
                line.split_once(':')
                    .map(|(name, value)| (name, value.trim_start_matches(' ')))
            }));
            match extract_token(&headers, &config.token_sources, 1024) {
                Ok(Some(token)) => verifies(token),
                _ => false,
            }
        }
        "check_request" => {
            let view = CheckRequestView::decode(seed).expect("decodes");
            let request = CheckedRequest::from(view);
            match extract_token(
                request.headers(),
                &config.token_sources,
                config.max_token_bytes,
            ) {
                Ok(Some(token)) => verifies(token),
                _ => false,
            }
        }
        "admin_form" => {
            let mut lines = seed.splitn(3, |&b| b == b'\n');
            let content_type = lines.next().unwrap_or_default();
            let _authorization = lines.next();
            let body = lines.next().unwrap_or_default();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_bytes(content_type).expect("header value"),
            );
            match parse_form(&headers, body) {
                Ok(params) => params
                    .get("token")
                    .or(params.get("logout_token"))
                    .is_some_and(|token| verifies(token)),
                Err(_) => false,
            }
        }
        "set_parse" => {
            // `header JSON \0 claims JSON`, encoded as the target does (dummy signature).
            let nul = seed
                .iter()
                .position(|&b| b == 0)
                .expect("a NUL in the seed");
            let set = format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(&seed[..nul]),
                URL_SAFE_NO_PAD.encode(&seed[nul + 1..])
            );
            jwt_revoker::ssf::secevent::parse(set.as_bytes()).is_ok()
        }
        "config" => Config::parse(
            &text(),
            Path::new("seed.toml"),
            &fixture::fixtures_dir(),
            &Overrides::default(),
        )
        .is_ok(),
        other => panic!("seed for an unknown target {other}"),
    }
}

/// With `JWT_REVOKER_WRITE_FUZZ_SEEDS` set, writes every seed (once per run, before either
/// test reads them).
fn write_seeds_if_asked() {
    static WRITE: std::sync::Once = std::sync::Once::new();
    WRITE.call_once(|| {
        if std::env::var_os("JWT_REVOKER_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        for (target, name, bytes) in all_seeds() {
            let dir = seeds_dir().join(target);
            std::fs::create_dir_all(&dir).expect("seed dir");
            std::fs::write(dir.join(name), bytes).expect("write seed");
        }
    });
}

#[test]
fn fuzz_seeds_do_what_their_names_say() {
    write_seeds_if_asked();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = fixture::config();
    let verifier = verifier(&runtime, &config);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for target in [
        "token_raw",
        "token_claims",
        "token_extract",
        "check_request",
        "admin_form",
        "config",
        "set_parse",
    ] {
        let dir = seeds_dir().join(target);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("file name")
                .to_owned();
            let seed = std::fs::read(&path).expect("seed");
            let expect_ok = name.starts_with("ok-");
            assert!(
                expect_ok || name.starts_with("refused-"),
                "{target}/{name}: a seed name starts with ok- or refused-"
            );
            assert_eq!(
                accepted(&runtime, (&config, &verifier), target, &seed),
                expect_ok,
                "{target}/{name}"
            );
            *counts.entry(target.to_owned()).or_default() += 1;
        }
    }
    assert!(
        counts.values().all(|&n| n >= 2) && counts.len() == 7,
        "every target has seeds: {counts:?}"
    );
}

#[test]
fn every_generated_seed_is_committed() {
    write_seeds_if_asked();
    for (target, name, _) in all_seeds() {
        let path = seeds_dir().join(target).join(&name);
        assert!(
            path.is_file(),
            "{} is missing: run JWT_REVOKER_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds",
            path.display()
        );
    }
}
