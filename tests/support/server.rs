//! jwt-revoker as a child process for end-to-end tests: writes a config into a temp dir,
//! runs `jwt-revoker serve` on free loopback ports, waits for gRPC health to say SERVING on
//! both ports, and runs the client commands (`revoke`, `list`, …) against it.
//!
//! The config trusts [`ISSUER`](super::tokens::ISSUER) (fixture JWKS; RS256, PS256,
//! ES256, ES384, EdDSA) and [`HMAC_ISSUER`](super::tokens::HMAC_ISSUER) (HS256), both for
//! audience `api`; sends claim `sub` upstream as `x-jwt-sub` and strips `authorization`.
//! The admin token is `tests/fixtures/admin-token.txt`.

use super::{fixture, ports::free_port, wait_until};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long the server may take to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server binary built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_jwt-revoker");

/// The admin token of the test servers (`tests/fixtures/admin-token.txt`, trimmed).
pub fn admin_token() -> String {
    let path = fixture("admin-token.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Where the server keeps revocations.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded store in `<temp dir>/data`, which survives [`ServerProcess::restart`].
    Embedded,
    /// Redis at this URL.
    Redis(String),
    /// These lines in `[store]` (e.g. `sentinels = […]`), as given.
    Toml(String),
}

/// Configures a [`ServerProcess`] before starting it.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    store: Store,
    extra_toml: Vec<String>,
    issuer_toml: Vec<(usize, String)>,
    env: Vec<(String, String)>,
    log_level: String,
    require_serving: bool,
    admin_port: Option<u16>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            store: Store::Embedded,
            extra_toml: Vec::new(),
            issuer_toml: Vec::new(),
            env: Vec::new(),
            log_level: "info,jwt_revoker=debug".to_owned(),
            require_serving: true,
            admin_port: None,
        }
    }
}

impl ServerBuilder {
    /// Uses the embedded store (the default).
    pub fn embedded(mut self) -> Self {
        self.store = Store::Embedded;
        self
    }

    /// Uses the store these `[store]` lines describe (e.g. Sentinel or Cluster settings).
    pub fn store_toml(mut self, lines: &str) -> Self {
        self.store = Store::Toml(lines.to_owned());
        self
    }

    /// Uses Redis at `url` (e.g. a `RedisProcess`'s URL).
    pub fn redis(mut self, url: &str) -> Self {
        self.store = Store::Redis(url.to_owned());
        self
    }

    /// Merges TOML into the generated config. Tables merge key by key; any other value
    /// replaces the generated one, except `[[issuers]]` entries, which are added after the
    /// two generated issuers. E.g. `"leeway = \"0s\"\n[response]\nrealm = \"t\""`.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push(toml.to_owned());
        self
    }

    /// Merges TOML into the generated `[[issuers]]` entry `index` (0: the JWKS issuer,
    /// 1: the HMAC issuer), e.g. `backchannel_audiences = ["web"]`.
    pub fn issuer_toml(mut self, index: usize, toml: &str) -> Self {
        self.issuer_toml.push((index, toml.to_owned()));
        self
    }

    /// Sets an environment variable for the server process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Listens for the admin API on this port (e.g. one already written into `extra_toml`,
    /// as a URL the server must know), instead of a free one picked at start.
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    /// Sets `log_level` (default `info,jwt_revoker=debug`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Waits at start only until both ports answer health checks, SERVING or not (for a
    /// server whose store is down).
    pub fn serving_not_required(mut self) -> Self {
        self.require_serving = false;
        self
    }

    /// Writes the config, starts the server and waits until both ports are SERVING (or only
    /// answering, after [`serving_not_required`](Self::serving_not_required)).
    pub fn start(self) -> ServerProcess {
        let dir = tempfile::Builder::new()
            .prefix("jwt-revoker-test-")
            .tempdir()
            .expect("create a temp dir for the server");
        let mut server = ServerProcess {
            child: None,
            authz_port: 0,
            admin_port: 0,
            metrics_port: 0,
            config_path: dir.path().join("config.toml"),
            log_path: dir.path().join("server.log"),
            data_dir: dir.path().join("data"),
            env: self.env.clone(),
            require_serving: self.require_serving,
            _dir: dir,
        };
        // A freshly picked free port can be taken before the server binds it; then try
        // again with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.authz_port = free_port();
            server.admin_port = self.admin_port.unwrap_or_else(free_port);
            server.metrics_port = free_port();
            // The metrics port goes first, so that an `extra_toml` can still replace it.
            let mut builder = self.clone();
            builder.extra_toml.insert(
                0,
                format!("metrics_addr = \"127.0.0.1:{}\"", server.metrics_port),
            );
            let config =
                builder.config_toml(server.authz_port, server.admin_port, &server.data_dir);
            std::fs::write(&server.config_path, config).expect("write config.toml");
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if attempt < 3 && log.contains("ddress already in use") => continue,
                Err(log) => panic!("jwt-revoker failed to start; its log:\n{log}"),
            }
        }
    }

    /// The config file this builder writes for a server on `authz_port` and `admin_port`
    /// whose embedded store (if used) lives in `data_dir`.
    pub fn config_toml(&self, authz_port: u16, admin_port: u16, data_dir: &Path) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let path = |p: &Path| quote(&p.display().to_string());
        let store = match &self.store {
            Store::Embedded => format!("data_dir = {}", path(data_dir)),
            Store::Redis(url) => format!("url = {}", quote(url)),
            Store::Toml(lines) => lines.clone(),
        };
        let base = format!(
            r#"
authz_addr = "127.0.0.1:{authz}"
admin_addr = "127.0.0.1:{admin}"
log_level = {log_level}

[store]
{store}

[response]
strip_authorization = true
claim_headers = {{ sub = "x-jwt-sub" }}
dynamic_metadata = ["sub"]

[[issuers]]
issuer = "https://issuer.test"
audiences = ["api"]
jwks_file = {jwks}
algorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]

