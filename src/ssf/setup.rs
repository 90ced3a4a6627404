//! Building the [`Receiver`] from `[[ssf.streams]]` at start-up: each stream's transmitter
//! keys, discovered through the transmitter's metadata (`/.well-known/ssf-configuration`,
//! else Google's `/.well-known/risc-configuration`) when not configured.

use super::metrics::SsfMetrics;
use super::receiver::{Receiver, Stream};
use super::verify::StreamVerifier;
use crate::admin::Revoker;
use crate::config::{KeySource, SsfConfig};
use crate::token::KeyError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The largest metadata document read.
const MAX_METADATA_BYTES: usize = 64 * 1024;
/// How long a metadata fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the Global Token Revocation endpoint's logic when `[ssf.global_token_revocation]`
/// is configured.
pub async fn build_gtr(
    config: &SsfConfig,
    admin: crate::config::AdminAuth,
    revoker: Arc<Revoker>,
    leeway: Duration,
) -> Result<Option<super::gtr::GlobalRevocation>, SetupError> {
    let Some(gtr) = &config.global_token_revocation else {
        return Ok(None);
    };
    let caller =
        match &gtr.caller {
            Some(caller) => Some(super::gtr::CallerVerifier::new(caller).await.map_err(
                |source| SetupError::Keys {
                    index: 0,
                    name: "global_token_revocation".to_owned(),
                    source,
                },
            )?),
            None => None,
        };
    Ok(Some(super::gtr::GlobalRevocation::new(
        admin,
        caller,
        gtr.policy.clone(),
        revoker,
        leeway.as_secs(),
    )))
}

/// Starts a poller for every stream delivered by poll; they stop when `stop` turns true.
pub fn spawn_pollers(
    config: &SsfConfig,
    receiver: &Arc<Receiver>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    config
        .streams
        .iter()
        .filter_map(|stream| match &stream.delivery {
            crate::config::ssf::Delivery::Poll {
                endpoint,
                credential,
                long_poll,
            } => Some(tokio::spawn(super::poll::run(
                Arc::clone(receiver),
                super::poll::PollSettings {
                    stream: stream.name.clone(),
                    endpoint: endpoint.clone(),
                    credential: super::credentials::TokenSource::new(credential.clone()),
                    long_poll: *long_poll,
                },
                stop.clone(),
            ))),
            crate::config::ssf::Delivery::Push => None,
        })
        .collect()
}

/// Starts the stream management of every stream given management credentials: each task
/// configures its stream, then verifies it (once, or every `verification_interval`) until
/// `stop` turns true.
pub fn spawn_management(
    config: &SsfConfig,
    receiver: &Arc<Receiver>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    config
        .streams
        .iter()
        .filter_map(|stream| {
            let management = stream.management.as_ref()?;
            let delivery = match &stream.delivery {
                crate::config::ssf::Delivery::Push => {
                    let mut delivery = serde_json::json!({
                        "method": "urn:ietf:rfc:8935",
                        "endpoint_url": management.push_url,
                    });
                    if let Some(secret) = &stream.push_secret {
                        delivery["authorization_header"] =
                            serde_json::json!(format!("Bearer {secret}"));
                    }
                    delivery
                }
                crate::config::ssf::Delivery::Poll { endpoint, .. } => {
                    serde_json::json!({"method": "urn:ietf:rfc:8936", "endpoint_url": endpoint})
                }
            };
            let target = Arc::clone(receiver.stream(&stream.name)?);
            Some(tokio::spawn(super::management::run(
                target,
                super::management::ManagementSettings {
                    issuer: stream.transmitter.issuer.clone(),
                    audience: stream
                        .transmitter
                        .audiences
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    credential: Arc::new(super::credentials::TokenSource::new(
                        management.credential.clone(),
                    )),
                    delivery,
                    verification_interval: management.verification_interval,
                    verification_timeout: management.verification_timeout,
                },
                super::verification::Verifier::new(
                    Arc::clone(receiver.store()),
                    receiver.metrics().clone(),
                ),
                stop.clone(),
            )))
        })
        .collect()
}

