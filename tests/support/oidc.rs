//! A real OpenID Provider for the tests: npm's `oidc-provider` (installed by
//! `scripts/test.sh` into `tests/oidc/node_modules` from the pinned `package-lock.json`),
//! run by `tests/oidc/provider.mjs` under Node on free loopback ports, and driven through
//! that script's control API: log a user in (authorization code flow, a new browser session
//! each time), RP-initiated logout, refresh. Killed and reaped on drop.

use super::http::{Request, Response};
use super::ports::free_port;
use super::{kill_and_reap, repo_root, wait_until};
use serde_json::{Value, json};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The resource (access-token audience) the provider issues tokens for.
pub const RESOURCE: &str = "https://api.test";
/// The client id of the provider's one client (the back-channel logout audience).
pub const CLIENT_ID: &str = "app";

/// One login: the tokens and the browser session's cookies.
#[derive(Debug, Clone)]
pub struct Login {
    /// The JWT access token (RFC 9068, with `sid`).
    pub access_token: String,
    /// The `offline_access` refresh token.
    pub refresh_token: String,
    /// The session id in the access token.
    pub sid: String,
    /// The browser's cookies, for the logout.
    pub cookies: Value,
}

/// A running provider.
pub struct OpenIdProvider {
    child: Option<Child>,
    op_port: u16,
    control_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OpenIdProvider {
    /// Ports for a provider to be started later (so that its issuer URL can go into a
    /// config first).
    pub fn ports() -> (u16, u16) {
        (free_port(), free_port())
    }

    /// The issuer URL for `op_port`.
    pub fn issuer_for(op_port: u16) -> String {
        format!("http://127.0.0.1:{op_port}")
    }

    /// Starts the provider on `ports` with extra environment `env` (e.g. `BACKCHANNEL_URI`,
    /// the bridge's `BRIDGE_*`, `KEY_ID`).
    pub fn start(ports: (u16, u16), env: &[(&str, &str)]) -> Self {
        let script = repo_root().join("tests/oidc/provider.mjs");
        let installed = repo_root().join("tests/oidc/node_modules/oidc-provider/package.json");
        assert!(
            installed.exists(),
            "oidc-provider is not installed: run scripts/test.sh (or npm ci --prefix tests/oidc)"
        );
        assert!(script.exists());
        let dir = tempfile::tempdir().expect("temp dir");
        let mut provider = Self {
            child: None,
            op_port: ports.0,
            control_port: ports.1,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: dir.path().join("provider.log"),
            _dir: dir,
        };
        provider.launch();
        provider
    }

    fn launch(&mut self) {
        let log = File::create(&self.log).expect("log file");
        let child = Command::new("node")
            .arg(repo_root().join("tests/oidc/provider.mjs"))
            .env("OP_PORT", self.op_port.to_string())
            .env("CONTROL_PORT", self.control_port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start node (Node.js is required)");
        self.child = Some(child);
        let port = self.control_port;
        wait_until("oidc-provider ready", Duration::from_secs(30), |last| {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("oidc-provider exited ({status}): {}", self.log());
            }
            match Request::get("/ready").try_send(port) {
                Ok(response) if response.status == 204 => Some(()),
                Ok(response) => {
                    *last = format!("HTTP {}", response.status);
                    None
                }
                Err(error) => {
                    *last = error;
                    None
                }
            }
        });
    }

    /// Restarts it with `KEY_ID` = `kid`: a freshly generated signing key (a key rotation);
    /// its in-memory state (sessions, grants) is lost.
    pub fn restart_with_key(&mut self, kid: &str) {
        kill_and_reap(&mut self.child);
        self.env.retain(|(k, _)| k != "KEY_ID");
        self.env.push(("KEY_ID".to_owned(), kid.to_owned()));
        self.launch();
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        Self::issuer_for(self.op_port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn control(&self, path: &str, body: &Value) -> Value {
        let response: Response = Request::new("POST", path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send(self.control_port);
        assert_eq!(
            response.status,
            200,
            "{path}: {}\nprovider log:\n{}",
            response.text(),
            self.log()
        );
        response.json()
    }

    /// Logs `sub` in, in a new browser session.
    pub fn login(&self, sub: &str) -> Login {
        let answer = self.control("/login", &json!({ "sub": sub }));
        let text = |name: &str| answer[name].as_str().expect(name).to_owned();
        Login {
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
            sid: text("sid"),
            cookies: answer["cookies"].clone(),
        }
    }

    /// RP-initiated logout of that login's browser session (which sends the back-channel
    /// logout before it answers).
    pub fn logout(&self, login: &Login) {
        self.control("/logout", &json!({ "cookies": login.cookies }));
    }

    /// A new access token from the login's refresh token.
    pub fn refresh(&self, login: &Login) -> String {
        let answer = self.control("/refresh", &json!({ "refresh_token": login.refresh_token }));
        answer["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// The claims of a JWT, unverified.
pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
