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
use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
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
/// How long a Check or a logout waits for a fetch triggered by an unknown `kid` (below the
/// 250 ms ext_authz timeout of the shipped Envoy configurations); the fetch itself goes on,
/// for up to [`FETCH_TIMEOUT`], and a retry finds its keys.
pub(crate) const ON_DEMAND_WAIT: Duration = Duration::from_millis(200);
/// Fetches triggered by unknown `kid`s allowed per `jwks_min_refresh_interval` (whatever the
/// start-up and periodic fetches did), so that a flood of random `kid`s stays cheap. When they
/// are spent, one deferred fetch takes the next slot that frees (see
/// [`RemoteKeys::refresh_on_demand`]), so a flood cannot keep a new key unknown.
const ON_DEMAND_BURST: usize = 3;

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
    if let Some(alg) = alg
        && !kind.fits(alg)
    {
        return Err(format!("`alg` {alg:?} does not fit a {kty} key"));
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
    ///
    /// `generation` is bumped whenever a fetched key set differs from the one before, so
    /// that verifications made with keys since withdrawn can be told apart.
    pub(crate) async fn load(
        index: usize,
        config: &IssuerConfig,
        generation: Arc<AtomicU64>,
    ) -> Result<Self, KeyError> {
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
                let keys = Arc::new(RemoteKeys::new(index, config, uri, generation)?);
                keys.refresh(&mut *keys.turn.lock().await).await;
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
    #[cfg(test)]
    pub(crate) fn available(&self) -> bool {
        match &self.jwks {
            Jwks::Remote { keys, .. } => keys.current().is_some(),
            Jwks::Static(_) | Jwks::None => true,
        }
    }

    /// Finds the keys for a token's `kid` and `alg` and accepts the token if `check` (a
    /// signature check) passes with one of them.
    ///
    /// An unknown `kid` on a `jwks_uri` issuer triggers a fetch at once (one at a time:
    /// concurrent callers wait for the one running; at most [`ON_DEMAND_BURST`] per
    /// `jwks_min_refresh_interval`, then one deferred fetch as soon as the budget allows),
    /// waited for up to [`ON_DEMAND_WAIT`], then one more lookup. A `kid` still unknown is
    /// [`TokenError::UnknownKey`] only when a key set from a fetch that *began* after the
    /// lookup missed lacks it; when no such key set could be had (the fetch failed, took too
    /// long, or the budget is spent) it is [`TokenError::KeysUnavailable`]: the key may well
    /// exist, so the caller must answer "retry", not "invalid".
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
                let found = || {
                    !matches!(
                        self.try_verify(kid, alg, &check),
                        Err(TokenError::UnknownKey | TokenError::KeysUnavailable)
                    )
                };
                let fresh = tokio::time::timeout(ON_DEMAND_WAIT, keys.refresh_on_demand(found))
                    .await
                    .unwrap_or(false);
                match self.try_verify(kid, alg, &check) {
                    Err(TokenError::UnknownKey) if !fresh => Err(TokenError::KeysUnavailable),
                    result => result,
                }
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
        let remote = match &self.jwks {
            Jwks::Remote { keys, .. } => keys.current(),
            Jwks::Static(_) | Jwks::None => None,
        };
        let (jwks_keys, loaded): (&[VerifyKey], bool) = match &self.jwks {
            Jwks::Static(set) => (&set.keys, true),
            Jwks::Remote { .. } => (
                remote.as_deref().map_or(&[], |set| &set.keys),
                remote.is_some(),
            ),
            Jwks::None => (&[], true),
        };
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
                // The named key must fit the algorithm: an HS256 token naming an RSA key is
                // the key-confusion attack.
                return try_keys(named);
            }
        }
        // No `kid`, or one that names no JWKS key.
        if is_hmac(alg) {
            // The HMAC secret has no kid: it answers for any kid the JWKS does not hold.
            return match &self.hmac {
                Some(secret) => try_keys(vec![secret]),
                None => Err(TokenError::UnknownKey),
            };
        }
        if !loaded {
            return Err(TokenError::KeysUnavailable);
        }
        if kid.is_some() {
            return Err(TokenError::UnknownKey);
        }
        // No `kid`: every key that fits the algorithm (at most MAX_JWKS_KEYS).
        let fitting: Vec<&VerifyKey> = jwks_keys.iter().filter(|key| key.fits(alg)).collect();
        if fitting.is_empty() {
            Err(TokenError::UnknownKey)
        } else {
            try_keys(fitting)
        }
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
    /// Held for the length of a fetch, so that only one runs at a time.
    turn: Arc<Mutex<FetchTurn>>,
    /// How many fetches have started (counted under `turn`, so a caller holding `turn` knows
    /// that every fetch counted has ended), and whether the last one succeeded.
    started: AtomicU64,
    last_fetch_ok: AtomicBool,
    /// When the recent fetches triggered by unknown `kid`s started (at most
    /// [`ON_DEMAND_BURST`], within `min_refresh_interval`).
    on_demand: std::sync::Mutex<VecDeque<Instant>>,
    /// SHA-256 of the last good JWKS document, to notice when it changes.
    last_digest: std::sync::Mutex<Option<Vec<u8>>>,
    /// Bumped when the key set changes (shared by every issuer of a verifier).
    generation: Arc<AtomicU64>,
}

