//! Shared Signals test setup: the `[[ssf.streams]]` entry `idp` for a test
//! [`Transmitter`], built key by key together with the environment variables its secrets
//! are read from, and the subjects and SETs the tests send about users of the test issuer.

use super::http::Response;
use super::server::ServerBuilder;
use super::tokens;
use super::transmitter::{
    MANAGEMENT_CLIENT, MANAGEMENT_TOKEN, POLL_CLIENT, POLL_TOKEN, Transmitter, push,
};
use serde_json::{Value, json};

/// The stream's name.
pub const STREAM: &str = "idp";

/// The audience the stream's SETs are for.
pub const AUDIENCE: &str = "https://revoker.test/ssf";

/// The push secret (the receiver's `authorization_header_env` value, without `Bearer `).
pub const PUSH_SECRET: &str = "0123456789abcdef-push-secret";

/// The `Authorization` header a transmitter pushes with: `Bearer <PUSH_SECRET>`.
pub const PUSH_AUTHORIZATION: &str = "Bearer 0123456789abcdef-push-secret";

/// The stream's push endpoint path on the admin port.
pub const PUSH_PATH: &str = "/ssf/push/idp";

/// The push endpoint's URL on a server whose admin port is `admin_port`.
pub fn push_url(admin_port: u16) -> String {
    format!("http://127.0.0.1:{admin_port}{PUSH_PATH}")
}

/// Pushes `set` to [`PUSH_PATH`] on the admin port `port` with [`PUSH_AUTHORIZATION`], as
/// the transmitter would, and returns the answer.
pub fn push_set(port: u16, set: &str) -> Response {
    push(port, PUSH_PATH, set, Some(PUSH_AUTHORIZATION))
}

/// An `iss_sub` subject: `sub` at the test token issuer.
pub fn user(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": tokens::ISSUER, "sub": sub})
}

/// A SET from `transmitter` for [`AUDIENCE`] of `event_type` about [`user`] `sub`.
pub fn user_set(transmitter: &Transmitter, event_type: &str, sub: &str, event: Value) -> String {
    transmitter.set(AUDIENCE, event_type, user(sub), event)
}

/// The `[[ssf.streams]]` entry [`STREAM`] from a test transmitter (issuer, [`AUDIENCE`], the
/// test token issuer), with the settings each method adds, and the environment variables
/// those settings name.
#[derive(Clone)]
pub struct StreamConfig<'a> {
    transmitter: &'a Transmitter,
    entry: toml::Table,
    env: Vec<(String, String)>,
}

impl<'a> StreamConfig<'a> {
    /// The entry with only its name, issuer, audience and token issuers (push delivery,
    /// unmanaged).
    pub fn new(transmitter: &'a Transmitter) -> Self {
        let mut stream = Self {
            transmitter,
            entry: toml::Table::new(),
            env: Vec::new(),
        };
        stream = stream
            .key("name", STREAM)
            .key("issuer", &transmitter.issuer())
            .key("audience", AUDIENCE);
        stream.entry.insert(
            "token_issuers".to_owned(),
            toml::Value::Array(vec![toml::Value::String(tokens::ISSUER.to_owned())]),
        );
        stream
    }

    /// Sets the string setting `name` to `value`.
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.entry
            .insert(name.to_owned(), toml::Value::String(value.to_owned()));
        self
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Pushes must carry `authorization` (`authorization_header_env`, read from
    /// `TEST_SSF_PUSH_SECRET`).
    pub fn push_authorization(self, authorization: &str) -> Self {
        self.key("authorization_header_env", "TEST_SSF_PUSH_SECRET")
            .env("TEST_SSF_PUSH_SECRET", authorization)
    }

    /// The push URL given to the transmitter: [`push_url`] of `admin_port`.
    pub fn push_url(self, admin_port: u16) -> Self {
        self.key("push_url", &push_url(admin_port))
    }

    /// Poll delivery from the transmitter's poll endpoint, long polls of a second.
    pub fn poll(self) -> Self {
        let endpoint = self.transmitter.poll_endpoint();
        self.key("delivery", "poll")
            .key("poll_endpoint", &endpoint)
            .key("long_poll", "1s")
    }

    /// Polls with the static [`POLL_TOKEN`] (`poll_token_env`, from `TEST_SSF_POLL_TOKEN`).
    pub fn poll_token(self) -> Self {
        self.key("poll_token_env", "TEST_SSF_POLL_TOKEN")
            .env("TEST_SSF_POLL_TOKEN", POLL_TOKEN)
    }

    /// Polls with an access token for [`POLL_CLIENT`] from the transmitter's token endpoint
    /// (scope `ssf.read`; the secret from `TEST_SSF_POLL_SECRET`).
    pub fn poll_client_credentials(self) -> Self {
        let token_endpoint = self.transmitter.token_endpoint();
        self.key("poll_token_endpoint", &token_endpoint)
            .key("poll_client_id", POLL_CLIENT.0)
            .key("poll_client_secret_env", "TEST_SSF_POLL_SECRET")
            .key("poll_scope", "ssf.read")
            .env("TEST_SSF_POLL_SECRET", POLL_CLIENT.1)
    }

    /// Manages the stream with the static [`MANAGEMENT_TOKEN`] (`management_token_env`,
    /// from `TEST_SSF_MANAGEMENT_TOKEN`).
    pub fn management_token(self) -> Self {
        self.key("management_token_env", "TEST_SSF_MANAGEMENT_TOKEN")
            .env("TEST_SSF_MANAGEMENT_TOKEN", MANAGEMENT_TOKEN)
    }

    /// Manages the stream with access tokens for the client
    /// [`MANAGEMENT_CLIENT`] from the transmitter's
    /// token endpoint (scope `ssf.manage`), sending `secret` as its client secret (from
    /// `TEST_SSF_MANAGEMENT_SECRET`).
    pub fn management_client(self, secret: &str) -> Self {
        let token_endpoint = self.transmitter.token_endpoint();
        self.key("management_token_endpoint", &token_endpoint)
            .key("management_client_id", MANAGEMENT_CLIENT.0)
            .key("management_client_secret_env", "TEST_SSF_MANAGEMENT_SECRET")
            .key("management_scope", "ssf.manage")
            .env("TEST_SSF_MANAGEMENT_SECRET", secret)
    }

    /// Verifies the stream every `interval`, failing after `timeout` without the event.
    pub fn verification(self, interval: &str, timeout: &str) -> Self {
        self.key("verification_interval", interval)
            .key("verification_timeout", timeout)
    }

    /// The entry as TOML to merge into a server config.
    pub fn toml(&self) -> String {
        let mut ssf = toml::Table::new();
        ssf.insert(
            "streams".to_owned(),
            toml::Value::Array(vec![toml::Value::Table(self.entry.clone())]),
        );
        let mut config = toml::Table::new();
        config.insert("ssf".to_owned(), toml::Value::Table(ssf));
        toml::to_string(&config).expect("serialize the stream entry")
    }

    /// `server` with this entry in its config and the environment variables it names.
    pub fn configure(&self, server: ServerBuilder) -> ServerBuilder {
        self.env
            .iter()
            .fold(server, |server, (name, value)| server.env(name, value))
            .extra_toml(&self.toml())
    }
}
