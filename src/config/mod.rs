//! Configuration: the TOML file plus overrides from flags and environment, validated up front
//! into a typed [`Config`]. Every error names the key at fault.

mod claims;
mod feed;
mod metadata;
pub mod ssf;
mod store;

pub use feed::FeedAuth;
pub use metadata::MetadataClaims;
pub use ssf::{GtrConfig, SsfConfig, StreamConfig};
pub use store::{DEFAULT_REPLICATION_TIMEOUT, RedisConfig, RedisTopology, StoreConfig};

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use store::{RawStore, validate_store};

/// A configuration error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A key has a value that is not acceptable.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key, e.g. `issuers[0].algorithms`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The file's schema, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    authz_addr: Option<String>,
    admin_addr: Option<String>,
    metrics_addr: Option<String>,
    log_level: Option<String>,
    #[serde(default, with = "humantime_serde")]
    leeway: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_token_lifetime: Option<Duration>,
    max_token_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    token: RawTokenSources,
    #[serde(default)]
    response: RawResponse,
    #[serde(default)]
    replica: RawReplica,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    #[serde(default)]
    logout_routes: Vec<RawLogoutRoute>,
    #[serde(default)]
    tls: RawTls,
    feed: Option<feed::RawFeed>,
    #[serde(default)]
    ssf: ssf::RawSsf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    authz: Option<RawTlsFiles>,
    admin: Option<RawTlsFiles>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsFiles {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogoutRoute {
    method: Option<String>,
    path: Option<String>,
    issuer: Option<String>,
    revoke: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_file: Option<PathBuf>,
    #[serde(default)]
    allow_unauthenticated: bool,
    #[serde(default)]
    require_client_cert: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSources {
    header: Option<String>,
    cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    realm: Option<String>,
    #[serde(default)]
    strip_authorization: bool,
    #[serde(default)]
    claim_headers: BTreeMap<String, String>,
    dynamic_metadata: Option<metadata::RawMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    #[serde(default, with = "humantime_serde")]
    max_staleness: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    resync_interval: Option<Duration>,
    stale_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_file: Option<PathBuf>,
    jwks_uri: Option<String>,
    jwks: Option<toml::Value>,
    #[serde(default)]
    algorithms: Vec<String>,
    hmac_secret_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    jwks_refresh_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    jwks_min_refresh_interval: Option<Duration>,
    backchannel_audiences: Option<Vec<String>>,
    #[serde(default)]
    allow_missing_iat: bool,
    require_typ: Option<String>,
    #[serde(default)]
    revocable_claims: Vec<String>,
}

/// Values given on the command line or in `JWT_REVOKER_…` variables; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--authz-addr` / `JWT_REVOKER_AUTHZ_ADDR`.
    pub authz_addr: Option<String>,
    /// `--admin-addr` / `JWT_REVOKER_ADMIN_ADDR`.
    pub admin_addr: Option<String>,
    /// `--store-url` / `JWT_REVOKER_STORE_URL`.
    pub store_url: Option<String>,
    /// `--log-level` / `JWT_REVOKER_LOG_LEVEL`.
    pub log_level: Option<String>,
    /// `--metrics-addr` / `JWT_REVOKER_METRICS_ADDR`.
    pub metrics_addr: Option<String>,
    /// `JWT_REVOKER_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the ext_authz Check service listens.
    pub authz_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where the Prometheus `/metrics` endpoint listens.
    pub metrics_addr: SocketAddr,
    /// A `tracing` filter directive (`info`, `jwt_revoker=debug`, …).
    pub log_level: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The longest a token can live; the default lifetime of revocations by identifier.
    pub max_token_lifetime: Duration,
    /// Tokens longer than this are refused unread.
    pub max_token_bytes: usize,
    /// After SIGTERM, how long the server keeps serving while reporting not ready.
    pub shutdown_grace: Duration,
    /// Where revocations are kept.
    pub store: StoreConfig,
    /// Who may use the admin API.
    pub admin: AdminAuth,
    /// Where tokens are looked for besides `Authorization: Bearer`.
    pub token_sources: TokenSources,
    /// What allow and deny responses carry.
    pub response: ResponseConfig,
    /// How the local replica of the revocation set behaves when it falls behind.
    pub replica: ReplicaConfig,
    /// Verified-token cache capacity (entries); 0 disables the cache.
    pub cache_max_entries: u64,
    /// Verified-token cache capacity (bytes, as the cache counts them); 0 disables the cache.
    pub cache_max_bytes: u64,
    /// The trusted issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Issuer → the `aud` values its back-channel logout tokens may carry (the client ids it
    /// knows this deployment by); an issuer absent here has its logout tokens refused.
    pub backchannel_audiences: BTreeMap<String, Vec<String>>,
    /// Requests on which Check records a revocation of the caller's token, then allows it.
    pub logout_routes: Vec<LogoutRoute>,
    /// TLS on the gRPC ports.
    pub tls: TlsConfig,
    /// `[feed]`: who may follow the revocation feed; `None` serves no feed.
    pub feed: Option<FeedAuth>,
    /// OpenID Shared Signals streams (`[ssf]`).
    pub ssf: SsfConfig,
}

/// What a logout route revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutRevoke {
    /// The token presented.
    Token,
    /// Its session (`sid`); the token itself when it has no `sid`.
    Session,
    /// Its subject (`sub`), every token issued so far; the token itself when it has no `sub`.
    Subject,
}

