//! Test utilities: the fixture keys, test issuers, and minting tokens with any algorithm, key,
//! header and claims (including hostile ones).

use crate::config::{IssuerConfig, KeySource};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The issuer of [`issuer_with_jwks`] tokens.
pub(crate) const ISSUER: &str = "https://issuer.test";
/// The issuer of [`hmac_issuer`] tokens.
pub(crate) const HMAC_ISSUER: &str = "https://hmac.test";
/// The audience both test issuers accept.
pub(crate) const AUDIENCE: &str = "api";
/// A fixed "now" for tests.
pub(crate) const NOW: u64 = 1_700_000_000;

/// A file under `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// A fixture signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TestKey {
    /// `keys/rsa.pem`, kid `rsa-1`, RS256.
    Rsa,
    /// `keys/rsa.pem`, kid `rsa-pss-1`, PS256.
    RsaPss,
    /// `keys/ec256.pem`, kid `ec256-1`, ES256.
    Ec256,
    /// `keys/ec384.pem`, kid `ec384-1`, ES384.
    Ec384,
    /// `keys/ed25519.pem`, kid `ed25519-1`, EdDSA.
    Ed25519,
    /// `hmac-secret.txt`, HS256, no kid.
    Hmac,
    /// `keys/rsa-untrusted.pem`, kid `rsa-untrusted`, RS256: no test issuer trusts it.
    Untrusted,
}

impl TestKey {
    /// Every key a test issuer trusts.
    pub(crate) const TRUSTED: [TestKey; 6] = [
        Self::Rsa,
        Self::RsaPss,
        Self::Ec256,
        Self::Ec384,
        Self::Ed25519,
        Self::Hmac,
    ];

    /// The algorithm the key signs with.
    pub(crate) fn alg(self) -> Algorithm {
        match self {
            Self::Rsa | Self::Untrusted => Algorithm::RS256,
            Self::RsaPss => Algorithm::PS256,
            Self::Ec256 => Algorithm::ES256,
            Self::Ec384 => Algorithm::ES384,
            Self::Ed25519 => Algorithm::EdDSA,
            Self::Hmac => Algorithm::HS256,
        }
    }

    /// Its `kid`, if it has one.
    pub(crate) fn kid(self) -> Option<&'static str> {
        match self {
            Self::Rsa => Some("rsa-1"),
            Self::RsaPss => Some("rsa-pss-1"),
            Self::Ec256 => Some("ec256-1"),
            Self::Ec384 => Some("ec384-1"),
            Self::Ed25519 => Some("ed25519-1"),
            Self::Hmac => None,
            Self::Untrusted => Some("rsa-untrusted"),
        }
    }

    /// The issuer that trusts it (the JWKS issuer for the untrusted key too).
    pub(crate) fn issuer(self) -> &'static str {
        match self {
            Self::Hmac => HMAC_ISSUER,
            _ => ISSUER,
        }
    }

    /// The private key.
    pub(crate) fn encoding_key(self) -> EncodingKey {
        let key = match self {
            Self::Rsa | Self::RsaPss => EncodingKey::from_rsa_pem(&read("keys/rsa.pem")),
            Self::Untrusted => EncodingKey::from_rsa_pem(&read("keys/rsa-untrusted.pem")),
            Self::Ec256 => EncodingKey::from_ec_pem(&read("keys/ec256.pem")),
            Self::Ec384 => EncodingKey::from_ec_pem(&read("keys/ec384.pem")),
            Self::Ed25519 => EncodingKey::from_ed_pem(&read("keys/ed25519.pem")),
            Self::Hmac => Ok(EncodingKey::from_secret(hmac_secret().as_slice())),
        };
        key.expect("fixture key")
    }

    /// The usual header: `alg`, `typ` and `kid`.
    pub(crate) fn header(self) -> Value {
        let mut header = json!({"alg": alg_name(self.alg()), "typ": "JWT"});
        if let Some(kid) = self.kid() {
            header["kid"] = json!(kid);
        }
        header
    }

    /// Valid claims for this key's issuer at [`NOW`]: `iss`, `sub`, `aud`, `iat`, `exp`.
    pub(crate) fn claims(self) -> Value {
        json!({
            "iss": self.issuer(), "sub": "alice", "aud": AUDIENCE,
            "iat": NOW - 10, "exp": NOW + 300
        })
    }

    /// A token with the usual header and `claims`.
    pub(crate) fn mint(self, claims: &Value) -> String {
        sign(&self.header(), claims, self.alg(), &self.encoding_key())
    }
}

