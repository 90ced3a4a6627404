//! The fixed world the fuzz targets run in, shared with the main crate's seed test
//! (`tests/fuzz_seeds.rs` includes this file with `#[path]`): the test issuers of
//! `tests/fixtures`, a fixed "now", and signing fuzzed header and claims bytes with a
//! fixture key so that a target reaches past the signature check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_revoker::config::{Config, Overrides};
use std::path::{Path, PathBuf};

/// The "now" of every verification, in Unix seconds (seed tokens are valid then).
pub const NOW: u64 = 1_700_000_000;

/// The issuer whose keys are `tests/fixtures/jwks.json`.
pub const ISSUER: &str = "https://issuer.test";
/// The HS256 issuer whose secret is `tests/fixtures/hmac-secret.txt`.
pub const HMAC_ISSUER: &str = "https://hmac.test";
/// The audience of access tokens.
pub const AUDIENCE: &str = "api";
/// The audience (client id) of back-channel logout tokens.
pub const LOGOUT_AUDIENCE: &str = "web";
/// The configured token header.
pub const TOKEN_HEADER: &str = "x-access-token";
/// The configured token cookie.
pub const TOKEN_COOKIE: &str = "access_token";

/// The configuration the targets verify with: both test issuers, back-channel logout for
/// both, the token header and cookie configured, `email` and `phone_number` revocable claims
/// of the first (so that claim reading is fuzzed too). Paths are relative to `tests/fixtures`.
pub const CONFIG: &str = r#"
[admin]
token_file = "admin-token.txt"

[token]
header = "x-access-token"
cookie = "access_token"

[[issuers]]
issuer = "https://issuer.test"
audiences = ["api"]
jwks_file = "jwks.json"
algorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
backchannel_audiences = ["web"]
revocable_claims = ["email", "phone_number"]

[[issuers]]
issuer = "https://hmac.test"
audiences = ["api"]
algorithms = ["HS256"]
hmac_secret_file = "hmac-secret.txt"
backchannel_audiences = ["web"]
"#;

/// `tests/fixtures`, found from either crate's manifest directory (the repository root, or
/// `fuzz/` in it).
pub fn fixtures_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("tests/fixtures");
    if here.is_dir() {
        return here;
    }
    manifest.join("../tests/fixtures")
}

/// [`CONFIG`], parsed and validated.
pub fn config() -> Config {
    Config::parse(
        CONFIG,
        Path::new("fuzz-fixture.toml"),
        &fixtures_dir(),
        &Overrides::default(),
    )
    .expect("the fuzz fixture config is valid")
}

/// A verifier for `config`'s issuers, built on `runtime`.
pub fn verifier(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
) -> jwt_revoker::token::Verifier {
    runtime
        .block_on(jwt_revoker::token::Verifier::new(
            &config.issuers,
            config.leeway,
            config.max_token_bytes,
            config.max_token_lifetime,
        ))
        .expect("the fixture verifier")
}

/// The fixture keys a target signs with: fast ones only (RSA signing costs ~1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// HS256 with `hmac-secret.txt` (trusted by [`HMAC_ISSUER`]).
    Hmac,
    /// EdDSA with `keys/ed25519.pem` (kid `ed25519-1` of [`ISSUER`]).
    Ed25519,
    /// ES256 with `keys/ec256.pem` (kid `ec256-1` of [`ISSUER`]).
    Ec256,
}

impl Key {
    /// Every key, in selector order.
    pub const ALL: [Key; 3] = [Key::Hmac, Key::Ed25519, Key::Ec256];

    /// The key a fuzz input's selector byte names.
    pub fn from_selector(selector: u8) -> Self {
        Self::ALL[usize::from(selector) % Self::ALL.len()]
    }

    /// The algorithm it signs with.
    pub fn alg(self) -> Algorithm {
        match self {
            Key::Hmac => Algorithm::HS256,
            Key::Ed25519 => Algorithm::EdDSA,
            Key::Ec256 => Algorithm::ES256,
        }
    }

    /// The private key, read from `tests/fixtures`.
    pub fn encoding_key(self) -> EncodingKey {
        let read = |name: &str| {
            std::fs::read(fixtures_dir().join(name)).expect("fixture key file is readable")
        };
        let key = match self {
            Key::Hmac => {
                let secret = read("hmac-secret.txt");
                Ok(EncodingKey::from_secret(secret.trim_ascii_end()))
            }
            Key::Ed25519 => EncodingKey::from_ed_pem(&read("keys/ed25519.pem")),
            Key::Ec256 => EncodingKey::from_ec_pem(&read("keys/ec256.pem")),
        };
        key.expect("fixture key is valid PEM")
    }
}

/// The compact JWS of `header` and `claims` (taken as bytes, not re-serialized, so that
/// whatever JSON the fuzzer wrote reaches the parser) signed with `key`.
pub fn sign(key: Key, encoding_key: &EncodingKey, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), encoding_key, key.alg())
        .expect("signing with a fixture key cannot fail");
    format!("{input}.{signature}")
}

/// Splits a `token_claims` input: a key selector byte, the header JSON, a NUL byte, the
/// claims JSON (NUL cannot occur in JSON text, so the split is unambiguous for real JSON).
pub fn split_signed_input(data: &[u8]) -> Option<(Key, &[u8], &[u8])> {
    let (&selector, rest) = data.split_first()?;
    let nul = rest.iter().position(|&b| b == 0)?;
    Some((Key::from_selector(selector), &rest[..nul], &rest[nul + 1..]))
}

/// Joins the parts of a `token_claims` input (the inverse of [`split_signed_input`]).
pub fn join_signed_input(key: Key, header: &[u8], claims: &[u8]) -> Vec<u8> {
    let selector = Key::ALL.iter().position(|k| *k == key).unwrap_or(0) as u8;
    let mut data = Vec::with_capacity(2 + header.len() + claims.len());
    data.push(selector);
    data.extend_from_slice(header);
    data.push(0);
    data.extend_from_slice(claims);
    data
}