/// A request (method and exact path, optionally for one issuer's tokens only) on which Check
/// revokes the presented token, its session or its subject before allowing the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRoute {
    /// The HTTP method, uppercase.
    pub method: String,
    /// The exact path, without query string.
    pub path: String,
    /// Only tokens of this issuer; `None` for every configured issuer.
    pub issuer: Option<String>,
    /// What is revoked.
    pub revoke: LogoutRevoke,
}

/// A PEM file read at start-up.
#[derive(Clone)]
pub struct PemFile {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Its contents.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the contents: one of these is a private key.
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A server certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// `cert_file`: the certificate chain, leaf first.
    pub cert: PemFile,
    /// `key_file`: the private key.
    pub key: PemFile,
}

/// TLS on one gRPC port.
#[derive(Debug, Clone)]
pub struct PortTls {
    /// The server's certificate and key.
    pub identity: TlsIdentity,
    /// CA certificates that client certificates must chain to; when set, a client without
    /// such a certificate is refused at the handshake (admin port only).
    pub client_ca: Option<PemFile>,
}

/// TLS on the gRPC ports; `None` serves plaintext (h2c).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// `[tls.authz]`.
    pub authz: Option<PortTls>,
    /// `[tls.admin]`.
    pub admin: Option<PortTls>,
}

/// Who may use the admin API.
#[derive(Clone)]
pub enum AdminAuth {
    /// Callers must send `authorization: Bearer <token>`.
    Token(String),
    /// Anyone may call (explicitly configured; logged loudly at start-up).
    Open,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Open => f.write_str("Open"),
        }
    }
}

/// Where tokens are looked for besides `Authorization: Bearer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSources {
    /// A request header (lowercase) carrying the raw token.
    pub header: Option<String>,
    /// A cookie carrying the raw token.
    pub cookie: Option<String>,
}

/// What allow and deny responses carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseConfig {
    /// The `realm` in `WWW-Authenticate`.
    pub realm: String,
    /// Request headers removed before the request goes upstream: with
    /// `response.strip_authorization`, `authorization` and the configured `token.header`.
    pub strip_headers: Vec<String>,
    /// With `response.strip_authorization`, the token sources whose every copy is removed
    /// per request: other spellings of `token.header`, and `token.cookie` cut out of `cookie`.
    pub strip_sources: Option<TokenSources>,
    /// Claim name → upstream request header (lowercase).
    pub claim_headers: BTreeMap<String, String>,
    /// Which verified claims go into the allow's `dynamic_metadata` (none by default).
    pub dynamic_metadata: MetadataClaims,
}

/// What a replica does once it has not heard from the store for longer than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// Refuse every request (fail closed).
    Deny,
    /// Keep answering from the last known revocation set.
    ServeStale,
}

/// How the local replica of the revocation set behaves when it falls behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// How long without news from the store before the replica counts as stale.
    pub max_staleness: Duration,
    /// What to do when stale.
    pub stale_policy: StalePolicy,
    /// How often a full snapshot is reloaded even when the feed is healthy (anti-entropy).
    pub resync_interval: Duration,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS file.
    File(PathBuf),
    /// A JWKS URL, fetched and cached.
    Uri(String),
    /// A JWKS document given inline (as JSON text).
    Inline(String),
    /// No JWKS: only an HMAC secret.
    None,
}

/// A trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted audiences; a token's `aud` must contain at least one.
    pub audiences: Vec<String>,
    /// Where the public keys come from.
    pub keys: KeySource,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The HMAC secret file, required for and only allowed with HS* algorithms.
    pub hmac_secret_file: Option<PathBuf>,
    /// How often a `jwks_uri` is re-fetched.
    pub jwks_refresh_interval: Duration,
    /// The window in which at most three fetches triggered by unknown `kid`s run.
    pub jwks_min_refresh_interval: Duration,
    /// Accept this issuer's tokens without `iat` (RFC 9068 makes it required). Revocations
    /// by identifier cannot be sure to outlive such tokens (README, *Revocations*).
    pub allow_missing_iat: bool,
    /// The JOSE `typ` every access token of this issuer must carry (e.g. `at+jwt`); `None`
    /// accepts no `typ`, `JWT` or `at+jwt` (see [`crate::token::typ`]).
    pub require_typ: Option<String>,
    /// The claims (besides `sub`, `sid`, `client_id`) by which this issuer's tokens can be
    /// revoked: revocations of kind `claim` name one of them (README, *Revocations*).
    pub revocable_claims: Vec<String>,
}

/// The default authorization address.
pub const DEFAULT_AUTHZ_ADDR: &str = "0.0.0.0:9191";
/// The default admin address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9192";
/// The default metrics address.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";

