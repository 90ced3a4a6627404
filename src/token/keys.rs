//! An issuer's verification keys: a JWKS from a file, inline JSON or a `jwks_uri` (fetched,
//! cached, refreshed in the background and on an unknown `kid`), plus an optional HMAC secret.
//!
//! Keys are only ever taken from the configuration: keys or key URLs offered inside a token's
//! header (`jwk`, `jku`, `x5u`, `x5c`) are never looked at.

use super::TokenError;
use crate::config::{IssuerConfig, KeySource, is_hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;

/// The most keys taken from one JWKS; a token without `kid` tries at most this many.
const MAX_JWKS_KEYS: usize = 64;
/// The largest JWKS document fetched from a `jwks_uri`.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long one `jwks_uri` fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest wait between two background fetches, whatever the configuration says.
const MIN_BACKGROUND_WAIT: Duration = Duration::from_secs(1);
/// The shortest HMAC secret accepted.
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Why an issuer's keys could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A JWKS or HMAC secret file could not be read.
    #[error("issuers[{index}].{field}: cannot read {}: {source}", path.display())]
    Read {
        /// The issuer's position in the configuration.
        index: usize,
        /// `jwks_file` or `hmac_secret_file`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A JWKS given in the configuration is not usable.
    #[error("issuers[{index}].{field}: invalid JWKS {origin}: {message}")]
    InvalidJwks {
        /// The issuer's position in the configuration.
        index: usize,
        /// `jwks_file` or `jwks`.
        field: &'static str,
        /// Where the JWKS came from (the file, or "given inline").
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The HMAC secret is too short.
    #[error(
        "issuers[{index}].hmac_secret_file: {} holds {len} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
        path.display()
    )]
    ShortSecret {
        /// The issuer's position in the configuration.
        index: usize,
        /// The file.
        path: PathBuf,
        /// Its length (without a final newline).
        len: usize,
    },
    /// The HTTP client for a `jwks_uri` could not be built.
    #[error("issuers[{index}].jwks_uri: cannot set up an HTTP client for {uri}: {message}")]
    HttpClient {
        /// The issuer's position in the configuration.
        index: usize,
        /// The URL.
        uri: String,
        /// Why.
        message: String,
    },
}

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self == Self::Rsa,
            ES256 => self == Self::P256,
            ES384 => self == Self::P384,
            EdDSA => self == Self::Ed25519,
            HS256 | HS384 | HS512 => self == Self::Hmac,
        }
    }
}

/// One verification key.
struct VerifyKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

impl VerifyKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// How strictly a JWKS is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// From the configuration: any bad key is an error.
    Config,
    /// From the network: bad keys are skipped with a warning.
    Remote,
}

/// The usable signing keys of one JWKS document.
struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    /// Reads a JWKS. `oct` keys, encryption keys and unsupported key types or curves are
    /// ignored; `label` names the issuer in warnings.
    fn parse(json: &[u8], strictness: Strictness, label: &str) -> Result<Self, String> {
        let document: Map<String, Value> =
            serde_json::from_slice(json).map_err(|e| format!("not a JSON object: {e}"))?;
        let Some(Value::Array(items)) = document.get("keys") else {
            return Err("no `keys` array".to_owned());
        };
        if items.len() > MAX_JWKS_KEYS {
            if strictness == Strictness::Config {
                return Err(format!("more than {MAX_JWKS_KEYS} keys"));
            }
            tracing::warn!(
                issuer = label,
                keys = items.len(),
                "jwks has too many keys; using the first {MAX_JWKS_KEYS}"
            );
        }
        let mut keys = Vec::new();
        for (position, item) in items.iter().take(MAX_JWKS_KEYS).enumerate() {
            match parse_jwk(item) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(message) if strictness == Strictness::Config => {
                    return Err(format!("keys[{position}]: {message}"));
                }
                Err(message) => {
                    tracing::warn!(issuer = label, position, %message, "skipping unusable jwk");
                }
            }
        }
        Ok(Self { keys })
    }
}

