//! A real Envoy with jwt-revoker's dynamic module (`envoy/module.yaml`): loads
//! `libjwt_revoker_envoy.so` from the workspace's `target/debug` (built by
//! `cargo build -p jwt-revoker-envoy`; `scripts/test.sh` builds it first) through
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, and is killed on drop.

use super::envoy::envoy_bin;
use super::{fixture, http, ports::free_port, repo_root, tokens, wait_until};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long Envoy may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding `libjwt_revoker_envoy.so`: `$JWT_REVOKER_ENVOY_MODULE_DIR`, else
/// the workspace's `target/debug`. Panics, saying how to build it, when it is not there.
pub fn module_dir() -> PathBuf {
    let dir = std::env::var_os("JWT_REVOKER_ENVOY_MODULE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("debug")))
        .unwrap_or_else(|| repo_root().join("target/debug"));
    assert!(
        dir.join("libjwt_revoker_envoy.so").is_file(),
        "no libjwt_revoker_envoy.so in {}: run `cargo build -p jwt-revoker-envoy` first \
         (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A running Envoy with the module, killed and reaped on drop.
pub struct ModuleEnvoy {
    child: Option<Child>,
    listen: u16,
    admin: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ModuleEnvoy {
    /// Starts Envoy in front of `upstream_port` with the module configured by `config`
    /// (the JSON `filter_config`), and waits until it is ready.
    pub fn start(upstream_port: u16, config: &serde_json::Value) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(upstream_port, config) {
                Ok(envoy) => return envoy,
                Err(log) if attempt < 3 && log.contains("ddress already in use") => continue,
                Err(log) => panic!("envoy with the module failed to start; its log:\n{log}"),
            }
        }
    }

    fn try_start(upstream_port: u16, config: &serde_json::Value) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("envoy-module-test-")
            .tempdir()
            .expect("create a temp dir for envoy");
        let (listen, admin) = (free_port(), free_port());
        let template = std::fs::read_to_string(repo_root().join("envoy/module.yaml"))
            .expect("read envoy/module.yaml");
        let rendered = template
            .replace("{{listen_port}}", &listen.to_string())
            .replace("{{admin_port}}", &admin.to_string())
            .replace("{{upstream_port}}", &upstream_port.to_string())
            .replace("{{issuer}}", tokens::ISSUER)
            .replace("{{jwks_path}}", &fixture("jwks.json").display().to_string())
            .replace("{{filter_config}}", &config.to_string());
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, rendered).expect("write envoy.yaml");
        let log_path = dir.path().join("envoy.log");
        let log = File::create(&log_path).expect("create envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--concurrency", "2"])
            .args(["--log-level", "info"])
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_bin().display()));
        let mut envoy = Self {
            child: Some(child),
            listen,
            admin,
            log_path,
            _dir: dir,
        };
        let mut died = None;
        wait_until("envoy /ready", READY_TIMEOUT, |last_error| {
            if let Some(Ok(Some(status))) = envoy.child.as_mut().map(Child::try_wait) {
                died = Some(status);
                return Some(());
            }
            match http::Request::get("/ready").try_send(envoy.admin) {
                Ok(response) if response.status == 200 => Some(()),
                Ok(response) => {
                    *last_error = format!("/ready answered {}", response.status);
                    None
                }
                Err(e) => {
                    *last_error = e;
                    None
                }
            }
        });
        match died {
            Some(status) => Err(format!("(exited with {status})\n{}", envoy.log())),
            None => Ok(envoy),
        }
    }

    /// Sends `GET /` with `token` as bearer and the extra `headers`.
    pub fn get(&self, token: &str, headers: &[(&str, &str)]) -> http::Response {
        let mut request = http::Request::get("/").bearer(token);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send(self.listen)
    }

    /// Polls `GET /` with `token` until it answers `status`; returns that response and when
    /// the request that got it was sent, after the call. (Not when its answer arrived: Envoy
    /// closes a connection after a local reply only after `delayed_close_timeout`, 1 s.)
    pub fn wait_for_status(&self, token: &str, status: u16) -> (http::Response, Duration) {
        let started = std::time::Instant::now();
        wait_until(
            &format!("status {status} through the module"),
            Duration::from_secs(20),
            |last| {
                let sent = started.elapsed();
                let response = self.get(token, &[]);
                if response.status == status {
                    return Some((response, sent));
                }
                *last = format!("{} {}", response.status, response.text());
                None
            },
        )
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for Envoy to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("envoy is running");
        super::send_signal(&child, "-TERM");
        child.wait().expect("wait for envoy")
    }
}

impl Drop for ModuleEnvoy {
    fn drop(&mut self) {
        super::kill_and_reap(&mut self.child);
    }
}