const SUPPORTED_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// How long the server keeps serving after SIGTERM unless `shutdown_grace` says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Config {
    /// Reads, parses and validates the file at `path`, then applies `overrides`.
    /// Relative paths in the file are resolved against the file's directory.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base, overrides)
    }

    /// Parses and validates TOML `text` (named `origin` in errors) with paths relative to `base`.
    pub fn parse(
        text: &str,
        origin: &Path,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        Self::validate(raw, base, overrides)
    }

    fn validate(raw: RawConfig, base: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let authz_addr = parse_addr(
            "authz_addr",
            overrides
                .authz_addr
                .as_deref()
                .or(raw.authz_addr.as_deref())
                .unwrap_or(DEFAULT_AUTHZ_ADDR),
        )?;
        let admin_addr = parse_addr(
            "admin_addr",
            overrides
                .admin_addr
                .as_deref()
                .or(raw.admin_addr.as_deref())
                .unwrap_or(DEFAULT_ADMIN_ADDR),
        )?;
        let metrics_addr = parse_addr(
            "metrics_addr",
            overrides
                .metrics_addr
                .as_deref()
                .or(raw.metrics_addr.as_deref())
                .unwrap_or(DEFAULT_METRICS_ADDR),
        )?;
        let log_level = overrides
            .log_level
            .clone()
            .or(raw.log_level)
            .unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| invalid("log_level", format!("not a valid log filter: {e}")))?;

        let leeway = raw.leeway.unwrap_or(Duration::from_secs(30));
        if leeway > Duration::from_secs(300) {
            return Err(invalid("leeway", "must be at most 5m"));
        }
        let max_token_lifetime = raw
            .max_token_lifetime
            .unwrap_or(Duration::from_secs(24 * 3600));
        if max_token_lifetime.is_zero() {
            return Err(invalid("max_token_lifetime", "must be greater than zero"));
        }
        let max_token_bytes = raw.max_token_bytes.unwrap_or(8192);
        if !(256..=65536).contains(&max_token_bytes) {
            return Err(invalid("max_token_bytes", "must be between 256 and 65536"));
        }

        let shutdown_grace = raw.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        if shutdown_grace > Duration::from_secs(300) {
            return Err(invalid("shutdown_grace", "must be at most 5m"));
        }
        let store = validate_store(raw.store, base, overrides.store_url.clone())?;
        let tls = validate_tls(raw.tls, raw.admin.require_client_cert, base)?;
        let admin = validate_admin(raw.admin, base, overrides)?;
        let feed = feed::validate_feed(raw.feed, &tls, base)?;
        let token_sources = validate_token_sources(raw.token)?;
        let response = validate_response(raw.response, &token_sources)?;
        let replica = validate_replica(raw.replica)?;
        let cache_max_entries = raw.cache.max_entries.unwrap_or(100_000);
        let cache_max_bytes = raw
            .cache
            .max_bytes
            .unwrap_or(crate::token::cache::DEFAULT_MAX_BYTES);

        if raw.issuers.is_empty() {
            return Err(invalid(
                "issuers",
                "at least one [[issuers]] entry is required",
            ));
        }
        let mut issuers = Vec::with_capacity(raw.issuers.len());
        let mut backchannel_audiences = BTreeMap::new();
        for (index, mut issuer) in raw.issuers.into_iter().enumerate() {
            let audiences = issuer.backchannel_audiences.take();
            let issuer = validate_issuer(index, issuer, base)?;
            if let Some(audiences) = audiences {
                if audiences.is_empty() || audiences.iter().any(String::is_empty) {
                    return Err(invalid(
                        format!("issuers[{index}].backchannel_audiences"),
                        "give at least one non-empty client id (or leave the key out)",
                    ));
                }
                backchannel_audiences.insert(issuer.issuer.clone(), audiences);
            }
            if issuers
                .iter()
                .any(|i: &IssuerConfig| i.issuer == issuer.issuer)
            {
                return Err(invalid(
                    format!("issuers[{index}].issuer"),
                    format!("issuer {:?} is configured twice", issuer.issuer),
                ));
            }
            issuers.push(issuer);
        }
        let logout_routes = validate_logout_routes(raw.logout_routes, &issuers)?;
        let ssf = ssf::validate(raw.ssf, &issuers, base)?;

        Ok(Self {
            authz_addr,
            admin_addr,
            metrics_addr,
            log_level,
            leeway,
            max_token_lifetime,
            max_token_bytes,
            shutdown_grace,
            store,
            admin,
            token_sources,
            response,
            replica,
            cache_max_entries,
            cache_max_bytes,
            issuers,
            backchannel_audiences,
            logout_routes,
            tls,
            feed,
            ssf,
        })
    }
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(key, format!("{value:?} is not an IP:port socket address")))
}

fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn validate_admin(
    raw: RawAdmin,
    base: &Path,
    overrides: &Overrides,
) -> Result<AdminAuth, ConfigError> {
    let token = match (&overrides.admin_token, raw.token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(file)) => {
            let file = resolve(base, file);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                invalid(
                    "admin.token_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            Some(text.trim().to_owned())
        }
        (None, None) => None,
    };
    match token {
        Some(token) if token.len() < 16 => Err(invalid(
            "admin.token_file",
            "the admin token (file or JWT_REVOKER_ADMIN_TOKEN) must be at least 16 characters",
        )),
        Some(token) => Ok(AdminAuth::Token(token)),
        // With require_client_cert (checked in validate_tls to come with a client CA) the
        // TLS handshake alone guards the port.
        None if raw.allow_unauthenticated || raw.require_client_cert => Ok(AdminAuth::Open),
        None => Err(invalid(
            "admin.token_file",
            "the admin API needs a token: set admin.token_file or JWT_REVOKER_ADMIN_TOKEN \
             (or admin.require_client_cert = true with tls.admin.client_ca_file for mTLS \
             alone, or admin.allow_unauthenticated = true to run it open)",
        )),
    }
}

