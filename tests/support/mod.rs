//! Shared helpers for the integration tests: real processes (Envoy, jwt-revoker) on free
//! loopback ports, a recording upstream, an HTTP client and token minting.
//!
//! Each test file that needs them declares `mod support;`. Every helper owns what it
//! starts (processes, ports, temp dirs) and cleans it up on `Drop`, so tests run in
//! parallel. Nothing waits by sleeping a fixed time: readiness is polled.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod check;
pub mod envoy;
pub mod http;
pub mod jwks;
pub mod module;
pub mod oidc;
pub mod ports;
pub mod redis;
pub mod redis_ha;
pub mod server;
pub mod ssf;
pub mod stack;
pub mod tokens;
pub mod transmitter;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(relative)
}

/// Calls `probe` every few milliseconds until it returns `Some`, or panics after
/// `timeout` with `what` and the last error `probe` reported through `last_error`.
///
/// `probe` may also panic itself (e.g. when the child process it waits for has died).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe(&mut last_error) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last error: {last_error}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Sends `signal` (e.g. `-STOP`, `-TERM`) to `child` with kill(1).
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} failed");
}

/// Kills (SIGKILL) and reaps `child`, if it is still held.
pub fn kill_and_reap(child: &mut Option<std::process::Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