[[issuers]]
issuer = "https://hmac.test"
audiences = ["api"]
algorithms = ["HS256"]
hmac_secret_file = {secret}
"#,
            authz = authz_port,
            admin = admin_port,
            log_level = quote(&self.log_level),
            jwks = path(&fixture("jwks.json")),
            secret = path(&fixture("hmac-secret.txt")),
        );
        let mut config: toml::Table = base.parse().expect("the generated config is TOML");
        for extra in &self.extra_toml {
            let extra: toml::Table = extra
                .parse()
                .unwrap_or_else(|e| panic!("extra_toml is not TOML: {e}\n{extra}"));
            merge(&mut config, extra, true);
        }
        for (index, extra) in &self.issuer_toml {
            let extra: toml::Table = extra
                .parse()
                .unwrap_or_else(|e| panic!("issuer_toml is not TOML: {e}\n{extra}"));
            let Some(toml::Value::Table(issuer)) = config
                .get_mut("issuers")
                .and_then(|issuers| issuers.get_mut(*index))
            else {
                panic!("no generated issuer {index}");
            };
            merge(issuer, extra, false);
        }
        toml::to_string(&config).expect("serialize the config")
    }
}

/// Merges `extra` into `base`: tables recursively, `issuers` arrays (at the top level)
/// appended, everything else replaced.
fn merge(base: &mut toml::Table, extra: toml::Table, top_level: bool) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(extra_table)) => {
                merge(base_table, extra_table, false);
            }
            (Some(toml::Value::Array(base_array)), toml::Value::Array(extra_array))
                if top_level && key == "issuers" =>
            {
                base_array.extend(extra_array);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A running `jwt-revoker serve`, killed and reaped on drop.
pub struct ServerProcess {
    child: Option<Child>,
    authz_port: u16,
    admin_port: u16,
    metrics_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    require_serving: bool,
    // Holds the config, the log and the embedded store's data for the server's life.
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// A builder for a server with a non-default store or config.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with the embedded store and the default test config.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The authorization (ext_authz) port on 127.0.0.1.
    pub fn authz_port(&self) -> u16 {
        self.authz_port
    }

    /// The admin port on 127.0.0.1.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The Prometheus `/metrics` port on 127.0.0.1.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The admin API's URL, `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The authorization port's URL, `http://127.0.0.1:<authz port>`.
    pub fn authz_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.authz_port)
    }

    /// The config file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The embedded store's data directory (unused with Redis).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether `grpc.health.v1.Health` reports the authorization port SERVING.
    pub fn authz_serving(&self) -> bool {
        health_check(self.authz_port).unwrap_or(false)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits for the server to exit, returning how it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        super::send_signal(&child, "-TERM");
        child.wait().expect("wait for the server")
    }

    /// Kills the server (SIGKILL: no graceful shutdown) and reaps it.
    pub fn kill(&mut self) {
        super::kill_and_reap(&mut self.child);
    }

    /// Sends SIGTERM without waiting (the server then drains for its `shutdown_grace`).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Waits for the server to exit (after [`sigterm`](Self::sigterm)), returning how.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        child.wait().expect("wait for the server")
    }

    /// Freezes the server (SIGSTOP): its connections stay open but it does nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        super::send_signal(self.child.as_ref().expect("jwt-revoker is running"), signal);
    }

    /// Kills the server and starts it again with the same config, ports and data
    /// directory, waiting until it is SERVING.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait() {
            panic!("jwt-revoker failed to restart; its log:\n{log}");
        }
    }

    /// Runs the binary's client command `args` (e.g. `["revoke", "--token", t]`) against
    /// this server: `--admin-addr` is appended and the admin token is in the environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token(args, Some(&admin_token()))
    }

    /// Like [`cli`](Self::cli) with the given admin token, or none at all.
    pub fn cli_with_token(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--admin-addr")
            .arg(self.admin_url())
            .stdin(Stdio::null());
        clear_env(&mut command);
        if let Some(token) = token {
            command.env("JWT_REVOKER_ADMIN_TOKEN", token);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("run {BIN} {args:?}: {e}"))
    }

    /// Runs [`cli`](Self::cli), panics with its output unless it succeeded, and returns
    /// its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "jwt-revoker {args:?} failed with {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server.log");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(clone(&log))
            .stderr(log);
        clear_env(&mut command);
        command.env("JWT_REVOKER_ADMIN_TOKEN", admin_token());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN} serve: {e}"));
        self.child = Some(child);

        let ports = [self.authz_port, self.admin_port];
        let mut died = None;
        wait_until("jwt-revoker health SERVING", READY_TIMEOUT, |last_error| {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                died = Some(status);
                return Some(());
            }
            for port in ports {
                match health_check(port) {
                    Ok(true) => {}
                    Ok(false) if !self.require_serving => {}
                    Ok(false) => {
                        *last_error = format!("port {port} is not SERVING yet");
                        return None;
                    }
                    Err(e) => {
                        *last_error = format!("port {port}: {e}");
                        return None;
                    }
                }
            }
            Some(())
        });
        match died {
            Some(status) => {
                self.child = None;
                Err(format!("(exited with {status})\n{}", self.log()))
            }
            None => Ok(()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn clone(file: &File) -> File {
    file.try_clone().expect("clone the log file handle")
}

/// Removes inherited `JWT_REVOKER_*` variables, so a developer's shell cannot change
/// what the test runs.
fn clear_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("JWT_REVOKER_") {
            command.env_remove(name);
        }
    }
}