fn validate_tls(
    raw: RawTls,
    require_client_cert: bool,
    base: &Path,
) -> Result<TlsConfig, ConfigError> {
    let authz = raw
        .authz
        .map(|files| {
            if files.client_ca_file.is_some() {
                return Err(invalid(
                    "tls.authz.client_ca_file",
                    "client certificates are only supported on the admin port",
                ));
            }
            port_tls("tls.authz", files, base)
        })
        .transpose()?;
    let admin = raw
        .admin
        .map(|files| port_tls("tls.admin", files, base))
        .transpose()?;
    let has_client_ca = admin.as_ref().is_some_and(|tls| tls.client_ca.is_some());
    if require_client_cert && !has_client_ca {
        return Err(invalid(
            "admin.require_client_cert",
            "needs [tls.admin] with cert_file, key_file and client_ca_file",
        ));
    }
    if has_client_ca && !require_client_cert {
        return Err(invalid(
            "tls.admin.client_ca_file",
            "only applies with admin.require_client_cert = true",
        ));
    }
    Ok(TlsConfig { authz, admin })
}

fn port_tls(section: &str, files: RawTlsFiles, base: &Path) -> Result<PortTls, ConfigError> {
    let required = |name: &str, file: Option<PathBuf>| {
        let key = format!("{section}.{name}");
        let file = file.ok_or_else(|| invalid(&key, "is required"))?;
        read_pem(&key, resolve(base, file))
    };
    Ok(PortTls {
        identity: TlsIdentity {
            cert: required("cert_file", files.cert_file)?,
            key: required("key_file", files.key_file)?,
        },
        client_ca: files
            .client_ca_file
            .map(|file| read_pem(&format!("{section}.client_ca_file"), resolve(base, file)))
            .transpose()?,
    })
}

/// Reads a PEM file; a missing, unreadable or non-PEM file is an error naming `key` and
/// the file.
fn read_pem(key: &str, path: PathBuf) -> Result<PemFile, ConfigError> {
    let pem = std::fs::read(&path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(invalid(
            key,
            format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
        ));
    }
    Ok(PemFile { path, pem })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn validate_token_sources(raw: RawTokenSources) -> Result<TokenSources, ConfigError> {
    let header = raw.header.map(|h| h.to_ascii_lowercase());
    if let Some(header) = &header
        && (!is_header_name(header) || header == "authorization")
    {
        return Err(invalid(
            "token.header",
            "must be a header name other than authorization",
        ));
    }
    if let Some(cookie) = &raw.cookie {
        let valid = !cookie.is_empty()
            && cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid {
            return Err(invalid("token.cookie", "must be a cookie name"));
        }
    }
    Ok(TokenSources {
        header,
        cookie: raw.cookie,
    })
}

fn validate_response(
    raw: RawResponse,
    sources: &TokenSources,
) -> Result<ResponseConfig, ConfigError> {
    let realm = raw.realm.unwrap_or_else(|| "jwt-revoker".to_owned());
    if realm.is_empty()
        || realm
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || !b.is_ascii_graphic() && b != b' ')
    {
        return Err(invalid(
            "response.realm",
            "must be printable ASCII without quotes or backslashes",
        ));
    }
    let mut claim_headers = BTreeMap::new();
    for (claim, header) in raw.claim_headers {
        let header = header.to_ascii_lowercase();
        let reserved = header.starts_with(':')
            || matches!(
                header.as_str(),
                "authorization" | "host" | "content-length" | "transfer-encoding" | "connection"
            );
        if !is_header_name(&header) || reserved {
            return Err(invalid(
                format!("response.claim_headers.{claim}"),
                format!("{header:?} is not a usable header name"),
            ));
        }
        if sources.header.as_deref() == Some(header.as_str()) {
            return Err(invalid(
                format!("response.claim_headers.{claim}"),
                format!("{header:?} is token.header, where the token itself is read"),
            ));
        }
        if claim_headers.values().any(|taken| *taken == header) {
            return Err(invalid(
                format!("response.claim_headers.{claim}"),
                format!("{header:?} is already the header of another claim"),
            ));
        }
        claim_headers.insert(claim, header);
    }
    let mut strip_headers = Vec::new();
    if raw.strip_authorization {
        strip_headers.push("authorization".to_owned());
        strip_headers.extend(sources.header.clone());
    }
    Ok(ResponseConfig {
        realm,
        strip_headers,
        strip_sources: raw.strip_authorization.then(|| sources.clone()),
        claim_headers,
        dynamic_metadata: metadata::validate_metadata(raw.dynamic_metadata)?,
    })
}

fn validate_replica(raw: RawReplica) -> Result<ReplicaConfig, ConfigError> {
    let stale_policy = match raw.stale_policy.as_deref().unwrap_or("deny") {
        "deny" => StalePolicy::Deny,
        "serve-stale" => StalePolicy::ServeStale,
        other => {
            return Err(invalid(
                "replica.stale_policy",
                format!("{other:?} is not one of \"deny\", \"serve-stale\""),
            ));
        }
    };
    let max_staleness = raw.max_staleness.unwrap_or(Duration::from_secs(30));
    if max_staleness < Duration::from_secs(1) {
        return Err(invalid("replica.max_staleness", "must be at least 1s"));
    }
    let resync_interval = raw.resync_interval.unwrap_or(Duration::from_secs(600));
    if resync_interval < Duration::from_secs(10) {
        return Err(invalid("replica.resync_interval", "must be at least 10s"));
    }
    Ok(ReplicaConfig {
        max_staleness,
        stale_policy,
        resync_interval,
    })
}

