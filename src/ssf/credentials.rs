//! Bearer tokens for a transmitter's endpoints: a static token, or one obtained with OAuth
//! 2.0 client credentials (RFC 6749 §4.4, HTTP Basic client authentication) and reused until
//! shortly before it expires or the transmitter refuses it. The poller and stream management
//! share it.

use crate::config::ssf::Credential;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The largest token response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest a token from a token endpoint is kept, whatever its `expires_in`.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// A token is renewed this long before the `expires_in` it came with.
const RENEW_EARLY: Duration = Duration::from_secs(30);

/// A source of bearer tokens.
pub struct TokenSource {
    credential: Credential,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `credential`.
    pub fn new(credential: Credential) -> Self {
        Self {
            credential,
            cached: Mutex::new(None),
        }
    }

    /// A bearer token: the static one, or a cached or newly obtained access token.
    pub async fn token(&self, client: &reqwest::Client) -> Result<String, String> {
        let Credential::ClientCredentials {
            token_endpoint,
            client_id,
            client_secret,
            scope,
        } = &self.credential
        else {
            let Credential::Bearer(token) = &self.credential else {
                return Err("no credential".to_owned());
            };
            return Ok(token.clone());
        };
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = client
            .post(token_endpoint)
            .basic_auth(client_id, Some(client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("token endpoint: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("token endpoint: HTTP {}", response.status()));
        }
        let bytes = super::body::read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|e| format!("token endpoint: {e}"))?;
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("token endpoint: {e}"))?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or("token endpoint: no access_token")?
            .to_owned();
        // A lifetime beyond a day is taken as a day: the token is renewed sooner, and a
        // huge `expires_in` cannot overflow the deadline.
        let lifetime = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(Duration::from_secs(300), |seconds| {
                Duration::from_secs(seconds.min(MAX_TOKEN_LIFETIME_SECS))
            });
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_EARLY),
        ));
        Ok(token)
    }

    /// Forgets a cached token (after the transmitter refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Sends the request `build` makes, with a bearer token; when the transmitter answers
    /// 401 to an OAuth access token, obtains a new token and sends it once more (the cached
    /// token may have been withdrawn before its `expires_in`). A static token is sent once.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let token = self.token(client).await?;
        let response = build()
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED
            || matches!(self.credential, Credential::Bearer(_))
        {
            return Ok(response);
        }
        {
            // Forget the refused token unless another request has renewed it meanwhile.
            let mut cached = self.cached.lock().await;
            if cached.as_ref().is_some_and(|(cached, _)| *cached == token) {
                *cached = None;
            }
        }
        let token = self.token(client).await?;
        build()
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssf::body::tests::answer_once;

    #[tokio::test]
    async fn a_huge_expires_in_is_kept_a_day_at_most_and_does_not_overflow() {
        let body = r#"{"access_token": "t-1", "expires_in": 18446744073709551615}"#;
        let url =
            answer_once(format!("content-length: {}\r\n\r\n{body}", body.len()).into_bytes()).await;
        let source = TokenSource::new(Credential::ClientCredentials {
            token_endpoint: url,
            client_id: "c".to_owned(),
            client_secret: "s".to_owned(),
            scope: None,
        });
        let client = reqwest::Client::new();
        assert_eq!(source.token(&client).await, Ok("t-1".to_owned()));
        let until = source.cached.lock().await.as_ref().map(|(_, until)| *until);
        let kept = until.expect("cached").duration_since(Instant::now());
        assert!(
            kept <= Duration::from_secs(MAX_TOKEN_LIFETIME_SECS),
            "{kept:?}"
        );
        // Cached: the one-request server is gone, yet the token is answered.
        assert_eq!(source.token(&client).await, Ok("t-1".to_owned()));
    }
}