/// Asks `grpc.health.v1.Health/Check` (service `""`) on `127.0.0.1:port` whether the
/// server is SERVING. Runs on its own thread and runtime, so it can be called from sync
/// and async code alike.
pub fn health_check(port: u16) -> Result<bool, String> {
    service_health_check(port, "")
}

/// Asks `grpc.health.v1.Health/Check` on `127.0.0.1:port` whether `service` (e.g. a
/// stream's `jwtrevoker.ssf.<name>`) is SERVING, as [`health_check`] does for the server.
pub fn service_health_check(port: u16, service: &str) -> Result<bool, String> {
    let service = service.to_owned();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("build a runtime: {e}"))?;
                runtime.block_on(async move {
                    use tonic_health::pb::HealthCheckRequest;
                    use tonic_health::pb::health_check_response::ServingStatus;
                    use tonic_health::pb::health_client::HealthClient;
                    let check = async {
                        let channel = tonic::transport::Endpoint::from_shared(format!(
                            "http://127.0.0.1:{port}"
                        ))
                        .map_err(|e| format!("endpoint: {e}"))?
                        .connect()
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                        let mut client = HealthClient::new(channel);
                        let response = client
                            .check(HealthCheckRequest { service })
                            .await
                            .map_err(|status| format!("health check: {status}"))?;
                        Ok(response.into_inner().status == ServingStatus::Serving as i32)
                    };
                    tokio::time::timeout(Duration::from_secs(2), check)
                        .await
                        .map_err(|_| "health check timed out".to_owned())?
                })
            })
            .join()
            .map_err(|_| "health check thread panicked".to_owned())?
    })
}