fn validate_issuer(index: usize, raw: RawIssuer, base: &Path) -> Result<IssuerConfig, ConfigError> {
    let key = |field: &str| format!("issuers[{index}].{field}");
    let issuer = raw
        .issuer
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid(key("issuer"), "is required"))?;
    if raw.audiences.is_empty() || raw.audiences.iter().any(String::is_empty) {
        return Err(invalid(
            key("audiences"),
            "at least one non-empty audience is required",
        ));
    }
    if raw.algorithms.is_empty() {
        return Err(invalid(
            key("algorithms"),
            "at least one algorithm is required",
        ));
    }
    let mut algorithms = Vec::new();
    for name in &raw.algorithms {
        if !SUPPORTED_ALGORITHMS.contains(&name.as_str()) {
            return Err(invalid(
                key("algorithms"),
                format!(
                    "{name:?} is not supported (one of {})",
                    SUPPORTED_ALGORITHMS.join(", ")
                ),
            ));
        }
        let algorithm = Algorithm::from_str(name)
            .map_err(|_| invalid(key("algorithms"), format!("{name:?} is not supported")))?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
    let wants_public = algorithms.iter().any(|a| !is_hmac(*a));
    let hmac_secret_file = raw.hmac_secret_file.map(|f| resolve(base, f));
    match (wants_hmac, &hmac_secret_file) {
        (true, None) => {
            return Err(invalid(
                key("algorithms"),
                "HS256/HS384/HS512 need an explicitly configured hmac_secret_file",
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(
                key("hmac_secret_file"),
                "is only allowed with an HS256/HS384/HS512 algorithm",
            ));
        }
        _ => {}
    }
    let sources = [
        raw.jwks_file.is_some(),
        raw.jwks_uri.is_some(),
        raw.jwks.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if sources > 1 {
        return Err(invalid(
            key("jwks_file"),
            "give only one of jwks_file, jwks_uri, jwks",
        ));
    }
    let keys = if let Some(file) = raw.jwks_file {
        KeySource::File(resolve(base, file))
    } else if let Some(uri) = raw.jwks_uri {
        validate_jwks_uri(&key("jwks_uri"), &uri)?;
        KeySource::Uri(uri)
    } else if let Some(inline) = raw.jwks {
        KeySource::Inline(inline_jwks_json(&key("jwks"), inline)?)
    } else {
        KeySource::None
    };
    if wants_public && keys == KeySource::None {
        return Err(invalid(
            key("jwks_file"),
            "one of jwks_file, jwks_uri or jwks is required for RS*/PS*/ES*/EdDSA algorithms",
        ));
    }
    let jwks_refresh_interval = raw
        .jwks_refresh_interval
        .unwrap_or(Duration::from_secs(300));
    if jwks_refresh_interval < Duration::from_secs(10) {
        return Err(invalid(
            key("jwks_refresh_interval"),
            "must be at least 10s",
        ));
    }
    let jwks_min_refresh_interval = raw
        .jwks_min_refresh_interval
        .unwrap_or(Duration::from_secs(30));
    if jwks_min_refresh_interval < Duration::from_secs(1) {
        return Err(invalid(
            key("jwks_min_refresh_interval"),
            "must be at least 1s (it budgets fetches triggered by unknown kids)",
        ));
    }
    let require_typ = validate_require_typ(&key("require_typ"), raw.require_typ)?;
    let revocable_claims = crate::config::claims::validate_revocable_claims(
        &key("revocable_claims"),
        raw.revocable_claims,
    )?;
    Ok(IssuerConfig {
        issuer,
        audiences: raw.audiences,
        keys,
        algorithms,
        hmac_secret_file,
        jwks_refresh_interval,
        jwks_min_refresh_interval,
        allow_missing_iat: raw.allow_missing_iat,
        require_typ,
        revocable_claims,
    })
}

/// `require_typ`: a media type (printable ASCII, no spaces) that does not name a non-access
/// kind of token.
fn validate_require_typ(key: &str, raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(typ) = raw else {
        return Ok(None);
    };
    if typ.is_empty() || !typ.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(key, "must be a media type such as \"at+jwt\""));
    }
    if crate::token::typ::NON_ACCESS_TYPES
        .iter()
        .any(|other| crate::token::typ::same_type(&typ, other))
    {
        return Err(invalid(
            key,
            format!("{typ:?} is not a type of access token"),
        ));
    }
    Ok(Some(typ))
}