impl RemoteKeys {
    fn new(
        index: usize,
        config: &IssuerConfig,
        uri: &str,
        generation: Arc<AtomicU64>,
    ) -> Result<Self, KeyError> {
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
            turn: Arc::new(Mutex::new(FetchTurn::default())),
            started: AtomicU64::new(0),
            last_fetch_ok: AtomicBool::new(false),
            on_demand: std::sync::Mutex::new(VecDeque::with_capacity(ON_DEMAND_BURST)),
            last_digest: std::sync::Mutex::new(None),
            generation,
        })
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches now and keeps the result if it is good; `_turn` proves that the caller holds
    /// [`Self::turn`]. Returns whether new keys were stored.
    async fn refresh(&self, _turn: &mut FetchTurn) -> bool {
        self.started.fetch_add(1, Ordering::AcqRel);
        let stored = self.fetch_and_store().await;
        self.last_fetch_ok.store(stored, Ordering::Release);
        stored
    }

    async fn fetch_and_store(&self) -> bool {
        match self.fetch().await {
            Ok((set, digest)) => {
                tracing::debug!(issuer = %self.issuer, uri = %self.uri, keys = set.keys.len(), "jwks fetched");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                let mut last = self
                    .last_digest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.as_ref().is_some_and(|previous| *previous != digest) {
                    tracing::info!(issuer = %self.issuer, uri = %self.uri, "jwks changed; cached verifications are dropped");
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                *last = Some(digest);
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

    /// Refreshes for an unknown `kid` the caller has just looked up: waits for a fetch
    /// already running, then starts one unless a fetch that began after the lookup has ended
    /// meanwhile (its keys are the freshest there are), the keys now hold what the caller
    /// looks for (`found`: a fetch under way at the lookup brought it), or the budget is
    /// spent. Returns whether a fetch that began after the lookup stored a key set (or `found`
    /// holds): a fetch that was under way at the lookup may have got the JWKS from before the
    /// new key, so its key set lacking the `kid` proves nothing. The fetch runs in its own
    /// task, so a caller that stops waiting (see [`ON_DEMAND_WAIT`]) does not cancel it.
    ///
    /// With the budget spent the answer is `false` at once, and one deferred fetch is armed
    /// (at most one per issuer, whatever the number of callers) to run when the oldest slot of
    /// the budget frees: however many random `kid`s use up the budget, a new key is found
    /// within `min_refresh_interval`, and a retry then verifies without a fetch.
    async fn refresh_on_demand(self: &Arc<Self>, found: impl Fn() -> bool) -> bool {
        let seen = self.started.load(Ordering::Acquire);
        let mut turn = Arc::clone(&self.turn).lock_owned().await;
        if self.started.load(Ordering::Acquire) != seen {
            // A fetch began after the lookup and, since this caller holds the turn, has ended.
            return self.last_fetch_ok.load(Ordering::Acquire);
        }
        if found() {
            return true;
        }
        if let Err(frees_at) = self.take_on_demand_budget() {
            tracing::debug!(issuer = %self.issuer, "unknown kid: jwks fetch budget spent; fetching when it allows");
            self.defer(&mut turn, seen, frees_at);
            return false;
        }
        let keys = Arc::clone(self);
        tokio::spawn(async move { keys.refresh(&mut turn).await })
            .await
            .unwrap_or(false)
    }

    /// Arms the deferred fetch for a caller that saw `seen` fetches started, unless it is
    /// armed already (then it also serves this caller).
    fn defer(self: &Arc<Self>, turn: &mut FetchTurn, seen: u64, at: Instant) {
        match &mut turn.deferred {
            Some(need) => *need = (*need).max(seen),
            None => {
                turn.deferred = Some(seen);
                tokio::spawn(deferred_refresh(Arc::downgrade(self), at));
            }
        }
    }

    /// Takes one of the [`ON_DEMAND_BURST`] fetches allowed per `min_refresh_interval`; when
    /// they are spent, tells when the oldest frees.
    fn take_on_demand_budget(&self) -> Result<(), Instant> {
        let mut recent = self
            .on_demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while recent
            .front()
            .is_some_and(|at| at.elapsed() >= self.min_refresh_interval)
        {
            recent.pop_front();
        }
        if recent.len() >= ON_DEMAND_BURST {
            let oldest = recent.front().copied().unwrap_or_else(Instant::now);
            return Err(oldest + self.min_refresh_interval);
        }
        recent.push_back(Instant::now());
        Ok(())
    }

    /// Fetches and parses the JWKS; returns it with the SHA-256 of the document.
    async fn fetch(&self) -> Result<(KeySet, Vec<u8>), String> {
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
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        Ok((set, digest.as_ref().to_vec()))
    }
}

/// Guarded by [`RemoteKeys::turn`], which is held for the length of a fetch.
#[derive(Debug, Default)]
struct FetchTurn {
    /// Set while a deferred fetch is armed: the highest count of started fetches seen by a
    /// caller that found the budget spent. Any fetch started after that serves them all.
    deferred: Option<u64>,
}

/// The deferred fetch (see [`RemoteKeys::refresh_on_demand`]): at `at`, takes the budget slot
/// that freed and fetches, unless a fetch began after every caller it serves looked up its
/// `kid`. Holds the keys only weakly while it waits, so it ends with them.
async fn deferred_refresh(keys: Weak<RemoteKeys>, mut at: Instant) {
    loop {
        tokio::time::sleep_until(at).await;
        let Some(keys) = keys.upgrade() else {
            return;
        };
        let mut turn = keys.turn.lock().await;
        let Some(need) = turn.deferred else {
            return;
        };
        if keys.started.load(Ordering::Acquire) > need {
            turn.deferred = None;
            return;
        }
        match keys.take_on_demand_budget() {
            Ok(()) => {
                turn.deferred = None;
                tracing::debug!(issuer = %keys.issuer, "unknown kid: deferred jwks fetch");
                keys.refresh(&mut turn).await;
                return;
            }
            // Not expected (only fetches started under the turn take slots, and none started
            // since this was armed); wait for the next slot, which frees strictly later.
            Err(next) => at = next,
        }
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
        keys.refresh(&mut *keys.turn.lock().await).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_tokens::*;
    use crate::token::{TimeRule, Verifier};
    use serde_json::json;

    async fn load(config: &IssuerConfig) -> Result<IssuerKeys, KeyError> {
        IssuerKeys::load(3, config, Arc::default()).await
    }

    fn inline(jwks: &Value) -> IssuerConfig {
        issuer_with_jwks(KeySource::Inline(jwks.to_string()))
    }

    fn fixture_keys() -> Vec<Value> {
        let jwks: Value = serde_json::from_str(&jwks_json()).expect("jwks");
        jwks["keys"].as_array().expect("keys").clone()
    }

    #[tokio::test]
    async fn a_missing_jwks_file_is_named() {
        let config = issuer_with_jwks(KeySource::File(fixture("no-such-jwks.json")));
        let message = load(&config).await.err().expect("error").to_string();
        assert!(
            message.starts_with("issuers[3].jwks_file: cannot read "),
            "{message}"
        );
        assert!(message.contains("no-such-jwks.json"), "{message}");
    }

    #[tokio::test]
    async fn an_invalid_jwks_file_is_named() {
        let config = issuer_with_jwks(KeySource::File(fixture("keys/rsa.pub.pem")));
        let message = load(&config).await.err().expect("error").to_string();
        assert!(
            message.starts_with("issuers[3].jwks_file: invalid JWKS in "),
            "{message}"
        );
        assert!(message.contains("rsa.pub.pem"), "{message}");
    }

    #[tokio::test]
    async fn broken_keys_in_a_configured_jwks_are_errors() {
        let mut rsa = fixture_keys()[0].clone();
        rsa["alg"] = json!("ES256");
        let mut short_ec = fixture_keys()[2].clone();
        short_ec["x"] = json!("AAAA");
        let mut bad_b64 = fixture_keys()[4].clone();
        bad_b64["x"] = json!("not base64!");
        let mut small_rsa = fixture_keys()[0].clone();
        small_rsa["n"] = json!(b64(&[0xff; 128]));
        for (key, needle) in [
            (rsa, "does not fit"),
            (short_ec, "32 bytes"),
            (bad_b64, "base64url"),
            (small_rsa, "2048"),
            (json!({"kty": "EC", "x": "AA", "y": "AA"}), "crv"),
            (json!({"kid": "x"}), "kty"),
            (json!("text"), "object"),
        ] {
            let config = inline(&json!({"keys": [key]}));
            let message = load(&config).await.err().expect("error").to_string();
            assert!(
                message.starts_with("issuers[3].jwks: invalid JWKS given inline: keys[0]"),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        }
        for document in [json!([]), json!({"keys": {}}), json!({})] {
            assert!(load(&inline(&document)).await.is_err(), "{document}");
        }
    }

    #[tokio::test]
    async fn oct_encryption_and_unsupported_keys_are_ignored() {
        let mut keys = vec![
            json!({"kty": "oct", "k": b64(&hmac_secret()), "alg": "HS256", "kid": "hmac"}),
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
            json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "AA", "e": "AQAB"}),
            json!({"kty": "XYZ"}),
        ];
        let mut enc = fixture_keys()[0].clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc-1");
        keys.push(enc);
        let set = KeySet::parse(
            json!({ "keys": keys }).to_string().as_bytes(),
            Strictness::Config,
            "test",
        )
        .expect("parsed");
        assert!(set.keys.is_empty());
        // An issuer whose JWKS has no key for one of its algorithms does not start.
        let mut config = inline(&json!({ "keys": keys }));
        config.algorithms = vec![Algorithm::RS256];
        let message = load(&config).await.err().expect("error").to_string();
        assert!(message.contains("no key for RS256"), "{message}");
        // The oct key is never used: an HS256 token signed with it has no issuer key.
        let mut with_oct = fixture_keys();
        with_oct.push(keys[0].clone());
        let mut config = inline(&json!({ "keys": with_oct }));
        config.algorithms.push(Algorithm::HS256);
        let keys = load(&config).await.expect("keys");
        let result = keys.verify(Some("hmac"), Algorithm::HS256, |_| true).await;
        assert_eq!(result, Err(TokenError::UnknownKey));
    }

    #[tokio::test]
    async fn too_many_keys_are_refused_in_config_and_truncated_remotely() {
        let many: Vec<Value> =
            std::iter::repeat_n(fixture_keys()[0].clone(), MAX_JWKS_KEYS + 1).collect();
        let json = json!({ "keys": many }).to_string();
        assert!(KeySet::parse(json.as_bytes(), Strictness::Config, "t").is_err());
        let set = KeySet::parse(json.as_bytes(), Strictness::Remote, "t").expect("set");
        assert_eq!(set.keys.len(), MAX_JWKS_KEYS);
    }

    #[tokio::test]
    async fn hmac_secrets_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = hmac_issuer();

        config.hmac_secret_file = Some(dir.path().join("missing"));
        let message = load(&config).await.err().expect("error").to_string();
        assert!(
            message.starts_with("issuers[3].hmac_secret_file: cannot read "),
            "{message}"
        );
        assert!(message.contains("missing"), "{message}");

        let short = dir.path().join("short");
        std::fs::write(&short, format!("{}\n", "s".repeat(31))).expect("write");
        config.hmac_secret_file = Some(short);
        let message = load(&config).await.err().expect("error").to_string();
        assert!(message.contains("holds 31 bytes; at least 32"), "{message}");

        let exact = dir.path().join("exact");
        std::fs::write(&exact, "s".repeat(32)).expect("write");
        config.hmac_secret_file = Some(exact);
        assert!(load(&config).await.is_ok());
    }

    #[tokio::test]
    async fn inline_jwks_verifies_like_the_file() {
        let config = issuer_with_jwks(KeySource::Inline(jwks_json()));
        let verifier = Verifier::new(
            &[config],
            Duration::ZERO,
            8192,
            Duration::from_secs(24 * 3600),
        )
        .await
        .expect("verifier");
        let token = TestKey::Ec384.mint(&TestKey::Ec384.claims());
        assert!(
            verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .is_ok()
        );
    }

    fn uri_issuer(url: &str, min_refresh: Duration) -> IssuerConfig {
        let mut config = issuer_with_jwks(KeySource::Uri(url.to_owned()));
        config.jwks_min_refresh_interval = min_refresh;
        config
    }

    async fn uri_verifier(url: &str, min_refresh: Duration) -> Verifier {
        Verifier::new(
            &[uri_issuer(url, min_refresh)],
            Duration::ZERO,
            8192,
            Duration::from_secs(24 * 3600),
        )
        .await
        .expect("verifier")
    }

    async fn verify(verifier: &Verifier, key: TestKey) -> Result<(), TokenError> {
        let token = key.mint(&key.claims());
        verifier
            .verify(&token, NOW, TimeRule::Enforce)
            .await
            .map(drop)
    }

    /// Retries `verify` until it passes (each attempt may trigger a rate-limited refresh).
    async fn eventually_verifies(verifier: &Verifier, key: TestKey) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(error) = verify(verifier, key).await {
            assert!(Instant::now() < deadline, "still refused: {error}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn jwks_uri_is_fetched_once_at_start() {
        let server = TestHttpServer::start(200, &jwks_json()).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        assert_eq!(server.hits(), 1);
        assert!(verifier.keys_available());
        for key in [
            TestKey::Rsa,
            TestKey::RsaPss,
            TestKey::Ec256,
            TestKey::Ec384,
            TestKey::Ed25519,
        ] {
            assert_eq!(verify(&verifier, key).await, Ok(()), "{key:?}");
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_triggers_a_fetch_at_once_within_a_small_budget() {
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        assert_eq!(server.hits(), 1);
        assert_eq!(verify(&verifier, TestKey::Rsa).await, Ok(()));
        // The IdP rotates in a new key and signs with it at once: the first token naming it
        // triggers a fetch right away, even just after the start-up fetch.
        server.reply(200, &jwks_json());
        assert_eq!(verify(&verifier, TestKey::Ec256).await, Ok(()));
        assert_eq!(server.hits(), 2);
        // The key set changed: verifications cached under the old one no longer count.
        assert_eq!(verifier.key_generation(), 1);
        // Random kids: each fetches while the budget lasts (a fresh key set lacks them: an
        // invalid token); then no more fetches, and a kid that cannot be checked is
        // "unavailable", never "invalid".
        for _ in 1..ON_DEMAND_BURST {
            assert_eq!(
                verify(&verifier, TestKey::Untrusted).await,
                Err(TokenError::UnknownKey)
            );
        }
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
        for _ in 0..20 {
            assert_eq!(
                verify(&verifier, TestKey::Untrusted).await,
                Err(TokenError::KeysUnavailable)
            );
        }
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
        // Known kids never cause a fetch.
        assert_eq!(verify(&verifier, TestKey::Ed25519).await, Ok(()));
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
    }

    #[tokio::test]
    async fn the_fetch_budget_comes_back_after_the_minimum_interval() {
        let min_refresh = Duration::from_millis(300);
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, min_refresh).await;
        for _ in 0..ON_DEMAND_BURST {
            assert_eq!(
                verify(&verifier, TestKey::Untrusted).await,
                Err(TokenError::UnknownKey)
            );
        }
        assert_eq!(
            verify(&verifier, TestKey::Ec256).await,
            Err(TokenError::KeysUnavailable)
        );
        server.reply(200, &jwks_json());
        tokio::time::sleep(min_refresh + Duration::from_millis(50)).await;
        assert_eq!(verify(&verifier, TestKey::Ec256).await, Ok(()));
    }

    /// Waits (in real time: the fetches go through real sockets) until `server` has answered
    /// `hits` requests, failing after `within`.
    async fn wait_for_hits(server: &TestHttpServer, hits: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while server.hits() < hits {
            assert!(
                Instant::now() < deadline,
                "{} of {hits} fetches after {within:?}",
                server.hits()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_flood_of_random_kids_delays_a_new_key_by_at_most_the_minimum_interval() {
        let min_refresh = Duration::from_millis(500);
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, min_refresh).await;
        let flood_began = Instant::now();
        // Random kids spend the budget of fetches...
        for _ in 0..ON_DEMAND_BURST {
            assert_eq!(
                verify(&verifier, TestKey::Untrusted).await,
                Err(TokenError::UnknownKey)
            );
        }
        // ...and keep coming: "retry", and no more fetches.
        for _ in 0..50 {
            assert_eq!(
                verify(&verifier, TestKey::Untrusted).await,
                Err(TokenError::KeysUnavailable)
            );
        }
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
        // The provider rotates; its first new-key token cannot be judged yet.
        server.reply(200, &jwks_json());
        assert_eq!(
            verify(&verifier, TestKey::Ec256).await,
            Err(TokenError::KeysUnavailable)
        );
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
        // With no further request, one fetch runs as soon as the oldest slot of the budget
        // frees (within the minimum interval of the flood's start, plus the fetch itself)...
        wait_for_hits(&server, 2 + ON_DEMAND_BURST, min_refresh * 3).await;
        let found_after = flood_began.elapsed();
        assert!(
            found_after >= min_refresh,
            "fetched before the budget allowed: {found_after:?}"
        );
        // ...and the retry verifies without a fetch of its own.
        eventually_verifies(&verifier, TestKey::Ec256).await;
        assert_eq!(server.hits(), 2 + ON_DEMAND_BURST);
        // The 51 refused callers shared that one deferred fetch: nothing more follows.
        tokio::time::sleep(min_refresh * 2).await;
        assert_eq!(server.hits(), 2 + ON_DEMAND_BURST);
    }

    #[tokio::test]
    async fn a_deferred_fetch_ends_with_its_keys() {
        let min_refresh = Duration::from_millis(300);
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, min_refresh).await;
        for _ in 0..=ON_DEMAND_BURST {
            let _ = verify(&verifier, TestKey::Untrusted).await;
        }
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST);
        drop(verifier);
        tokio::time::sleep(min_refresh * 2).await;
        assert_eq!(server.hits(), 1 + ON_DEMAND_BURST, "outlived its verifier");
    }

    #[tokio::test]
    async fn a_fetch_under_way_before_the_lookup_does_not_make_a_new_kid_invalid() {
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        // A fetch begins (for a random kid here; a periodic one alike) and is answered,
        // slowly, with the key set from before the rotation.
        server.delay(ON_DEMAND_WAIT * 3 / 4);
        let (early, late) = tokio::join!(verify(&verifier, TestKey::Untrusted), async {
            wait_for_hits(&server, 2, Duration::from_secs(5)).await;
            // While it is under way the provider rotates, and a new-key token comes.
            server.reply(200, &jwks_json());
            server.delay(Duration::ZERO);
            verify(&verifier, TestKey::Ec256).await
        });
        assert_eq!(early, Err(TokenError::UnknownKey));
        // That fetch ended after the lookup but began before it: its key set says nothing
        // about the new kid, which is looked up in a fetch of its own (or "retry" if that
        // outlasted the wait), never called invalid.
        assert_ne!(late, Err(TokenError::UnknownKey));
        eventually_verifies(&verifier, TestKey::Ec256).await;
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn concurrent_unknown_kids_share_one_fetch() {
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        server.reply(200, &jwks_json());
        let token = TestKey::Ec256.mint(&TestKey::Ec256.claims());
        let attempts = (0..8).map(|_| verifier.verify(&token, NOW, TimeRule::Enforce));
        let results = futures_util::future::join_all(attempts).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // The first caller fetched; the others waited for it and found the new key.
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn a_fetch_that_outlasts_the_wait_answers_unavailable_and_still_lands() {
        let server = TestHttpServer::start(200, &jwks_with(&["rsa-1"])).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        server.reply(200, &jwks_json());
        server.delay(ON_DEMAND_WAIT * 2);
        assert_eq!(
            verify(&verifier, TestKey::Ec256).await,
            Err(TokenError::KeysUnavailable)
        );
        // The fetch was not cancelled with the wait: a retry finds the new key.
        server.delay(Duration::ZERO);
        eventually_verifies(&verifier, TestKey::Ec256).await;
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn unreachable_jwks_uri_refuses_tokens_until_a_fetch_succeeds() {
        let server = TestHttpServer::start(503, "unavailable").await;
        let verifier = uri_verifier(&server.url, Duration::from_millis(200)).await;
        assert_eq!(server.hits(), 1);
        assert!(!verifier.keys_available());
        assert_eq!(
            verify(&verifier, TestKey::Rsa).await,
            Err(TokenError::KeysUnavailable)
        );
        server.reply(200, &jwks_json());
        eventually_verifies(&verifier, TestKey::Rsa).await;
        assert!(verifier.keys_available());
        // A failed refresh later keeps the last good keys; a kid it could not look up is
        // unavailable (retry), not invalid.
        server.reply(500, "oops");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            verify(&verifier, TestKey::Untrusted).await,
            Err(TokenError::KeysUnavailable)
        );
        assert_eq!(verify(&verifier, TestKey::Rsa).await, Ok(()));
    }

    #[tokio::test]
    async fn a_refused_connection_does_not_stop_start_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        drop(listener);
        let verifier = uri_verifier(&url, Duration::from_secs(3600)).await;
        assert_eq!(
            verify(&verifier, TestKey::Ec256).await,
            Err(TokenError::KeysUnavailable)
        );
        // HMAC tokens of an issuer that also has a jwks_uri do not need the JWKS.
        let mut config = uri_issuer(&url, Duration::from_secs(3600));
        config.algorithms.push(Algorithm::HS256);
        config.hmac_secret_file = Some(fixture("hmac-secret.txt"));
        let verifier = Verifier::new(
            &[config],
            Duration::ZERO,
            8192,
            Duration::from_secs(24 * 3600),
        )
        .await
        .expect("verifier");
        let token = sign(
            &json!({"alg": "HS256"}),
            &TestKey::Rsa.claims(),
            Algorithm::HS256,
            &TestKey::Hmac.encoding_key(),
        );
        assert!(
            verifier
                .verify(&token, NOW, TimeRule::Enforce)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn oversized_and_invalid_jwks_responses_are_rejected() {
        let big = format!(
            r#"{{"keys": [], "padding": "{}"}}"#,
            "x".repeat(MAX_JWKS_BYTES)
        );
        for body in [big.as_str(), "not json", r#"{"keys": []}"#, "{}"] {
            let server = TestHttpServer::start(200, body).await;
            let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
            assert!(
                !verifier.keys_available(),
                "{}",
                &body[..body.len().min(40)]
            );
        }
    }

    #[tokio::test]
    async fn broken_remote_keys_are_skipped() {
        let mut keys = fixture_keys();
        keys[2]["x"] = json!("AAAA");
        let server = TestHttpServer::start(200, &json!({ "keys": keys }).to_string()).await;
        let verifier = uri_verifier(&server.url, Duration::from_secs(3600)).await;
        assert_eq!(verify(&verifier, TestKey::Rsa).await, Ok(()));
        assert_eq!(
            verify(&verifier, TestKey::Ec256).await,
            Err(TokenError::UnknownKey)
        );
    }

    #[tokio::test]
    async fn background_refresh_runs_until_the_verifier_is_dropped() {
        let server = TestHttpServer::start(200, &jwks_json()).await;
        let mut config = uri_issuer(&server.url, Duration::from_secs(3600));
        config.jwks_refresh_interval = Duration::from_secs(1);
        let verifier = Verifier::new(
            &[config],
            Duration::ZERO,
            8192,
            Duration::from_secs(24 * 3600),
        )
        .await
        .expect("verifier");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.hits() < 3 {
            assert!(Instant::now() < deadline, "no background refresh");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(verifier);
        // Let a fetch that was already under way finish, then expect silence.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hits = server.hits();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(server.hits(), hits, "refresh task outlived its verifier");
    }
}
