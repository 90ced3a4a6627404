//! SSF stream management, as the receiver: with management credentials, jwt-revoker finds
//! its stream at the transmitter's `configuration_endpoint` (by audience) and updates it
//! (PATCH) or creates it (POST) with its delivery (push: its push URL and authorization
//! header; poll: RFC 8936) and the event types it maps (retried with backoff until it
//! succeeds or the server stops); then [`super::verification`] verifies the stream and reads
//! its status. Every call carries a bearer token from the stream's management credential
//! (static, or OAuth client credentials renewed once on a 401).

use super::credentials::TokenSource;
use super::receiver::Stream;
use super::setup::discover;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The largest configuration or status answer read from a transmitter.
const MAX_MANAGEMENT_RESPONSE_BYTES: usize = 256 * 1024;
/// The longest `min_verification_interval` honoured (a transmitter asking for more gets
/// verified daily): a huge value must neither overflow a deadline nor stop verification.
const MAX_MIN_VERIFICATION_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The event types requested: every type the mapping acts on or records.
pub const EVENTS_REQUESTED: &[&str] = &[
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change",
    "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change",
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change",
    "https://schemas.openid.net/secevent/caep/event-type/risk-level-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-purged",
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise",
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required",
    "https://schemas.openid.net/secevent/risc/event-type/identifier-recycled",
    "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked",
    "https://schemas.openid.net/secevent/oauth/event-type/client-disabled",
    "https://schemas.openid.net/secevent/oauth/event-type/client-credential-changed",
];

/// What managing one stream needs.
#[derive(Clone)]
pub struct ManagementSettings {
    /// The transmitter's issuer (its metadata names the endpoints).
    pub issuer: String,
    /// The stream's audience, by which an existing stream is found.
    pub audience: String,
    /// Where the management API's bearer tokens come from (static or client credentials).
    pub credential: Arc<TokenSource>,
    /// The stream's delivery object (`method`, `endpoint_url`, `authorization_header`).
    pub delivery: Value,
    /// How often to verify (`None`: once, after the stream is configured).
    pub verification_interval: Option<Duration>,
    /// How long a requested verification event may take.
    pub verification_timeout: Duration,
}

impl std::fmt::Debug for ManagementSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("verification_interval", &self.verification_interval)
            .finish_non_exhaustive()
    }
}

/// The stream as configured at the transmitter, and its endpoints.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The stream's id at the transmitter.
    pub stream_id: String,
    /// The transmitter's `status_endpoint`, if any.
    pub status_endpoint: Option<String>,
    /// The transmitter's `verification_endpoint`, if any.
    pub verification_endpoint: Option<String>,
    /// The stream's `min_verification_interval` (seconds), if the transmitter set one.
    pub min_verification_interval: Option<Duration>,
}

/// Creates or updates the stream (retrying with backoff), then verifies it (once, or every
/// `verification_interval`) and reads its status, until `stop` turns true.
pub async fn run(
    stream: Arc<Stream>,
    settings: ManagementSettings,
    verifier: super::verification::Verifier,
    mut stop: watch::Receiver<bool>,
) {
    let client = match client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(stream = %stream.name(), %error, "ssf stream management cannot start");
            return;
        }
    };
    let mut backoff = Duration::from_millis(500);
    let configured = loop {
        match manage(&client, &stream, &settings).await {
            Ok(configured) => {
                tracing::info!(stream = %stream.name(), stream_id = %configured.stream_id, "ssf stream configured at the transmitter");
                break configured;
            }
            Err(error) => {
                tracing::warn!(stream = %stream.name(), %error, "ssf stream management failed; retrying");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    };
    verifier
        .run(&client, &stream, &settings, &configured, stop)
        .await;
}

/// The HTTP client for the management API.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

fn endpoint(metadata: &Value, name: &str) -> Result<Option<String>, String> {
    let Some(url) = metadata.get(name).and_then(Value::as_str) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(url).map_err(|e| format!("{name}: {e}"))?;
    let loopback = parsed
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(format!("{name} must be https"));
    }
    Ok(Some(url.to_owned()))
}

/// Sends a management request (JSON `body` if any) with the stream's credential, and reads
/// a JSON answer (`null` when empty); an HTTP error status is an error naming it.
pub async fn call(
    client: &reqwest::Client,
    credential: &TokenSource,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let response = credential
        .send(client, || {
            let request = client
                .request(method.clone(), url)
                .header(reqwest::header::ACCEPT, "application/json");
            match body {
                Some(body) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
                None => request,
            }
        })
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = super::body::read_capped(response, MAX_MANAGEMENT_RESPONSE_BYTES).await?;
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn manage(
    client: &reqwest::Client,
    stream: &Stream,
    settings: &ManagementSettings,
) -> Result<Configured, String> {
    let metadata = discover(&settings.issuer)
        .await
        .map_err(|(url, message)| format!("metadata at {url}: {message}"))?;
    let configuration = endpoint(&metadata, "configuration_endpoint")?
        .ok_or("the transmitter has no configuration_endpoint")?;
    let credential = &settings.credential;
    let existing = call(
        client,
        credential,
        reqwest::Method::GET,
        &configuration,
        None,
    )
    .await?;
    let ours = |config: &Value| match config.get("aud") {
        Some(Value::String(aud)) => *aud == settings.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&settings.audience)),
        _ => false,
    };
    let found = match &existing {
        Value::Array(configs) => configs.iter().find(|c| ours(c)).cloned(),
        config @ Value::Object(_) if ours(config) => Some(config.clone()),
        _ => None,
    };
    let mut body = json!({
        "aud": settings.audience,
        "delivery": settings.delivery,
        "events_requested": EVENTS_REQUESTED,
        "description": "jwt-revoker",
    });
    let answer = match found
        .as_ref()
        .and_then(|c| c.get("stream_id"))
        .and_then(Value::as_str)
    {
        Some(stream_id) => {
            body["stream_id"] = json!(stream_id);
            call(
                client,
                credential,
                reqwest::Method::PATCH,
                &configuration,
                Some(&body),
            )
            .await?
        }
        None => {
            call(
                client,
                credential,
                reqwest::Method::POST,
                &configuration,
                Some(&body),
            )
            .await?
        }
    };
    if answer
        .get("iss")
        .and_then(Value::as_str)
        .is_some_and(|iss| iss != settings.issuer)
    {
        return Err("the stream's iss is not the transmitter".to_owned());
    }
    let stream_id = answer
        .get("stream_id")
        .and_then(Value::as_str)
        .ok_or("the transmitter returned no stream_id")?
        .to_owned();
    stream.set_stream_id(stream_id.clone());
    Ok(Configured {
        stream_id,
        status_endpoint: endpoint(&metadata, "status_endpoint")?,
        verification_endpoint: endpoint(&metadata, "verification_endpoint")?,
        min_verification_interval: answer
            .get("min_verification_interval")
            .and_then(Value::as_u64)
            .map(|seconds| Duration::from_secs(seconds).min(MAX_MIN_VERIFICATION_INTERVAL)),
    })
}

/// 128 random bits, hex.
pub fn random_state() -> String {
    let mut bytes = [0_u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
