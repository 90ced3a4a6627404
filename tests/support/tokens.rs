//! Test JWTs: well-formed ones signed with the fixture keys in `tests/fixtures/keys/`, and
//! hand-built hostile ones (`alg: none`, HS256 keyed with the RSA public key, unknown kid,
//! a key no issuer trusts, garbage).
//!
//! The issuers and audience match the config written by [`super::server`]: RS256, PS256,
//! ES256, ES384 and EdDSA tokens are from [`ISSUER`], HS256 tokens from [`HMAC_ISSUER`].

use super::fixture;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The issuer whose keys are in `tests/fixtures/jwks.json`.
pub const ISSUER: &str = "https://issuer.test";
/// The HS256 issuer whose secret is `tests/fixtures/hmac-secret.txt`.
pub const HMAC_ISSUER: &str = "https://hmac.test";
/// The audience both test issuers accept.
pub const AUDIENCE: &str = "api";
/// How long [`claims`] tokens live, in seconds.
pub const TTL: u64 = 3600;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A `jti` no other call in this process returns.
pub fn unique_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "jti-{}-{}-{}",
        std::process::id(),
        now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Valid claims from [`ISSUER`] for `sub`: `aud`, `iat`, `nbf`, `exp` (now + [`TTL`]) and
/// a unique `jti`. Change fields with `claims["exp"] = json!(…)`.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + TTL,
        "jti": unique_jti(),
    })
}

/// [`claims`] with `iss` set to [`HMAC_ISSUER`].
pub fn hmac_claims(sub: &str) -> Value {
    let mut claims = claims(sub);
    claims["iss"] = json!(HMAC_ISSUER);
    claims
}

/// The fixture key that signs `alg`, and the kid `tests/fixtures/jwks.json` gives it.
pub fn fixture_key(alg: Algorithm) -> (EncodingKey, &'static str) {
    let pem = |file: &str| {
        let path = fixture(&format!("keys/{file}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    let loaded = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            EncodingKey::from_rsa_pem(&pem("rsa.pem")).map(|k| (k, "rsa-1"))
        }
        Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => {
            EncodingKey::from_rsa_pem(&pem("rsa.pem")).map(|k| (k, "rsa-pss-1"))
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem("ec256.pem")).map(|k| (k, "ec256-1")),
        Algorithm::ES384 => EncodingKey::from_ec_pem(&pem("ec384.pem")).map(|k| (k, "ec384-1")),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem("ed25519.pem")).map(|k| (k, "ed25519-1")),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            Ok((EncodingKey::from_secret(&hmac_secret()), "hmac-1"))
        }
    };
    loaded.unwrap_or_else(|e| panic!("load the fixture key for {alg:?}: {e}"))
}

/// The HS256 secret of [`HMAC_ISSUER`] (the file's contents, trailing newline removed).
pub fn hmac_secret() -> Vec<u8> {
    let path = fixture("hmac-secret.txt");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.trim_end().as_bytes().to_vec()
}

/// Signs `claims` with `alg` and `key`, putting `kid` (when given) in the header.
pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key)
        .unwrap_or_else(|e| panic!("sign a {alg:?} test token: {e}"))
}

/// Signs `claims` with the fixture key for `alg`, with header `kid`.
pub fn mint(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let (key, _) = fixture_key(alg);
    sign(alg, Some(kid), &key, claims)
}

/// Signs `claims` with the fixture key for `alg` under that key's own kid.
pub fn mint_alg(alg: Algorithm, claims: &Value) -> String {
    let (key, kid) = fixture_key(alg);
    sign(alg, Some(kid), &key, claims)
}

/// A valid token for `sub` in every algorithm the fixtures support, with its name.
pub fn every_algorithm(sub: &str) -> [(&'static str, String); 6] {
    let claims = claims(sub);
    [
        ("RS256", rs256(&claims)),
        ("PS256", ps256(&claims)),
        ("ES256", es256(&claims)),
        ("ES384", es384(&claims)),
        ("EdDSA", eddsa(&claims)),
        ("HS256", hs256(&hmac_claims(sub))),
    ]
}

/// An RS256 token (kid `rsa-1`).
pub fn rs256(claims: &Value) -> String {
    mint_alg(Algorithm::RS256, claims)
}

/// A PS256 token (kid `rsa-pss-1`).
pub fn ps256(claims: &Value) -> String {
    mint_alg(Algorithm::PS256, claims)
}

/// An ES256 token (kid `ec256-1`).
pub fn es256(claims: &Value) -> String {
    mint_alg(Algorithm::ES256, claims)
}

/// An ES384 token (kid `ec384-1`).
pub fn es384(claims: &Value) -> String {
    mint_alg(Algorithm::ES384, claims)
}

/// An EdDSA (Ed25519) token (kid `ed25519-1`).
pub fn eddsa(claims: &Value) -> String {
    mint_alg(Algorithm::EdDSA, claims)
}

/// An HS256 token signed with the HMAC issuer's secret, without a kid; pair it with
/// [`hmac_claims`].
pub fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&hmac_secret()),
        claims,
    )
}

/// A valid RS256 token for `sub` from [`ISSUER`].
pub fn valid(sub: &str) -> String {
    rs256(&claims(sub))
}

/// Joins base64url-encoded JSON `header` and `claims` and the raw `signature` bytes.
pub fn assemble(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An unsigned token: header `{"alg":"none"}`, empty signature.
pub fn alg_none(claims: &Value) -> String {
    assemble(&json!({"alg": "none", "typ": "JWT"}), claims, b"")
}

/// The algorithm-confusion attack: HS256 with the RSA public key's PEM bytes as the HMAC
/// secret, under the RSA key's kid `rsa-1`.
pub fn hs256_with_rsa_public_key(claims: &Value) -> String {
    let path = fixture("keys/rsa.pub.pem");
    let public_pem =
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(&public_pem),
        claims,
    )
}

/// RS256 with the right key but a kid no JWKS has.
pub fn unknown_kid(claims: &Value) -> String {
    mint(Algorithm::RS256, "no-such-kid", claims)
}

/// RS256 signed by `keys/rsa-untrusted.pem` (a key no test issuer trusts) but claiming
/// the trusted kid `rsa-1`: the signature does not verify.
pub fn untrusted_key(claims: &Value) -> String {
    let path = fixture("keys/rsa-untrusted.pem");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let key = EncodingKey::from_rsa_pem(&pem).expect("load the untrusted RSA key");
    sign(Algorithm::RS256, Some("rsa-1"), &key, claims)
}

/// RS256 signed by the untrusted key under its own kid `rsa-untrusted`.
pub fn untrusted_key_own_kid(claims: &Value) -> String {
    let path = fixture("keys/rsa-untrusted.pem");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let key = EncodingKey::from_rsa_pem(&pem).expect("load the untrusted RSA key");
    sign(Algorithm::RS256, Some("rsa-untrusted"), &key, claims)
}

/// A valid token with one byte of its signature changed.
pub fn tampered_signature(claims: &Value) -> String {
    let token = rs256(claims);
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let mut bytes = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    bytes[0] ^= 0x01;
    format!("{rest}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Strings that are not JWTs at all, each with a label for assertion messages.
pub fn garbage() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("one part", "abc".to_owned()),
        ("two parts", "abc.def".to_owned()),
        ("not base64", "!!!.???.***".to_owned()),
        ("four parts", format!("{}.x", valid("garbage"))),
        (
            "header not JSON",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                URL_SAFE_NO_PAD.encode("{}"),
                URL_SAFE_NO_PAD.encode("sig")
            ),
        ),
        ("oversized", "a".repeat(16_384)),
    ]
}