/// The HMAC secret of the test issuer (the file without its final newline).
pub(crate) fn hmac_secret() -> Vec<u8> {
    let mut secret = read("hmac-secret.txt");
    if secret.last() == Some(&b'\n') {
        secret.pop();
    }
    secret
}

/// The JOSE name of `alg`.
pub(crate) fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .expect("alg")
        .as_str()
        .expect("name")
        .to_owned()
}

/// base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload` as JSON, base64url-encoded and joined.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    let header = b64(&serde_json::to_vec(header).expect("json"));
    let claims = b64(&serde_json::to_vec(claims).expect("json"));
    format!("{header}.{claims}")
}

/// A token with exactly this header and these claims, signed with `key` under `alg`
/// (whatever the header says).
pub(crate) fn sign(header: &Value, claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    sign_input(&signing_input(header, claims), alg, key)
}

/// `input` (`header.payload`, as encoded) with its signature appended.
pub(crate) fn sign_input(input: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

/// The test issuer that trusts `tests/fixtures/jwks.json` with every asymmetric algorithm.
pub(crate) fn issuer_with_jwks(keys: KeySource) -> IssuerConfig {
    IssuerConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned(), "other-api".to_owned()],
        keys,
        algorithms: vec![
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ],
        hmac_secret_file: None,
        jwks_refresh_interval: Duration::from_secs(3600),
        jwks_min_refresh_interval: Duration::from_secs(3600),
        allow_missing_iat: false,
        require_typ: None,
        revocable_claims: Vec::new(),
    }
}

/// The HS256 test issuer with `hmac-secret.txt`.
pub(crate) fn hmac_issuer() -> IssuerConfig {
    IssuerConfig {
        issuer: HMAC_ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        keys: KeySource::None,
        algorithms: vec![Algorithm::HS256],
        hmac_secret_file: Some(fixture("hmac-secret.txt")),
        jwks_refresh_interval: Duration::from_secs(3600),
        jwks_min_refresh_interval: Duration::from_secs(3600),
        allow_missing_iat: false,
        require_typ: None,
        revocable_claims: Vec::new(),
    }
}

/// Both test issuers, the first reading `jwks.json` from its file.
pub(crate) fn test_issuers() -> Vec<IssuerConfig> {
    vec![
        issuer_with_jwks(KeySource::File(fixture("jwks.json"))),
        hmac_issuer(),
    ]
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with the current status and
/// body, and counts requests. Stops when dropped.
pub(crate) struct TestHttpServer {
    /// `http://127.0.0.1:<port>/jwks.json`.
    pub(crate) url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    reply: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
    /// How long each answer waits, in milliseconds.
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHttpServer {
    /// Starts answering `status` with `body`.
    pub(crate) async fn start(status: u16, body: &str) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/jwks.json",
            listener.local_addr().expect("local addr")
        );
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reply = std::sync::Arc::new(std::sync::Mutex::new((status, body.to_owned())));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (task_hits, task_reply, task_delay) = (hits.clone(), reply.clone(), delay_ms.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (hits, reply) = (task_hits.clone(), task_reply.clone());
                let delay = task_delay.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = reply.lock().expect("reply").clone();
                    let delay = delay.load(Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    let response = format!(
                        "HTTP/1.1 {status} Test\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            hits,
            reply,
            delay_ms,
            task,
        }
    }

    /// Delays each answer by `delay` from now on.
    pub(crate) fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many requests were answered.
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers `status` with `body` from now on.
    pub(crate) fn reply(&self, status: u16, body: &str) {
        *self.reply.lock().expect("reply") = (status, body.to_owned());
    }
}

impl Drop for TestHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The text of `tests/fixtures/jwks.json`.
pub(crate) fn jwks_json() -> String {
    String::from_utf8(read("jwks.json")).expect("utf-8")
}

/// `tests/fixtures/jwks.json` reduced to the keys whose kid is in `kids`.
pub(crate) fn jwks_with(kids: &[&str]) -> String {
    let mut jwks: Value = serde_json::from_str(&jwks_json()).expect("jwks");
    let keys = jwks["keys"].as_array_mut().expect("keys");
    keys.retain(|key| kids.contains(&key["kid"].as_str().unwrap_or_default()));
    jwks.to_string()
}
