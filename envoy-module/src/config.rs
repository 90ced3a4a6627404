//! The filter's configuration: the JSON string in the Envoy filter's `filter_config`, parsed
//! and checked once when Envoy creates the filter config (a refusal rejects Envoy's config).

use jwt_revoker::config::{ReplicaConfig, StalePolicy};
use jwt_revoker::replication::{FollowerOptions, FollowerTls};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Why the filter config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the expected JSON.
    #[error("filter_config is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A value is out of range or unusable.
    #[error("filter_config.{key}: {message}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// Why.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// One address or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The default request header holding the verified token's base64url payload (`jwt_authn`'s
/// `forward_payload_header`).
pub const DEFAULT_PAYLOAD_HEADER: &str = "x-jwt-payload";

/// The default bound of the parsed-claims cache, in bytes.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The longest payload header read, in bytes of base64url (the server's default
/// `max_token_bytes` bounds a whole token the same way).
pub const MAX_PAYLOAD_CHARS: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    feed: OneOrMany,
    feed_token: Option<String>,
    feed_token_file: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default, with = "humantime_serde")]
    max_staleness: Option<Duration>,
    stale_policy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    resync_interval: Option<Duration>,
    #[serde(default)]
    issuers: Vec<String>,
    realm: Option<String>,
    payload_header: Option<String>,
    cache_max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    max_token_lifetime: Option<Duration>,
    #[serde(default)]
    allow_missing_iat: bool,
    #[serde(default)]
    revocable_claims: Vec<String>,
}

/// The server's lifetime rule, so that a revocation by session, subject or client (which
/// lasts `max_token_lifetime` plus twice the leeway) outlives every token it covers here too:
/// a token must carry `iat` and `exp`, and `exp - iat` may not exceed `max_token_lifetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeRule {
    /// The longest `exp - iat` accepted (the server's `max_token_lifetime`; default 24h).
    pub max_token_lifetime: Duration,
    /// Accept tokens without `iat` (the server's per-issuer `allow_missing_iat`): a
    /// revocation by identifier may then expire before such a token does.
    pub allow_missing_iat: bool,
}

/// The validated configuration.
#[derive(Debug)]
pub struct FilterSettings {
    /// How to reach and authenticate to the feed.
    pub feed: FollowerOptions,
    /// Staleness rules, as in the server's `[replica]`.
    pub replica: ReplicaConfig,
    /// Issuers whose tokens pass this filter (empty: any that `jwt_authn` verified).
    pub issuers: Vec<String>,
    /// The `realm` of `WWW-Authenticate`.
    pub realm: String,
    /// The request header holding the verified payload, which `jwt_authn` writes
    /// (`forward_payload_header`) and a filter before it removes from the client's request.
    pub payload_header: String,
    /// The bound of the parsed-claims cache, in bytes (0: no cache).
    pub cache_max_bytes: usize,
    /// How long a token may live.
    pub lifetime: LifetimeRule,
    /// The claims revocations of kind `claim` are looked up by, read from the verified
    /// payload: every claim in any issuer's `revocable_claims` on the server. A claim
    /// revocation naming another claim cannot be enforced here, and refuses every request
    /// (503) until it is gone.
    pub revocable_claims: Vec<String>,
}