/// Why the receiver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A stream's transmitter keys could not be set up.
    #[error("ssf.streams[{index}] ({name}): {source}")]
    Keys {
        /// The stream's position.
        index: usize,
        /// Its name.
        name: String,
        /// Why.
        source: KeyError,
    },
    /// A stream's transmitter metadata could not be read or is not acceptable.
    #[error("ssf.streams[{index}] ({name}): transmitter metadata at {url}: {message}")]
    Discovery {
        /// The stream's position.
        index: usize,
        /// Its name.
        name: String,
        /// The metadata URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// The metadata URLs of an issuer (path insertion, RFC 8414 style), SSF's first.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(issuer) else {
        return Vec::new();
    };
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    ["ssf-configuration", "risc-configuration"]
        .iter()
        .map(|name| format!("{origin}/.well-known/{name}{path}"))
        .collect()
}

/// Reads the transmitter's metadata and returns its `jwks_uri`; the metadata's `issuer` must
/// be the configured one.
pub async fn discover_jwks_uri(issuer: &str) -> Result<String, (String, String)> {
    let metadata = discover(issuer).await?;
    let url = metadata_urls(issuer).into_iter().next().unwrap_or_default();
    let Some(jwks_uri) = metadata.get("jwks_uri").and_then(Value::as_str) else {
        return Err((url, "no jwks_uri".to_owned()));
    };
    let parsed = url::Url::parse(jwks_uri).map_err(|e| (url.clone(), e.to_string()))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err((url, "jwks_uri must be https".to_owned()));
    }
    Ok(jwks_uri.to_owned())
}

/// Reads the transmitter's metadata (SSF's, else RISC's well-known document); its `issuer`
/// must be the configured one.
pub async fn discover(issuer: &str) -> Result<Value, (String, String)> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| (issuer.to_owned(), e.to_string()))?;
    let mut last = (issuer.to_owned(), "no metadata URL".to_owned());
    for url in metadata_urls(issuer) {
        let response = match client.get(&url).send().await {
            Ok(response) => response,
            Err(error) => {
                last = (url, error.to_string());
                continue;
            }
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            last = (url, "404".to_owned());
            continue;
        }
        if !response.status().is_success() {
            return Err((url, format!("HTTP status {}", response.status())));
        }
        let body = super::body::read_capped(response, MAX_METADATA_BYTES)
            .await
            .map_err(|e| (url.clone(), e))?;
        let metadata: Value =
            serde_json::from_slice(&body).map_err(|e| (url.clone(), format!("not JSON: {e}")))?;
        if metadata.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err((url, "its issuer is not the configured issuer".to_owned()));
        }
        return Ok(metadata);
    }
    Err(last)
}

/// Builds the receiver: loads (or discovers) every stream's transmitter keys.
pub async fn build(
    config: &SsfConfig,
    revoker: Arc<Revoker>,
    metrics: SsfMetrics,
) -> Result<Receiver, SetupError> {
    let mut streams = Vec::with_capacity(config.streams.len());
    for (index, stream) in config.streams.iter().enumerate() {
        let mut transmitter = stream.transmitter.clone();
        if transmitter.keys == KeySource::None && transmitter.hmac_secret_file.is_none() {
            let jwks_uri =
                discover_jwks_uri(&transmitter.issuer)
                    .await
                    .map_err(|(url, message)| SetupError::Discovery {
                        index,
                        name: stream.name.clone(),
                        url,
                        message,
                    })?;
            tracing::info!(stream = %stream.name, %jwks_uri, "transmitter keys discovered");
            transmitter.keys = KeySource::Uri(jwks_uri);
        }
        let verifier = StreamVerifier::new(index, &transmitter)
            .await
            .map_err(|source| SetupError::Keys {
                index,
                name: stream.name.clone(),
                source,
            })?;
        let (method, endpoint) = match &stream.delivery {
            crate::config::ssf::Delivery::Push => (
                "push",
                stream
                    .management
                    .as_ref()
                    .map(|m| m.push_url.clone())
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| format!("/ssf/push/{}", stream.name)),
            ),
            crate::config::ssf::Delivery::Poll { endpoint, .. } => ("poll", endpoint.clone()),
        };
        streams.push(
            Stream::new(
                stream.name.clone(),
                verifier,
                stream.policy.clone(),
                stream.push_secret.clone(),
            )
            .with_delivery(method, endpoint),
        );
    }
    Ok(Receiver::new(streams, revoker, metrics))
}
