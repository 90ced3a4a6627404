//! The `[ssf]` section: OpenID Shared Signals streams (`[[ssf.streams]]`), each naming its
//! transmitter, the audience its SETs must carry, where the transmitter's keys come from
//! (given, or discovered through `/.well-known/ssf-configuration`), the push authorization
//! secret (from a file or an environment variable, never inline), the token issuers it may
//! revoke for, and its mapping policy.

mod credentials;

use super::{ConfigError, IssuerConfig, KeySource, SUPPORTED_ALGORITHMS, invalid, is_hmac};
use crate::ssf::mapping::{OpaqueMeans, OptIn, Policy};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `[ssf]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsf {
    #[serde(default)]
    streams: Vec<RawStream>,
    global_token_revocation: Option<RawGtr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGtr {
    token_issuers: Option<Vec<String>>,
    #[serde(default)]
    email_is_sub: bool,
    #[serde(default)]
    subject_claims: std::collections::BTreeMap<String, String>,
    caller_issuer: Option<String>,
    caller_audience: Option<String>,
    caller_jwks_uri: Option<String>,
    caller_jwks_file: Option<PathBuf>,
    caller_jwks: Option<toml::Value>,
    #[serde(default)]
    caller_algorithms: Vec<String>,
}

/// `[ssf.global_token_revocation]`: the `POST /global-token-revocation` endpoint.
#[derive(Debug, Clone)]
pub struct GtrConfig {
    /// The token issuers a request revokes the user for, and how subjects map.
    pub policy: Policy,
    /// The issuer of caller JWTs (its `audiences` holds the one accepted `aud`), besides the
    /// admin token.
    pub caller: Option<IssuerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    delivery: Option<String>,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    jwks: Option<toml::Value>,
    #[serde(default)]
    algorithms: Vec<String>,
    hmac_secret_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    jwks_refresh_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    jwks_min_refresh_interval: Option<Duration>,
    token_issuers: Option<Vec<String>>,
    authorization_header_file: Option<PathBuf>,
    authorization_header_env: Option<String>,
    opaque_means: Option<String>,
    #[serde(default)]
    email_is_sub: bool,
    #[serde(default)]
    subject_claims: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    critical_subject_members: Vec<String>,
    #[serde(default)]
    opt_in: RawOptIn,
    management_token_file: Option<PathBuf>,
    management_token_env: Option<String>,
    management_token_endpoint: Option<String>,
    management_client_id: Option<String>,
    management_client_secret_file: Option<PathBuf>,
    management_client_secret_env: Option<String>,
    management_scope: Option<String>,
    #[serde(default, with = "humantime_serde")]
    verification_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    verification_timeout: Option<Duration>,
    push_url: Option<String>,
    poll_endpoint: Option<String>,
    poll_token_file: Option<PathBuf>,
    poll_token_env: Option<String>,
    poll_token_endpoint: Option<String>,
    poll_client_id: Option<String>,
    poll_client_secret_file: Option<PathBuf>,
    poll_client_secret_env: Option<String>,
    poll_scope: Option<String>,
    #[serde(default, with = "humantime_serde")]
    long_poll: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptIn {
    #[serde(default)]
    assurance_decrease: bool,
    #[serde(default)]
    device_not_compliant: bool,
    #[serde(default)]
    risk_high: bool,
    #[serde(default)]
    credential_change_required: bool,
}

/// How SETs reach jwt-revoker.
#[derive(Clone, PartialEq, Eq)]
pub enum Delivery {
    /// RFC 8935: the transmitter POSTs to `/ssf/push/{name}` on the admin port.
    Push,
    /// RFC 8936: jwt-revoker polls the transmitter.
    Poll {
        /// The transmitter's poll endpoint.
        endpoint: String,
        /// The credential for each poll.
        credential: Credential,
        /// How long the transmitter may hold a long poll.
        long_poll: Duration,
    },
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Push => f.write_str("Push"),
            Self::Poll {
                endpoint,
                long_poll,
                ..
            } => f
                .debug_struct("Poll")
                .field("endpoint", endpoint)
                .field("long_poll", long_poll)
                .finish_non_exhaustive(),
        }
    }
}

/// How jwt-revoker authenticates to a transmitter's endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A static bearer token.
    Bearer(String),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): a bearer token from `token_endpoint`.
    ClientCredentials {
        /// The token endpoint.
        token_endpoint: String,
        /// The client id.
        client_id: String,
        /// The client secret (HTTP Basic).
        client_secret: String,
        /// The scope asked for, if any.
        scope: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::ClientCredentials {
                token_endpoint,
                client_id,
                scope,
                ..
            } => f
                .debug_struct("ClientCredentials")
                .field("token_endpoint", token_endpoint)
                .field("client_id", client_id)
                .field("scope", scope)
                .finish_non_exhaustive(),
        }
    }
}

/// The `[ssf]` section, validated.
#[derive(Debug, Clone, Default)]
pub struct SsfConfig {
    /// The streams, in configuration order.
    pub streams: Vec<StreamConfig>,
    /// Global Token Revocation, when configured.
    pub global_token_revocation: Option<GtrConfig>,
}

/// One `[[ssf.streams]]` entry.
#[derive(Clone)]
pub struct StreamConfig {
    /// Its name: the last segment of its push URL and the `stream` metric label.
    pub name: String,
    /// The transmitter as a key owner: `issuer` is the SETs' `iss`, `audiences` holds the
    /// stream's audience, `keys` is [`KeySource::None`] when the keys are to be discovered.
    pub transmitter: IssuerConfig,
    /// How SETs arrive.
    pub delivery: Delivery,
    /// The secret every push must carry in `authorization` (bare or as `Bearer`).
    pub push_secret: Option<String>,
    /// How events map to revocations.
    pub policy: Policy,
    /// Stream management at the transmitter, when credentials are given.
    pub management: Option<Management>,
}

/// Stream management credentials, the receiver's public push URL and periodic verification.
#[derive(Clone)]
pub struct Management {
    /// The credential for the transmitter's stream management API (a static bearer token or
    /// OAuth client credentials).
    pub credential: Credential,
    /// The URL the transmitter pushes to (`…/ssf/push/{name}` as reachable from it); unused
    /// with poll delivery.
    pub push_url: String,
    /// How often a verification event is requested (`verification_interval`); `None`: once,
    /// after the stream is configured at start-up.
    pub verification_interval: Option<Duration>,
    /// How long the requested verification event may take to arrive
    /// (`verification_timeout`, default 30 s, at most the interval).
    pub verification_timeout: Duration,
}

/// The default `verification_timeout`.
pub const DEFAULT_VERIFICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The management part of a stream: `None` without management credentials.
fn management(
    index: usize,
    delivery: &Delivery,
    raw: credentials::RawCredential,
    push_url: Option<String>,
    (interval, timeout): (Option<Duration>, Option<Duration>),
    base: &Path,
) -> Result<Option<Management>, ConfigError> {
    let key = |field: &str| format!("ssf.streams[{index}].{field}");
    let Some(credential) = credentials::read(index, "management", raw, base)? else {
        if interval.is_some() || timeout.is_some() {
            let field = if interval.is_some() {
                "verification_interval"
            } else {
                "verification_timeout"
            };
            return Err(invalid(
                key(field),
                "needs stream management credentials (management_token_file, \
                 management_token_env or management_token_endpoint)",
            ));
        }
        return Ok(None);
    };
    let push_url = match (delivery, push_url) {
        (Delivery::Push, Some(url)) => {
            super::validate_jwks_uri(&key("push_url"), &url)?;
            url
        }
        (Delivery::Push, None) => {
            return Err(invalid(
                key("push_url"),
                "is required with management credentials and push delivery (the URL \
                 the transmitter pushes to)",
            ));
        }
        (Delivery::Poll { .. }, _) => String::new(),
    };
    if interval.is_some_and(|i| i < Duration::from_secs(1)) {
        return Err(invalid(key("verification_interval"), "must be at least 1s"));
    }
    let verification_timeout = timeout.unwrap_or(DEFAULT_VERIFICATION_TIMEOUT);
    if verification_timeout < Duration::from_millis(100) {
        return Err(invalid(
            key("verification_timeout"),
            "must be at least 100ms",
        ));
    }
    let verification_timeout = match interval {
        Some(interval) if timeout.is_some() && verification_timeout > interval => {
            return Err(invalid(
                key("verification_timeout"),
                "must be at most verification_interval",
            ));
        }
        Some(interval) => verification_timeout.min(interval),
        None => verification_timeout,
    };
    Ok(Some(Management {
        credential,
        push_url,
        verification_interval: interval,
        verification_timeout,
    }))
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("credential", &self.credential)
            .field("push_url", &self.push_url)
            .field("verification_interval", &self.verification_interval)
            .field("verification_timeout", &self.verification_timeout)
            .finish()
    }
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("name", &self.name)
            .field("transmitter", &self.transmitter)
            .field("delivery", &self.delivery)
            .field(
                "push_secret",
                &self.push_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("policy", &self.policy)
            .finish()
    }
}

/// Validates `[ssf]`; `issuers` are the configured token issuers.
pub(super) fn validate(
    raw: RawSsf,
    issuers: &[IssuerConfig],
    base: &Path,
) -> Result<SsfConfig, ConfigError> {
    let mut streams: Vec<StreamConfig> = Vec::with_capacity(raw.streams.len());
    for (index, stream) in raw.streams.into_iter().enumerate() {
        let stream = validate_stream(index, stream, issuers, base)?;
        if streams.iter().any(|s| s.name == stream.name) {
            return Err(invalid(
                format!("ssf.streams[{index}].name"),
                format!("stream {:?} is configured twice", stream.name),
            ));
        }
        streams.push(stream);
    }
    let global_token_revocation = raw
        .global_token_revocation
        .map(|gtr| validate_gtr(gtr, issuers, base))
        .transpose()?;
    Ok(SsfConfig {
        streams,
        global_token_revocation,
    })
}

fn validate_gtr(
    raw: RawGtr,
    issuers: &[IssuerConfig],
    base: &Path,
) -> Result<GtrConfig, ConfigError> {
    let key = |field: &str| format!("ssf.global_token_revocation.{field}");
    let token_issuers = raw
        .token_issuers
        .filter(|list| !list.is_empty())
        .ok_or_else(|| invalid(key("token_issuers"), "name the token issuers to revoke for"))?;
    for token_issuer in &token_issuers {
        if !issuers.iter().any(|i| &i.issuer == token_issuer) {
            return Err(invalid(
                key("token_issuers"),
                format!("{token_issuer:?} is not a configured [[issuers]] entry"),
            ));
        }
    }
    let caller = match raw.caller_issuer {
        None => {
            if raw.caller_audience.is_some()
                || raw.caller_jwks_uri.is_some()
                || raw.caller_jwks_file.is_some()
                || raw.caller_jwks.is_some()
            {
                return Err(invalid(
                    key("caller_issuer"),
                    "is required with the other caller_ keys",
                ));
            }
            None
        }
        Some(issuer) => {
            super::validate_jwks_uri(&key("caller_issuer"), &issuer)?;
            let audience = raw
                .caller_audience
                .filter(|a| !a.is_empty())
                .ok_or_else(|| invalid(key("caller_audience"), "is required with caller_issuer"))?;
            let keys = match (raw.caller_jwks_uri, raw.caller_jwks_file, raw.caller_jwks) {
                (Some(uri), None, None) => {
                    super::validate_jwks_uri(&key("caller_jwks_uri"), &uri)?;
                    KeySource::Uri(uri)
                }
                (None, Some(file), None) => KeySource::File(super::resolve(base, file)),
                (None, None, Some(inline)) => {
                    KeySource::Inline(super::inline_jwks_json(&key("caller_jwks"), inline)?)
                }
                _ => {
                    return Err(invalid(
                        key("caller_jwks_uri"),
                        "give exactly one of caller_jwks_uri, caller_jwks_file, caller_jwks",
                    ));
                }
            };
            let algorithms = algorithms(&key("caller_algorithms"), raw.caller_algorithms)?;
            if algorithms.iter().any(|a| is_hmac(*a)) {
                return Err(invalid(
                    key("caller_algorithms"),
                    "HMAC is not supported here",
                ));
            }
            Some(IssuerConfig {
                issuer,
                audiences: vec![audience],
                keys,
                algorithms,
                hmac_secret_file: None,
                jwks_refresh_interval: Duration::from_secs(300),
                jwks_min_refresh_interval: Duration::from_secs(30),
                allow_missing_iat: false,
                require_typ: None,
                revocable_claims: Vec::new(),
            })
        }
    };
    let subject_claims = subject_claims(
        &key("subject_claims"),
        raw.subject_claims,
        raw.email_is_sub,
        &token_issuers,
        issuers,
    )?;
    Ok(GtrConfig {
        policy: Policy {
            token_issuers,
            opaque_means: OpaqueMeans::Sub,
            email_is_sub: raw.email_is_sub,
            subject_claims,
            critical_subject_members: Vec::new(),
            opt_in: OptIn::default(),
        },
        caller,
    })
}

/// The subject formats a claim may stand for in `subject_claims`.
const CLAIM_SUBJECT_FORMATS: [&str; 3] = ["email", "phone_number", "account"];

/// `subject_claims = { email = "email", … }`: subject formats revoked by a claim of the
/// access tokens. Each format must be one of [`CLAIM_SUBJECT_FORMATS`], `email` not together
/// with `email_is_sub`, and each claim among the `revocable_claims` of every token issuer
/// (else Check would never read it, and the event would revoke nothing).
fn subject_claims(
    key: &str,
    raw: std::collections::BTreeMap<String, String>,
    email_is_sub: bool,
    token_issuers: &[String],
    issuers: &[IssuerConfig],
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut mapped = Vec::with_capacity(raw.len());
    for (format, claim) in raw {
        if !CLAIM_SUBJECT_FORMATS.contains(&format.as_str()) {
            return Err(invalid(
                key,
                format!(
                    "{format:?} is not a subject format a claim can stand for (one of {})",
                    CLAIM_SUBJECT_FORMATS.join(", ")
                ),
            ));
        }
        if format == "email" && email_is_sub {
            return Err(invalid(
                key,
                "email is mapped to a claim and email_is_sub is set: choose one",
            ));
        }
        for token_issuer in token_issuers {
            let revocable = issuers
                .iter()
                .filter(|i| &i.issuer == token_issuer)
                .any(|i| i.revocable_claims.contains(&claim));
            if !revocable {
                return Err(invalid(
                    key,
                    format!(
                        "{format} maps to claim {claim:?}, which is not in revocable_claims of \
                         issuer {token_issuer:?} (add it there, or the revocations would match \
                         no token)"
                    ),
                ));
            }
        }
        mapped.push((format, claim));
    }
    Ok(mapped)
}

/// Algorithm names (default RS256) → algorithms, naming `key` when one is not supported.
fn algorithms(key: &str, names: Vec<String>) -> Result<Vec<Algorithm>, ConfigError> {
    let names = if names.is_empty() {
        vec!["RS256".to_owned()]
    } else {
        names
    };
    let mut algorithms = Vec::new();
    for name in &names {
        let algorithm = SUPPORTED_ALGORITHMS
            .contains(&name.as_str())
            .then(|| Algorithm::from_str(name).ok())
            .flatten()
            .ok_or_else(|| invalid(key, format!("{name:?} is not supported")))?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    Ok(algorithms)
}

fn validate_stream(
    index: usize,
    raw: RawStream,
    issuers: &[IssuerConfig],
    base: &Path,
) -> Result<StreamConfig, ConfigError> {
    let key = |field: &str| format!("ssf.streams[{index}].{field}");
    let name = raw
        .name
        .ok_or_else(|| invalid(key("name"), "is required"))?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            key("name"),
            "must be 1 to 64 letters, digits, - or _ (it is a URL segment and a metric label)",
        ));
    }
    let issuer = raw
        .issuer
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid(key("issuer"), "is required (the transmitter's issuer URL)"))?;
    super::validate_jwks_uri(&key("issuer"), &issuer)?;
    let audience = raw
        .audience
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid(key("audience"), "is required (the aud its SETs carry)"))?;
    let delivery = match raw.delivery.as_deref().unwrap_or("push") {
        "push" => {
            if raw.poll_endpoint.is_some()
                || raw.poll_token_file.is_some()
                || raw.poll_token_env.is_some()
            {
                return Err(invalid(
                    key("poll_endpoint"),
                    "only applies with delivery = \"poll\"",
                ));
            }
            Delivery::Push
        }
        "poll" => {
            let endpoint = raw.poll_endpoint.ok_or_else(|| {
                invalid(key("poll_endpoint"), "is required with delivery = \"poll\"")
            })?;
            super::validate_jwks_uri(&key("poll_endpoint"), &endpoint)?;
            let credential = credentials::read(
                index,
                "poll",
                credentials::RawCredential {
                    token_file: raw.poll_token_file,
                    token_env: raw.poll_token_env,
                    token_endpoint: raw.poll_token_endpoint,
                    client_id: raw.poll_client_id,
                    client_secret_file: raw.poll_client_secret_file,
                    client_secret_env: raw.poll_client_secret_env,
                    scope: raw.poll_scope,
                },
                base,
            )?
            .ok_or_else(|| {
                invalid(
                    key("poll_token_file"),
                    "poll_token_file, poll_token_env or poll_token_endpoint (client \
                     credentials) is required",
                )
            })?;
            let long_poll = raw.long_poll.unwrap_or(Duration::from_secs(30));
            if long_poll > Duration::from_secs(300) {
                return Err(invalid(key("long_poll"), "must be at most 5m"));
            }
            Delivery::Poll {
                endpoint,
                credential,
                long_poll,
            }
        }
        other => {
            return Err(invalid(
                key("delivery"),
                format!("{other:?} is not one of \"push\", \"poll\""),
            ));
        }
    };
    let algorithms = algorithms(&key("algorithms"), raw.algorithms)?;
    let hmac_secret_file = raw.hmac_secret_file.map(|f| super::resolve(base, f));
    let wants_hmac = algorithms.iter().any(|a| is_hmac(*a));
    if wants_hmac != hmac_secret_file.is_some() {
        return Err(invalid(
            key("hmac_secret_file"),
            "HS256/HS384/HS512 need hmac_secret_file, and hmac_secret_file needs an HS algorithm",
        ));
    }
    let given = [
        raw.jwks_file.is_some(),
        raw.jwks_uri.is_some(),
        raw.jwks.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(invalid(
            key("jwks_uri"),
            "give only one of jwks_uri, jwks_file, jwks",
        ));
    }
    let keys = if let Some(file) = raw.jwks_file {
        KeySource::File(super::resolve(base, file))
    } else if let Some(uri) = raw.jwks_uri {
        super::validate_jwks_uri(&key("jwks_uri"), &uri)?;
        KeySource::Uri(uri)
    } else if let Some(inline) = raw.jwks {
        KeySource::Inline(super::inline_jwks_json(&key("jwks"), inline)?)
    } else {
        // Discovered from the transmitter's metadata at start-up.
        KeySource::None
    };
    let jwks_refresh_interval = raw
        .jwks_refresh_interval
        .unwrap_or(Duration::from_secs(300))
        .max(Duration::from_secs(10));
    let jwks_min_refresh_interval = raw
        .jwks_min_refresh_interval
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(1));
    let token_issuers = raw.token_issuers.unwrap_or_else(|| vec![issuer.clone()]);
    if token_issuers.is_empty() {
        return Err(invalid(
            key("token_issuers"),
            "must name at least one issuer",
        ));
    }
    for token_issuer in &token_issuers {
        if !issuers.iter().any(|i| &i.issuer == token_issuer) {
            return Err(invalid(
                key("token_issuers"),
                format!(
                    "{token_issuer:?} is not a configured [[issuers]] entry (by default a \
                     stream revokes for its transmitter's issuer; list the token issuers it \
                     may revoke for)"
                ),
            ));
        }
    }
    let push_secret = credential(
        &key("authorization_header_file"),
        &key("authorization_header_env"),
        raw.authorization_header_file,
        raw.authorization_header_env,
        base,
    )?;
    let management = management(
        index,
        &delivery,
        credentials::RawCredential {
            token_file: raw.management_token_file,
            token_env: raw.management_token_env,
            token_endpoint: raw.management_token_endpoint,
            client_id: raw.management_client_id,
            client_secret_file: raw.management_client_secret_file,
            client_secret_env: raw.management_client_secret_env,
            scope: raw.management_scope,
        },
        raw.push_url,
        (raw.verification_interval, raw.verification_timeout),
        base,
    )?;
    let opaque_means = match raw.opaque_means.as_deref() {
        None | Some("by-event") => OpaqueMeans::ByEvent,
        Some("session") => OpaqueMeans::Sid,
        Some("subject") => OpaqueMeans::Sub,
        Some(other) => {
            return Err(invalid(
                key("opaque_means"),
                format!("{other:?} is not one of \"by-event\", \"session\", \"subject\""),
            ));
        }
    };
    let subject_claims = subject_claims(
        &key("subject_claims"),
        raw.subject_claims,
        raw.email_is_sub,
        &token_issuers,
        issuers,
    )?;
    Ok(StreamConfig {
        name,
        transmitter: IssuerConfig {
            issuer,
            audiences: vec![audience],
            keys,
            algorithms,
            hmac_secret_file,
            jwks_refresh_interval,
            jwks_min_refresh_interval,
            allow_missing_iat: false,
            require_typ: None,
            revocable_claims: Vec::new(),
        },
        delivery,
        push_secret,
        management,
        policy: Policy {
            token_issuers,
            opaque_means,
            email_is_sub: raw.email_is_sub,
            subject_claims,
            critical_subject_members: raw.critical_subject_members,
            opt_in: OptIn {
                assurance_decrease: raw.opt_in.assurance_decrease,
                device_not_compliant: raw.opt_in.device_not_compliant,
                risk_high: raw.opt_in.risk_high,
                credential_change_required: raw.opt_in.credential_change_required,
            },
        },
    })
}

/// A secret from a file or an environment variable (at most one of them), see [`secret`].
fn credential(
    file_key: &str,
    env_key: &str,
    file: Option<PathBuf>,
    env: Option<String>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(invalid(
            file_key,
            format!("give {file_key} or {env_key}, not both"),
        )),
        (Some(file), None) => {
            let file = super::resolve(base, file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", file.display())))?;
            Ok(Some(secret(file_key, &text)?))
        }
        (None, Some(var)) => {
            let text = std::env::var(&var)
                .map_err(|_| invalid(env_key, format!("environment variable {var} is not set")))?;
            Ok(Some(secret(env_key, &text)?))
        }
        (None, None) => Ok(None),
    }
}

/// A push secret: trimmed, a leading `Bearer ` dropped, at least 16 characters.
fn secret(key: &str, text: &str) -> Result<String, ConfigError> {
    let text = text.trim();
    let text = match text.split_at_checked(7) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer ") => rest.trim(),
        _ => text,
    };
    if text.len() < 16 || text.chars().any(char::is_control) {
        return Err(invalid(
            key,
            "the secret must be at least 16 printable characters",
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const BASE: &str = r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["api"]
jwks = '{"keys": []}'
algorithms = ["RS256"]
"#;

    fn parse(extra: &str) -> Result<Config, String> {
        crate::config::parse_for_test(&format!("{BASE}{extra}"))
    }

    #[test]
    fn a_stream_with_defaults() {
        let config = parse(
            r#"
[[ssf.streams]]
name = "idp"
issuer = "https://idp.example.com"
audience = "https://revoker.example.com"
jwks_uri = "https://idp.example.com/ssf/jwks"
"#,
        )
        .expect("valid");
        let stream = &config.ssf.streams[0];
        assert_eq!(stream.name, "idp");
        assert_eq!(stream.policy.token_issuers, ["https://idp.example.com"]);
        assert_eq!(
            stream.transmitter.audiences,
            ["https://revoker.example.com"]
        );
        assert_eq!(
            stream.transmitter.algorithms,
            [jsonwebtoken::Algorithm::RS256]
        );
        assert!(stream.push_secret.is_none());
        assert!(parse("").expect("no ssf").ssf.streams.is_empty());
    }

    #[test]
    fn bad_streams_name_the_key() {
        let stream = |body: &str| {
            format!(
                "[[ssf.streams]]\nname = \"s\"\nissuer = \"https://idp.example.com\"\naudience = \"a\"\n{body}"
            )
        };
        let cases = [
            (
                "[[ssf.streams]]\nissuer = \"https://x\"",
                "ssf.streams[0].name",
            ),
            (
                "[[ssf.streams]]\nname = \"a/b\"\nissuer = \"https://x\"\naudience = \"a\"",
                "ssf.streams[0].name",
            ),
            (
                "[[ssf.streams]]\nname = \"s\"\nissuer = \"http://idp.example.com\"\naudience = \"a\"",
                "ssf.streams[0].issuer",
            ),
            (
                &stream("token_issuers = [\"https://other\"]"),
                "token_issuers",
            ),
            (&stream("delivery = \"carrier-pigeon\""), "delivery"),
            (&stream("algorithms = [\"none\"]"), "algorithms"),
            (&stream("algorithms = [\"HS256\"]"), "hmac_secret_file"),
            (&stream("opaque_means = \"device\""), "opaque_means"),
            (
                &stream("authorization_header_env = \"JWT_REVOKER_TEST_UNSET_VARIABLE\""),
                "authorization_header_env",
            ),
            (&stream("unknown = 1"), "unknown field"),
            (
                &stream("delivery = \"poll\"\npoll_endpoint = \"https://idp.example.com/poll\""),
                "poll_token_file",
            ),
            (
                &stream(
                    "delivery = \"poll\"\npoll_endpoint = \"https://idp.example.com/poll\"\n\
                     poll_token_endpoint = \"https://idp.example.com/token\"",
                ),
                "poll_client_id",
            ),
            (
                &stream("poll_endpoint = \"https://idp.example.com/poll\""),
                "only applies with delivery",
            ),
            (&stream("management_token_env = \"PATH\""), "push_url"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        let twice = format!("{}\n{}", stream(""), stream(""));
        assert!(parse(&twice).expect_err("twice").contains("twice"));
    }

    #[test]
    fn the_push_secret_is_read_from_a_file_and_never_printed() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "Bearer 0123456789abcdef-secret\n").expect("write");
        let config = parse(&format!(
            "[[ssf.streams]]\nname = \"s\"\nissuer = \"https://idp.example.com\"\naudience = \"a\"\nauthorization_header_file = {:?}",
            file.display().to_string()
        ))
        .expect("valid");
        let stream = &config.ssf.streams[0];
        assert_eq!(
            stream.push_secret.as_deref(),
            Some("0123456789abcdef-secret")
        );
        assert!(!format!("{stream:?}").contains("0123456789abcdef"));
        std::fs::write(&file, "short").expect("write");
        assert!(parse(&format!(
            "[[ssf.streams]]\nname = \"s\"\nissuer = \"https://idp.example.com\"\naudience = \"a\"\nauthorization_header_file = {:?}",
            file.display().to_string()
        ))
        .is_err());
    }

    #[test]
    fn subject_claims_map_formats_to_revocable_claims_of_every_token_issuer() {
        let base = BASE.replace(
            "algorithms = [\"RS256\"]\n",
            "algorithms = [\"RS256\"]\nrevocable_claims = [\"email\", \"phone_number\"]\n",
        );
        let parse_with = |extra: &str| crate::config::parse_for_test(&format!("{base}{extra}"));
        let stream = |map: &str| {
            format!(
                "[[ssf.streams]]\nname = \"s\"\nissuer = \"https://idp.example.com\"\n\
                 audience = \"a\"\nsubject_claims = {map}\n"
            )
        };
        let config = parse_with(&stream(
            r#"{ email = "email", phone_number = "phone_number" }"#,
        ))
        .expect("valid");
        assert_eq!(
            config.ssf.streams[0].policy.subject_claims,
            [
                ("email".to_owned(), "email".to_owned()),
                ("phone_number".to_owned(), "phone_number".to_owned())
            ]
        );
        let gtr = parse_with(
            "[ssf.global_token_revocation]\ntoken_issuers = [\"https://idp.example.com\"]\n\
             subject_claims = { email = \"email\" }\n",
        )
        .expect("valid");
        let policy = &gtr.ssf.global_token_revocation.expect("gtr").policy;
        assert_eq!(
            policy.subject_claims,
            [("email".to_owned(), "email".to_owned())]
        );
        for (bad, expected) in [
            (stream(r#"{ email = "mail" }"#), "not in revocable_claims"),
            (stream(r#"{ opaque = "email" }"#), "not a subject format"),
            (
                format!("{}email_is_sub = true\n", stream(r#"{ email = "email" }"#)),
                "choose one",
            ),
        ] {
            let error = parse_with(&bad).expect_err(&bad);
            assert!(error.contains("ssf.streams[0].subject_claims"), "{error}");
            assert!(error.contains(expected), "{error}");
        }
        // Without revocable_claims on the issuer, the mapping is refused at start-up.
        let error = parse(&stream(r#"{ email = "email" }"#)).expect_err("not revocable");
        assert!(error.contains("not in revocable_claims"), "{error}");
    }
}