fn read(key: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

impl FilterSettings {
    /// Parses and checks the JSON `text`.
    pub fn parse(text: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(text)?;
        let endpoints = match raw.feed {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        if endpoints.is_empty() {
            return Err(invalid(
                "feed",
                "give at least one jwt-revoker admin address",
            ));
        }
        let endpoints = endpoints
            .into_iter()
            .map(|address| {
                if address.contains("://") {
                    address
                } else {
                    format!("http://{address}")
                }
            })
            .collect();
        let token = match (raw.feed_token, raw.feed_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "feed_token",
                    "give feed_token or feed_token_file, not both",
                ));
            }
            (Some(token), None) => Some(token.trim().to_owned()),
            (None, Some(file)) => {
                let text = read("feed_token_file", &file)?;
                Some(String::from_utf8_lossy(&text).trim().to_owned())
            }
            (None, None) => None,
        };
        let tls = raw
            .tls
            .map(|tls| {
                let identity = match (tls.cert_file, tls.key_file) {
                    (Some(cert), Some(key)) => {
                        Some((read("tls.cert_file", &cert)?, read("tls.key_file", &key)?))
                    }
                    (None, None) => None,
                    _ => {
                        return Err(invalid("tls", "cert_file and key_file go together"));
                    }
                };
                Ok(FollowerTls {
                    ca_pem: read("tls.ca_file", &tls.ca_file)?,
                    identity,
                })
            })
            .transpose()?;
        if token.is_none() && tls.as_ref().is_none_or(|tls| tls.identity.is_none()) {
            return Err(invalid(
                "feed_token",
                "the feed needs a credential: feed_token, feed_token_file or a tls client \
                 certificate",
            ));
        }
        let stale_policy = match raw.stale_policy.as_deref().unwrap_or("deny") {
            "deny" => StalePolicy::Deny,
            "serve-stale" => StalePolicy::ServeStale,
            other => {
                return Err(invalid(
                    "stale_policy",
                    format!("{other:?} is not one of \"deny\", \"serve-stale\""),
                ));
            }
        };
        let max_staleness = raw.max_staleness.unwrap_or(Duration::from_secs(30));
        if max_staleness < Duration::from_secs(1) {
            return Err(invalid("max_staleness", "must be at least 1s"));
        }
        let resync_interval = raw.resync_interval.unwrap_or(Duration::from_secs(600));
        if resync_interval < Duration::from_secs(10) {
            return Err(invalid("resync_interval", "must be at least 10s"));
        }
        let payload_header = raw
            .payload_header
            .unwrap_or_else(|| DEFAULT_PAYLOAD_HEADER.to_owned());
        let usable = !payload_header.is_empty()
            && payload_header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !usable {
            return Err(invalid(
                "payload_header",
                format!("{payload_header:?} is not a lowercase header name"),
            ));
        }
        for claim in &raw.revocable_claims {
            if !jwt_revoker::revocation::model::valid_claim_name(claim) {
                return Err(invalid(
                    "revocable_claims",
                    format!(
                        "{claim:?} is not a usable claim name (ASCII letters, digits, _ or -; \
                         not iss, aud, exp, nbf, iat or jti)"
                    ),
                ));
            }
        }
        let max_token_lifetime = raw
            .max_token_lifetime
            .unwrap_or(Duration::from_secs(24 * 3600));
        if max_token_lifetime < Duration::from_secs(1) {
            return Err(invalid("max_token_lifetime", "must be at least 1s"));
        }
        Ok(Self {
            feed: FollowerOptions {
                endpoints,
                token,
                tls,
            },
            replica: ReplicaConfig {
                max_staleness,
                stale_policy,
                resync_interval,
            },
            issuers: raw.issuers,
            realm: raw.realm.unwrap_or_else(|| "jwt-revoker".to_owned()),
            payload_header,
            cache_max_bytes: raw.cache_max_bytes.unwrap_or(DEFAULT_CACHE_MAX_BYTES),
            lifetime: LifetimeRule {
                max_token_lifetime,
                allow_missing_iat: raw.allow_missing_iat,
            },
            revocable_claims: raw.revocable_claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_takes_the_servers_defaults() {
        let settings = FilterSettings::parse(br#"{"feed": "127.0.0.1:9191", "feed_token": "t"}"#)
            .expect("valid");
        assert_eq!(settings.feed.endpoints, ["http://127.0.0.1:9191"]);
        assert_eq!(settings.replica.max_staleness, Duration::from_secs(30));
        assert_eq!(settings.replica.stale_policy, StalePolicy::Deny);
        assert_eq!(settings.payload_header, DEFAULT_PAYLOAD_HEADER);
        assert_eq!(settings.cache_max_bytes, DEFAULT_CACHE_MAX_BYTES);
        assert_eq!(settings.realm, "jwt-revoker");
        assert!(settings.revocable_claims.is_empty());
        let with_claims = FilterSettings::parse(
            br#"{"feed": "a:1", "feed_token": "t", "revocable_claims": ["email"]}"#,
        )
        .expect("valid");
        assert_eq!(with_claims.revocable_claims, ["email"]);
        assert_eq!(
            settings.lifetime,
            LifetimeRule {
                max_token_lifetime: Duration::from_secs(24 * 3600),
                allow_missing_iat: false,
            }
        );
    }

    #[test]
    fn refuses_no_credential_bad_policy_unknown_keys_and_bad_headers() {
        for bad in [
            r#"{"feed": "127.0.0.1:1"}"#,
            r#"{"feed": [], "feed_token": "t"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "stale_policy": "allow"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "max_staleness": "10ms"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "surprise": 1}"#,
            r#"{"feed": "a:1", "feed_token": "t", "payload_header": "X Payload"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "headers": {"issuer": "x-iss"}}"#,
            r#"{"feed": "a:1", "feed_token": "t", "feed_token_file": "/x"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "max_token_lifetime": "0s"}"#,
            r#"{"feed": "a:1", "feed_token": "t", "revocable_claims": ["e=mail"]}"#,
            r#"{"feed": "a:1", "feed_token": "t", "revocable_claims": ["e.mail"]}"#,
            r#"{"feed": "a:1", "feed_token": "t", "revocable_claims": {"email": "x-jwt-email"}}"#,
            "not json",
        ] {
            assert!(FilterSettings::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