fn validate_logout_routes(
    raw: Vec<RawLogoutRoute>,
    issuers: &[IssuerConfig],
) -> Result<Vec<LogoutRoute>, ConfigError> {
    let mut routes: Vec<LogoutRoute> = Vec::with_capacity(raw.len());
    for (index, route) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("logout_routes[{index}].{field}");
        let method = route
            .method
            .ok_or_else(|| invalid(key("method"), "is required"))?
            .to_ascii_uppercase();
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if method.is_empty() || !method.bytes().all(token_char) {
            return Err(invalid(
                key("method"),
                format!("{method:?} is not an HTTP method"),
            ));
        }
        if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            return Err(invalid(
                key("method"),
                format!(
                    "{method} is a safe method: a link or image on another site could trigger \
                     the logout (cross-site request forgery); use POST (or PUT, PATCH, DELETE)"
                ),
            ));
        }
        let path = route
            .path
            .ok_or_else(|| invalid(key("path"), "is required"))?;
        if !path.starts_with('/')
            || path.contains(['?', '#'])
            || path.bytes().any(|b| !b.is_ascii_graphic())
        {
            return Err(invalid(
                key("path"),
                "must be an absolute path starting with / without query string or fragment",
            ));
        }
        if let Some(issuer) = &route.issuer
            && !issuers.iter().any(|i| &i.issuer == issuer)
        {
            return Err(invalid(
                key("issuer"),
                format!("{issuer:?} is not a configured issuer"),
            ));
        }
        let revoke = match route.revoke.as_deref() {
            Some("token") => LogoutRevoke::Token,
            Some("session") => LogoutRevoke::Session,
            Some("subject") => LogoutRevoke::Subject,
            Some(other) => {
                return Err(invalid(
                    key("revoke"),
                    format!("{other:?} is not one of \"token\", \"session\", \"subject\""),
                ));
            }
            None => return Err(invalid(key("revoke"), "is required")),
        };
        let route = LogoutRoute {
            method,
            path,
            issuer: route.issuer,
            revoke,
        };
        if routes
            .iter()
            .any(|r| r.method == route.method && r.path == route.path && r.issuer == route.issuer)
        {
            return Err(invalid(
                key("path"),
                "the same method, path and issuer are configured twice",
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

/// Whether `algorithm` is an HMAC (shared-secret) algorithm.
pub fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

fn validate_jwks_uri(key: &str, uri: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(uri).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(
            key,
            "must be an https:// URL (http:// only for a loopback host)",
        )),
    }
}

fn inline_jwks_json(key: &str, value: toml::Value) -> Result<String, ConfigError> {
    let json = match value {
        toml::Value::String(text) => text,
        table @ toml::Value::Table(_) => serde_json::to_string(&table)
            .map_err(|e| invalid(key, format!("cannot convert to JSON: {e}")))?,
        _ => {
            return Err(invalid(
                key,
                "must be a JWKS as a JSON string or a TOML table",
            ));
        }
    };
    serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&json)
        .map_err(|e| invalid(key, format!("not a valid JWKS: {e}")))?;
    Ok(json)
}

