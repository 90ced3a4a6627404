//! SSF stream management, as the receiver: with management credentials, jwt-revoker finds
//! its stream at the transmitter's `configuration_endpoint` (by audience) and updates it
//! (PATCH) or creates it (POST) with its delivery (push: its push URL and authorization
//! header; poll: RFC 8936) and the event types it maps, then asks for a verification event
//! (`verification_endpoint`, a random `state` the stream then expects). Retried with backoff
//! until it succeeds or the server stops.

use super::receiver::Stream;
use super::setup::discover;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    /// The bearer token for the management API.
    pub bearer: String,
    /// The stream's delivery object (`method`, `endpoint_url`, `authorization_header`).
    pub delivery: Value,
}

impl std::fmt::Debug for ManagementSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Creates or updates the stream, then requests a verification; retries until done or
/// `stop` turns true.
pub async fn run(
    stream: Arc<Stream>,
    settings: ManagementSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match manage(&stream, &settings).await {
            Ok(stream_id) => {
                tracing::info!(stream = %stream.name(), %stream_id, "ssf stream configured at the transmitter; verification requested");
                return;
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
    }
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

async fn manage(stream: &Stream, settings: &ManagementSettings) -> Result<String, String> {
    let metadata = discover(&settings.issuer)
        .await
        .map_err(|(url, message)| format!("metadata at {url}: {message}"))?;
    let configuration = endpoint(&metadata, "configuration_endpoint")?
        .ok_or("the transmitter has no configuration_endpoint")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let send = |request: reqwest::RequestBuilder, body: Option<&Value>| {
        let request = request
            .bearer_auth(&settings.bearer)
            .header(reqwest::header::ACCEPT, "application/json");
        let request = match body {
            Some(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => request,
        };
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            Ok::<Value, String>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let existing = send(client.get(&configuration), None).await?;
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
            send(client.patch(&configuration), Some(&body)).await?
        }
        None => send(client.post(&configuration), Some(&body)).await?,
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
    if let Some(verification) = endpoint(&metadata, "verification_endpoint")? {
        let state = random_state();
        stream.expect_verification(state.clone());
        let request = json!({"stream_id": stream_id, "state": state});
        let response = client
            .post(&verification)
            .bearer_auth(&settings.bearer)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("verification request: HTTP {}", response.status()));
        }
    }
    Ok(stream_id)
}

/// 128 random bits, hex.
fn random_state() -> String {
    let mut bytes = [0_u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
