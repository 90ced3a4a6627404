//! A real Envoy with jwt-revoker's dynamic module (`envoy/module.yaml`): loads
//! `libjwt_revoker_envoy.so` from the workspace's `target/debug` (built by
//! `cargo build -p jwt-revoker-envoy`; `scripts/test.sh` builds it first) through
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, and is killed on drop.

use super::envoy::RunningEnvoy;
use super::{fixture, http, ports::free_port, repo_root, tokens, wait_until};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

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
    envoy: RunningEnvoy,
    listen: u16,
}

impl ModuleEnvoy {
    /// Starts Envoy in front of `upstream_port` with the module configured by `config`
    /// (the JSON `filter_config`), and waits until it is ready.
    pub fn start(upstream_port: u16, config: &serde_json::Value) -> Self {
        let template = std::fs::read_to_string(repo_root().join("envoy/module.yaml"))
            .expect("read envoy/module.yaml");
        RunningEnvoy::start_retrying("envoy with the module", || {
            let (listen, admin) = (free_port(), free_port());
            let rendered = template
                .replace("{{listen_port}}", &listen.to_string())
                .replace("{{admin_port}}", &admin.to_string())
                .replace("{{upstream_port}}", &upstream_port.to_string())
                .replace("{{issuer}}", tokens::ISSUER)
                .replace("{{jwks_path}}", &fixture("jwks.json").display().to_string())
                .replace("{{filter_config}}", &config.to_string());
            let module_dir = module_dir();
            let env = [("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir.as_path())];
            let envoy = RunningEnvoy::spawn(&rendered, admin, 2, &env)?;
            Ok(Self { envoy, listen })
        })
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
        self.envoy.log()
    }

    /// Sends SIGTERM and waits for Envoy to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.envoy.terminate()
    }
}