/// One JWK → a key; `Ok(None)` for a key we ignore (not for signatures, or a type we do not
/// support), `Err` for a broken one.
fn parse_jwk(value: &Value) -> Result<Option<VerifyKey>, String> {
    let Value::Object(jwk) = value else {
        return Err("not a JSON object".to_owned());
    };
    let text = |name: &str| match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(format!("`{name}` is not a string")),
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let text = text(name)?.ok_or_else(|| format!("`{name}` is missing"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    if text("use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    let alg = match text("alg")? {
        None => None,
        // An algorithm we do not verify with (RSA-OAEP, ES512, …): not a key for us.
        Some(name) => match Algorithm::from_str(name) {
            Ok(alg) => Some(alg),
            Err(_) => return Ok(None),
        },
    };
    let kty = text("kty")?.ok_or("`kty` is missing")?;
    let (kind, key) = match (kty, text("crv")?) {
        ("RSA", _) => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if !(256..=1024).contains(&significant) {
                return Err("RSA modulus must be 2048 to 8192 bits".to_owned());
            }
            if e.is_empty() || e.len() > 8 {
                return Err("bad RSA exponent".to_owned());
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (kind, size) = if curve == "P-256" {
                (KeyKind::P256, 32)
            } else {
                (KeyKind::P384, 48)
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("{curve} coordinates must be {size} bytes"));
            }
            // The uncompressed point, as `DecodingKey::from_ec_components` builds it.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("Ed25519 public key must be 32 bytes".to_owned());
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        ("EC" | "OKP", None) => return Err("`crv` is missing".to_owned()),
        // `oct` (HMAC secrets come only from hmac_secret_file), other curves, other types.
        _ => return Ok(None),
    };
    if let Some(alg) = alg {
        if !kind.fits(alg) {
            return Err(format!("`alg` {alg:?} does not fit a {kty} key"));
        }
    }
    Ok(Some(VerifyKey {
        kid: text("kid")?.map(str::to_owned),
        alg,
        kind,
        key,
    }))
}

/// Where an issuer's JWKS lives.
enum Jwks {
    /// Read once at start-up.
    Static(KeySet),
    /// Fetched from a `jwks_uri`; the background task ends when the sender is dropped.
    Remote {
        keys: Arc<RemoteKeys>,
        _stop: oneshot::Sender<()>,
    },
    /// Only an HMAC secret.
    None,
}

/// One issuer's keys.
pub(crate) struct IssuerKeys {
    jwks: Jwks,
    hmac: Option<VerifyKey>,
}

impl IssuerKeys {
    /// Sets up the keys of `config`, the issuer at position `index`: reads files, and fetches
    /// a `jwks_uri` once (a failed first fetch is logged, not an error) then keeps it fresh in
    /// a background task that lives as long as the returned value.
    pub(crate) async fn load(index: usize, config: &IssuerConfig) -> Result<Self, KeyError> {
        let hmac = match &config.hmac_secret_file {
            Some(path) => Some(read_hmac_secret(index, path)?),
            None => None,
        };
        let jwks = match &config.keys {
            KeySource::File(path) => {
                let json = std::fs::read(path).map_err(|source| KeyError::Read {
                    index,
                    field: "jwks_file",
                    path: path.clone(),
                    source,
                })?;
                let origin = format!("in {}", path.display());
                Jwks::Static(static_jwks(index, "jwks_file", origin, &json, config)?)
            }
            KeySource::Inline(json) => Jwks::Static(static_jwks(
                index,
                "jwks",
                "given inline".to_owned(),
                json.as_bytes(),
                config,
            )?),
            KeySource::Uri(uri) => {
                let keys = Arc::new(RemoteKeys::new(index, config, uri)?);
                keys.refresh(&mut *keys.last_fetch.lock().await).await;
                let (stop, stopped) = oneshot::channel();
                tokio::spawn(refresh_task(
                    Arc::clone(&keys),
                    config.jwks_refresh_interval,
                    stopped,
                ));
                Jwks::Remote { keys, _stop: stop }
            }
            KeySource::None => Jwks::None,
        };
        Ok(Self { jwks, hmac })
    }

    /// Whether keys are at hand (false while a `jwks_uri` has never been fetched).
    pub(crate) fn available(&self) -> bool {
        match &self.jwks {
            Jwks::Remote { keys, .. } => keys.current().is_some(),
            Jwks::Static(_) | Jwks::None => true,
        }
    }

    /// Finds the keys for a token's `kid` and `alg` and accepts the token if `check` (a
    /// signature check) passes with one of them. An unknown `kid` on a `jwks_uri` issuer
    /// triggers a rate-limited refresh, then one more lookup.
    pub(crate) async fn verify(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        check: impl Fn(&DecodingKey) -> bool,
    ) -> Result<(), TokenError> {
        match (&self.jwks, self.try_verify(kid, alg, &check)) {
            (
                Jwks::Remote { keys, .. },
                Err(TokenError::UnknownKey | TokenError::KeysUnavailable),
            ) => {
                keys.refresh_on_demand().await;
                self.try_verify(kid, alg, &check)
            }
            (_, result) => result,
        }
    }

    fn try_verify(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        check: &impl Fn(&DecodingKey) -> bool,
    ) -> Result<(), TokenError> {
        let remote;
        let (jwks, loaded) = match &self.jwks {
            Jwks::Static(set) => (Some(set), true),
            Jwks::Remote { keys, .. } => {
                remote = keys.current();
                (remote.as_deref(), remote.is_some())
            }
            Jwks::None => (None, true),
        };
        let jwks_keys = jwks.map(|set| set.keys.as_slice()).unwrap_or_default();
        let try_keys = |mut keys: Vec<&VerifyKey>| {
            keys.retain(|key| key.fits(alg));
            if keys.is_empty() {
                Err(TokenError::KeyTypeMismatch)
            } else if keys.into_iter().any(|key| check(&key.key)) {
                Ok(())
            } else {
                Err(TokenError::BadSignature)
            }
        };
        if let Some(kid) = kid {
            let named: Vec<&VerifyKey> = jwks_keys
                .iter()
                .filter(|key| key.kid.as_deref() == Some(kid))
                .collect();
            if !named.is_empty() {
                return try_keys(named);
            }
        }
        // No `kid`, or one that names no JWKS key (an HMAC secret has no kid): every key that
        // fits the algorithm.
        let candidates: Vec<&VerifyKey> = jwks_keys
            .iter()
            .chain(self.hmac.as_ref())
            .filter(|key| key.fits(alg))
            .collect();
        if candidates.is_empty() {
            return Err(if !loaded && !is_hmac(alg) {
                TokenError::KeysUnavailable
            } else {
                TokenError::UnknownKey
            });
        }
        if kid.is_some() && !is_hmac(alg) {
            return Err(TokenError::UnknownKey);
        }
        try_keys(candidates)
    }
}

fn static_jwks(
    index: usize,
    field: &'static str,
    origin: String,
    json: &[u8],
    config: &IssuerConfig,
) -> Result<KeySet, KeyError> {
    let invalid = |message: String| KeyError::InvalidJwks {
        index,
        field,
        origin: origin.clone(),
        message,
    };
    let set = KeySet::parse(json, Strictness::Config, &config.issuer).map_err(invalid)?;
    let asymmetric = config.algorithms.iter().filter(|alg| !is_hmac(**alg));
    let mut unusable = asymmetric.filter(|alg| !set.keys.iter().any(|key| key.fits(**alg)));
    if let Some(alg) = unusable.next() {
        return Err(invalid(format!(
            "no key for {alg:?}, one of the issuer's algorithms"
        )));
    }
    Ok(set)
}

fn read_hmac_secret(index: usize, path: &PathBuf) -> Result<VerifyKey, KeyError> {
    let mut secret = std::fs::read(path).map_err(|source| KeyError::Read {
        index,
        field: "hmac_secret_file",
        path: path.clone(),
        source,
    })?;
    // A final newline is the file's, not the secret's.
    if secret.last() == Some(&b'\n') {
        secret.pop();
        if secret.last() == Some(&b'\r') {
            secret.pop();
        }
    }
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(KeyError::ShortSecret {
            index,
            path: path.clone(),
            len: secret.len(),
        });
    }
    Ok(VerifyKey {
        kid: None,
        alg: None,
        kind: KeyKind::Hmac,
        key: DecodingKey::from_secret(&secret),
    })
}

/// A JWKS fetched from a URL.
struct RemoteKeys {
    issuer: String,
    uri: String,
    client: reqwest::Client,
    min_refresh_interval: Duration,
    /// The last good key set; `None` until a fetch succeeds.
    current: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch started; held during a fetch so that only one runs at a time.
    last_fetch: Mutex<Option<Instant>>,
}

impl RemoteKeys {
    fn new(index: usize, config: &IssuerConfig, uri: &str) -> Result<Self, KeyError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("jwt-revoker/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() != "https" {
                    attempt.error("redirect to a non-https URL")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| KeyError::HttpClient {
                index,
                uri: uri.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            issuer: config.issuer.clone(),
            uri: uri.to_owned(),
            client,
            min_refresh_interval: config.jwks_min_refresh_interval,
            current: RwLock::new(None),
            last_fetch: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches now and keeps the result if it is good; `last_fetch` is the guarded time of the
    /// last fetch. Returns whether new keys were stored.
    async fn refresh(&self, last_fetch: &mut Option<Instant>) -> bool {
        *last_fetch = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                tracing::debug!(issuer = %self.issuer, uri = %self.uri, keys = set.keys.len(), "jwks fetched");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                true
            }
            Err(message) if self.current().is_some() => {
                tracing::warn!(issuer = %self.issuer, uri = %self.uri, error = %message, "jwks refresh failed; keeping the previous keys");
                false
            }
            Err(message) => {
                tracing::error!(issuer = %self.issuer, uri = %self.uri, error = %message, "jwks fetch failed; this issuer's tokens are refused until a fetch succeeds");
                false
            }
        }
    }

    /// Refreshes for an unknown `kid`, unless a fetch started less than
    /// `jwks_min_refresh_interval` ago. Waits for a fetch already running.
    async fn refresh_on_demand(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return;
        }
        self.refresh(&mut last_fetch).await;
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.uri)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let too_large = || format!("response larger than {MAX_JWKS_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let set = KeySet::parse(&body, Strictness::Remote, &self.issuer)?;
        if set.keys.is_empty() {
            return Err("no usable signing key in the JWKS".to_owned());
        }
        Ok(set)
    }
}

/// Re-fetches every `interval` (retrying sooner while no fetch has succeeded) until `stop`
/// resolves, which happens when its sender — owned by the issuer's keys — is dropped.
async fn refresh_task(keys: Arc<RemoteKeys>, interval: Duration, mut stop: oneshot::Receiver<()>) {
    loop {
        let wait = if keys.current().is_some() {
            interval
        } else {
            keys.min_refresh_interval.min(interval)
        };
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(wait.max(MIN_BACKGROUND_WAIT)) => {}
        }
        keys.refresh(&mut *keys.last_fetch.lock().await).await;
    }
}