/// Parses `text` as a config file, with an admin token given, for unit tests; the error as
/// its message.
#[cfg(test)]
pub(crate) fn parse_for_test(text: &str) -> Result<Config, String> {
    let overrides = Overrides {
        admin_token: Some("0123456789abcdef0123".to_owned()),
        ..Overrides::default()
    };
    Config::parse(text, Path::new("t.toml"), Path::new("/etc/jr"), &overrides)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["api"]
jwks = '{"keys": []}'
algorithms = ["RS256", "ES256", "EdDSA"]
"#;

    fn with_token() -> Overrides {
        Overrides {
            admin_token: Some("0123456789abcdef0123".to_owned()),
            ..Overrides::default()
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("test.toml"),
            Path::new("/etc/jr"),
            &with_token(),
        )
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(ISSUER).expect("valid");
        assert_eq!(config.authz_addr.to_string(), "0.0.0.0:9191");
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9192");
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert_eq!(
            config.store,
            StoreConfig::Embedded {
                data_dir: PathBuf::from("/etc/jr/data")
            }
        );
        assert_eq!(config.replica.stale_policy, StalePolicy::Deny);
        assert_eq!(config.issuers[0].algorithms.len(), 3);
        assert!(
            !config.issuers[0].allow_missing_iat,
            "iat is required by default"
        );
        assert!(matches!(config.admin, AdminAuth::Token(_)));
        let lenient = parse(&format!("{ISSUER}allow_missing_iat = true\n")).expect("valid");
        assert!(lenient.issuers[0].allow_missing_iat);
        assert_eq!(
            (config.cache_max_entries, config.cache_max_bytes),
            (100_000, 48 * 1024 * 1024)
        );
        let sized = parse(&format!("[cache]\nmax_bytes = 1000\n{ISSUER}")).expect("valid");
        assert_eq!(sized.cache_max_bytes, 1000);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let text = format!(
            "authz_addr = \"127.0.0.1:1\"\n[store]\nurl = \"redis://127.0.0.1:1/0\"\n{ISSUER}"
        );
        let overrides = Overrides {
            authz_addr: Some("127.0.0.1:2".to_owned()),
            store_url: Some("redis://127.0.0.1:3/0".to_owned()),
            ..with_token()
        };
        let config =
            Config::parse(&text, Path::new("t"), Path::new("."), &overrides).expect("valid");
        assert_eq!(config.authz_addr.to_string(), "127.0.0.1:2");
        assert!(
            matches!(config.store, StoreConfig::Redis(RedisConfig { topology: RedisTopology::Standalone { ref url }, .. }) if url.ends_with(":3/0"))
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(error_of(&format!("autz_addr = \"x\"\n{ISSUER}")).contains("autz_addr"));
        let nested = ISSUER.replace("audiences", "audience");
        assert!(error_of(&nested).contains("audience"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (format!("authz_addr = \"nope\"\n{ISSUER}"), "authz_addr"),
            (format!("leeway = \"1h\"\n{ISSUER}"), "leeway"),
            (format!("leeway = \"soon\"\n{ISSUER}"), "leeway"),
            (
                format!("[store]\nurl = \"http://x\"\n{ISSUER}"),
                "store.url",
            ),
            (
                format!("[replica]\nstale_policy = \"maybe\"\n{ISSUER}"),
                "replica.stale_policy",
            ),
            (
                format!("[response]\nclaim_headers = {{ sub = \"Host\" }}\n{ISSUER}"),
                "response.claim_headers.sub",
            ),
            (
                ISSUER.replace("\"RS256\", ", "\"XS256\", "),
                "issuers[0].algorithms",
            ),
            (ISSUER.replace("[\"api\"]", "[]"), "issuers[0].audiences"),
            (
                ISSUER.replace("\"RS256\"", "\"HS256\""),
                "issuers[0].algorithms",
            ),
            (
                ISSUER.replace("jwks = '{\"keys\": []}'", "jwks = 'not json'"),
                "issuers[0].jwks",
            ),
            (
                ISSUER.replace(
                    "jwks = '{\"keys\": []}'",
                    "jwks_uri = \"http://idp.example.com/jwks\"",
                ),
                "issuers[0].jwks_uri",
            ),
            (format!("{ISSUER}{ISSUER}"), "issuers[1].issuer"),
            (String::new(), "issuers"),
        ];
        for (text, key) in cases {
            let error = error_of(&text);
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_admin_port_needs_a_token_unless_explicitly_open() {
        let none = Config::parse(
            ISSUER,
            Path::new("t"),
            Path::new("."),
            &Overrides::default(),
        );
        assert!(
            none.expect_err("no token")
                .to_string()
                .contains("admin.token_file")
        );
        let open = format!("[admin]\nallow_unauthenticated = true\n{ISSUER}");
        let config = Config::parse(&open, Path::new("t"), Path::new("."), &Overrides::default())
            .expect("open admin");
        assert!(matches!(config.admin, AdminAuth::Open));
        let short = Overrides {
            admin_token: Some("short".to_owned()),
            ..Overrides::default()
        };
        let error = Config::parse(ISSUER, Path::new("t"), Path::new("."), &short)
            .expect_err("short token")
            .to_string();
        assert!(error.contains("16"), "{error}");
    }

    #[test]
    fn logout_routes_and_backchannel_audiences_are_validated() {
        let text = format!(
            "{}backchannel_audiences = [\"web\"]\n\
             [[logout_routes]]\nmethod = \"post\"\npath = \"/logout\"\nrevoke = \"session\"\n\
             [[logout_routes]]\nmethod = \"DELETE\"\npath = \"/signout\"\n\
             issuer = \"https://idp.example.com\"\nrevoke = \"subject\"\n",
            ISSUER
        );
        let config = parse(&text).expect("valid");
        assert_eq!(
            config.backchannel_audiences["https://idp.example.com"],
            ["web"]
        );
        assert_eq!(
            config.logout_routes,
            [
                LogoutRoute {
                    method: "POST".into(),
                    path: "/logout".into(),
                    issuer: None,
                    revoke: LogoutRevoke::Session,
                },
                LogoutRoute {
                    method: "DELETE".into(),
                    path: "/signout".into(),
                    issuer: Some("https://idp.example.com".into()),
                    revoke: LogoutRevoke::Subject,
                },
            ]
        );
        assert!(
            parse(ISSUER)
                .expect("valid")
                .backchannel_audiences
                .is_empty()
        );

        let route = |body: &str| format!("{ISSUER}[[logout_routes]]\n{body}\n");
        let cases = [
            (
                route("method = \"POST\"\npath = \"/logout\"\nrevoke = \"client\""),
                "logout_routes[0].revoke",
            ),
            (
                route("method = \"POST\"\npath = \"/logout\""),
                "logout_routes[0].revoke",
            ),
            (
                route("method = \"PO ST\"\npath = \"/logout\"\nrevoke = \"token\""),
                "logout_routes[0].method",
            ),
            (
                route("method = \"POST\"\npath = \"logout\"\nrevoke = \"token\""),
                "logout_routes[0].path",
            ),
            (
                route("method = \"get\"\npath = \"/logout\"\nrevoke = \"subject\""),
                "logout_routes[0].method",
            ),
            (
                route("method = \"POST\"\npath = \"/logout?x=1\"\nrevoke = \"token\""),
                "logout_routes[0].path",
            ),
            (
                route(
                    "method = \"POST\"\npath = \"/logout\"\nrevoke = \"token\"\nissuer = \"https://x\"",
                ),
                "logout_routes[0].issuer",
            ),
            (
                route("method = \"POST\"\npath = \"/logout\"\nrevoke = \"token\"\nhost = \"x\""),
                "host",
            ),
            (
                format!("{ISSUER}backchannel_audiences = []\n"),
                "issuers[0].backchannel_audiences",
            ),
        ];
        for (text, key) in cases {
            let error = error_of(&text);
            assert!(error.contains(key), "{key}: {error}");
        }
        let twice = route("method = \"POST\"\npath = \"/a\"\nrevoke = \"token\"");
        let twice = format!(
            "{twice}[[logout_routes]]\nmethod = \"post\"\npath = \"/a\"\nrevoke = \"session\"\n"
        );
        assert!(error_of(&twice).contains("logout_routes[1].path"));
    }

    #[test]
    fn metrics_addr_defaults_and_can_be_overridden() {
        assert_eq!(
            parse(ISSUER).expect("valid").metrics_addr.to_string(),
            "0.0.0.0:9090"
        );
        let overrides = Overrides {
            metrics_addr: Some("127.0.0.1:9999".to_owned()),
            ..with_token()
        };
        let text = format!("metrics_addr = \"127.0.0.1:1\"\n{ISSUER}");
        let config =
            Config::parse(&text, Path::new("t"), Path::new("."), &overrides).expect("valid");
        assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9999");
        assert!(error_of(&format!("metrics_addr = \"x\"\n{ISSUER}")).contains("metrics_addr"));
    }

    /// A directory with `cert.pem`, `key.pem` and `ca.pem` (PEM-looking, not parsed here)
    /// and `junk.txt`.
    fn pem_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(
                dir.path().join(name),
                "-----BEGIN X-----\nAA==\n-----END X-----\n",
            )
            .expect("write pem");
        }
        std::fs::write(dir.path().join("junk.txt"), "not pem").expect("write junk");
        dir
    }

    fn parse_in(dir: &Path, text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t"), dir, overrides)
    }

    const AUTHZ_TLS: &str = "[tls.authz]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
    const ADMIN_MTLS: &str = "[admin]\nrequire_client_cert = true\n[tls.admin]\n\
        cert_file = \"cert.pem\"\nkey_file = \"key.pem\"\nclient_ca_file = \"ca.pem\"\n";

    #[test]
    fn tls_files_are_read_relative_to_the_config() {
        let dir = pem_dir();
        let text = format!("{AUTHZ_TLS}{ADMIN_MTLS}{ISSUER}");
        let config = parse_in(dir.path(), &text, &with_token()).expect("valid");
        let authz = config.tls.authz.expect("authz tls");
        assert_eq!(authz.identity.cert.path, dir.path().join("cert.pem"));
        assert!(authz.client_ca.is_none());
        let admin = config.tls.admin.expect("admin tls");
        assert_eq!(
            admin.client_ca.expect("client ca").path,
            dir.path().join("ca.pem")
        );
        assert!(matches!(config.admin, AdminAuth::Token(_)));
        assert!(!format!("{:?}", admin.identity.key).contains("BEGIN"));
    }

    #[test]
    fn mtls_alone_guards_the_admin_port_without_a_token() {
        let dir = pem_dir();
        let text = format!("{ADMIN_MTLS}{ISSUER}");
        let config = parse_in(dir.path(), &text, &Overrides::default()).expect("valid");
        assert!(matches!(config.admin, AdminAuth::Open));
        assert!(config.tls.admin.is_some());
    }

    #[test]
    fn bad_tls_settings_name_the_key_and_the_file() {
        let dir = pem_dir();
        let missing = dir.path().join("missing.pem");
        let cases = [
            (
                AUTHZ_TLS.replace("cert.pem", "missing.pem"),
                "tls.authz.cert_file",
                Some(missing.display().to_string()),
            ),
            (
                AUTHZ_TLS.replace("key.pem", "junk.txt"),
                "tls.authz.key_file",
                Some(dir.path().join("junk.txt").display().to_string()),
            ),
            (
                "[tls.authz]\ncert_file = \"cert.pem\"\n".to_owned(),
                "tls.authz.key_file",
                None,
            ),
            (
                ADMIN_MTLS.replace("ca.pem", "missing.pem"),
                "tls.admin.client_ca_file",
                Some(missing.display().to_string()),
            ),
            (
                ADMIN_MTLS.replace("require_client_cert = true", "require_client_cert = false"),
                "tls.admin.client_ca_file",
                None,
            ),
            (
                "[admin]\nrequire_client_cert = true\n".to_owned(),
                "admin.require_client_cert",
                None,
            ),
            (
                format!("{AUTHZ_TLS}client_ca_file = \"ca.pem\"\n"),
                "tls.authz.client_ca_file",
                None,
            ),
        ];
        for (tls, key, file) in cases {
            let error = parse_in(dir.path(), &format!("{tls}{ISSUER}"), &with_token())
                .expect_err("refused")
                .to_string();
            assert!(error.contains(key), "{key}: {error}");
            if let Some(file) = file {
                assert!(error.contains(&file), "{file}: {error}");
            }
        }
    }

    #[test]
    fn jwks_uri_must_be_https_except_on_loopback() {
        for uri in ["https://idp.example.com/jwks", "http://127.0.0.1:8080/jwks"] {
            let text = ISSUER.replace("jwks = '{\"keys\": []}'", &format!("jwks_uri = \"{uri}\""));
            assert!(parse(&text).is_ok(), "{uri}");
        }
    }

    #[test]
    fn require_typ_is_an_access_token_media_type() {
        assert_eq!(parse(ISSUER).expect("valid").issuers[0].require_typ, None);
        let with = |typ: &str| format!("{ISSUER}require_typ = {typ:?}\n");
        let config = parse(&with("at+jwt")).expect("valid");
        assert_eq!(config.issuers[0].require_typ.as_deref(), Some("at+jwt"));
        for typ in ["", "at jwt", "logout+jwt", "application/secevent+jwt"] {
            let error = error_of(&with(typ));
            assert!(error.contains("issuers[0].require_typ"), "{typ}: {error}");
        }
    }
}
