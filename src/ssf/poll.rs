//! RFC 8936 poll delivery: a poller per stream POSTs `{maxEvents, returnImmediately, ack,
//! setErrs}` to the transmitter's poll endpoint (long poll), feeds each SET through the
//! [`Receiver`], acknowledges a SET only after its revocations are durable, reports refused
//! SETs in `setErrs`, and leaves SETs it could not record (store outage) unacknowledged so the
//! transmitter redelivers them. Every replica may poll: receiving is idempotent.

use super::receiver::{ReceiveError, Receiver};
use crate::clock::unix_now;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The most SETs asked for per poll.
const MAX_EVENTS: u64 = 100;
/// The largest poll response read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The longest wait between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one stream is polled.
pub struct PollSettings {
    /// The stream's name in the receiver.
    pub stream: String,
    /// The transmitter's poll endpoint.
    pub endpoint: String,
    /// Where the bearer token sent with each poll comes from.
    pub credential: super::credentials::TokenSource,
    /// How long the transmitter may hold a long poll (the request times out a little later).
    pub long_poll: Duration,
}

impl std::fmt::Debug for PollSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSettings")
            .field("stream", &self.stream)
            .field("endpoint", &self.endpoint)
            .field("long_poll", &self.long_poll)
            .finish_non_exhaustive()
    }
}

/// What one poll's SETs came to: the `ack` and `setErrs` of the next request, and whether
/// some SET must be retried (store outage).
#[derive(Debug, Default)]
struct Outcome {
    ack: Vec<String>,
    set_errs: Map<String, Value>,
    retry: bool,
}

/// Polls one stream until `stop` turns true.
pub async fn run(receiver: Arc<Receiver>, settings: PollSettings, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(settings.long_poll + Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(stream = %settings.stream, %error, "ssf poller cannot start");
            return;
        }
    };
    let mut pending = Outcome::default();
    let mut backoff = Duration::from_millis(200);
    let mut return_immediately = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let request = json!({
            "maxEvents": MAX_EVENTS,
            "returnImmediately": return_immediately,
            "ack": pending.ack,
            "setErrs": pending.set_errs,
        });
        let poll = poll_once(&client, &settings, &request);
        let answer = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            answer = poll => answer,
        };
        match answer {
            Ok((sets, more)) => {
                // The acknowledgements went through; these SETs make the next ones.
                pending = process(&receiver, &settings.stream, sets).await;
                return_immediately = more || pending.retry;
                if pending.retry {
                    wait(&mut stop, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                } else {
                    backoff = Duration::from_millis(200);
                }
            }
            Err(error) => {
                tracing::warn!(stream = %settings.stream, %error, "ssf poll failed; retrying");
                wait(&mut stop, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                return_immediately = true;
            }
        }
    }
}

async fn wait(stop: &mut watch::Receiver<bool>, pause: Duration) {
    tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => {}
        () = tokio::time::sleep(pause) => {}
    }
}

/// One poll: the SETs by `jti`, and `moreAvailable`.
async fn poll_once(
    client: &reqwest::Client,
    settings: &PollSettings,
    request: &Value,
) -> Result<(Vec<(String, String)>, bool), String> {
    let bearer = settings.credential.token(client).await?;
    let response = client
        .post(&settings.endpoint)
        .bearer_auth(bearer)
        .header(reqwest::header::CONTENT_LANGUAGE, "en")
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(request.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        // An expired or withdrawn token: the next poll gets a new one.
        settings.credential.invalidate().await;
    }
    if !response.status().is_success() {
        return Err(format!("HTTP status {}", response.status()));
    }
    let body = super::body::read_capped(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| format!("poll {e}"))?;
    let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
    let more = answer
        .get("moreAvailable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let sets = match answer.get("sets") {
        None => Vec::new(),
        Some(Value::Object(sets)) => sets
            .iter()
            .filter_map(|(jti, set)| set.as_str().map(|set| (jti.clone(), set.to_owned())))
            .collect(),
        Some(_) => return Err("sets is not an object".to_owned()),
    };
    Ok((sets, more))
}

async fn process(receiver: &Receiver, stream: &str, sets: Vec<(String, String)>) -> Outcome {
    let mut outcome = Outcome::default();
    let Some(stream) = receiver.stream(stream) else {
        return outcome;
    };
    for (jti, set) in sets {
        match receiver.receive(stream, set.as_bytes(), unix_now()).await {
            Ok(_) => outcome.ack.push(jti),
            Err(ReceiveError::Refused(error)) if error.is_transient() => outcome.retry = true,
            Err(ReceiveError::Refused(error)) => {
                outcome.set_errs.insert(
                    jti,
                    json!({"err": error.code(), "description": error.to_string()}),
                );
            }
            Err(ReceiveError::Store(_)) => outcome.retry = true,
        }
    }
    outcome
}
