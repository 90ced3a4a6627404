//! The `jwt-revoker` command line: client commands against a real server and their one-line
//! errors with a non-zero exit; `serve` refusing bad configuration with a message that names
//! the key.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::ports::free_port;
use support::server::{BIN, ServerProcess};
use support::tokens;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the binary with no `JWT_REVOKER_*` variables from the caller's environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("JWT_REVOKER_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run jwt-revoker")
}

/// Asserts a failed run printed exactly one `error: …` line containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "should fail: {}", stdout(output));
    let text = stderr(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

/// Asserts a failed `serve` printed exactly one `error: …` line (after any log lines)
/// containing `needle`.
fn assert_serve_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "should fail: {}", stdout(output));
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {text}");
    assert!(errors[0].contains(needle), "{needle:?} not in {text}");
}

/// Asserts a failed run printed an `error: …` message containing `needle` (a TOML parse
/// error adds the offending line under it).
fn assert_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "should fail: {}", stdout(output));
    let text = stderr(output);
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    let addr = format!("http://127.0.0.1:{}", free_port());
    let output = run(
        &["status", "--admin-addr", &addr, "--timeout", "2s"],
        &[("JWT_REVOKER_ADMIN_TOKEN", "whatever-token-0000")],
    );
    assert_one_line_error(&output, &format!("cannot reach the admin API at {addr}"));
}

#[test]
fn a_connection_that_breaks_mid_call_says_the_change_may_or_may_not_be_made() {
    // A server that takes the call and dies before answering: an HTTP/2 server whose every
    // route waits forever, torn down (connections and all) once the call has arrived.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let router = axum::Router::new().fallback(move || {
        let _ = arrived_tx.send(());
        std::future::pending::<()>()
    });
    runtime.spawn(async move { axum::serve(listener, router).await });
    let cli = std::thread::spawn(move || {
        run(
            &[
                "revoke",
                "--jti",
                "j1",
                "--issuer",
                tokens::ISSUER,
                "--admin-addr",
                &addr,
                "--timeout",
                "20s",
            ],
            &[("JWT_REVOKER_ADMIN_TOKEN", "whatever-token-0000")],
        )
    });
    arrived_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the call arrives");
    runtime.shutdown_background();
    let output = cli.join().expect("the cli");
    assert_one_line_error(&output, "the change may or may not have been made");
    assert!(
        !stderr(&output).contains("answered Unknown"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_or_missing_credentials_are_one_clear_line() {
    let server = ServerProcess::start();
    for token in [Some("wrong-admin-token-000000"), None] {
        let output = server.cli_with_token(&["list"], token);
        assert_one_line_error(&output, "refused the credentials");
    }
}

#[test]
fn bad_arguments_are_refused_before_or_by_the_server() {
    let server = ServerProcess::start();
    let token = tokens::valid("alice");
    let cases: [(&[&str], &str); 5] = [
        (&["revoke", "--jti", "abc"], "--issuer is required"),
        (
            &[
                "revoke",
                "--token",
                &token,
                "--expires-at",
                "2030-01-01T00:00:00Z",
            ],
            "--expires-at applies to an identifier",
        ),
        (
            &[
                "revoke",
                "--subject",
                "alice",
                "--issuer",
                "https://elsewhere.test",
            ],
            "key.issuer: is not a configured issuer",
        ),
        (&["revoke", "--token", "garbage"], "invalid request: token"),
        (
            &["get", "--session", "nope", "--issuer", tokens::ISSUER],
            "no such revocation",
        ),
    ];
    for (args, needle) in cases {
        assert_one_line_error(&server.cli(args), needle);
    }
    // No target at all, or two: clap's usage error, exit code 2.
    for args in [
        &["revoke"][..],
        &["revoke", "--jti", "a", "--subject", "b"][..],
    ] {
        let output = server.cli(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn revoke_get_list_unrevoke_and_status_print_what_happened() {
    let server = ServerProcess::start();
    let out = server.cli_ok(&[
        "revoke",
        "--subject",
        "alice",
        "--issuer",
        tokens::ISSUER,
        "--reason",
        "password reset",
    ]);
    assert!(out.starts_with("revoked: subject \"alice\""), "{out}");
    assert!(out.contains("reason \"password reset\""), "{out}");
    let again = server.cli_ok(&["revoke", "--subject", "alice", "--issuer", tokens::ISSUER]);
    assert!(again.starts_with("already revoked"), "{again}");
    let got = server.cli_ok(&["get", "--subject", "alice", "--issuer", tokens::ISSUER]);
    assert!(got.contains("subject \"alice\""), "{got}");
    let listed = server.cli_ok(&["list", "--json"]);
    let line: serde_json::Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(line["kind"], "subject");
    assert_eq!(line["id"], "alice");
    let status = server.cli_ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(status.trim()).expect("JSON status");
    assert_eq!(status["revocations"], 1);
    assert_eq!(status["synced"], true);
    let removed = server.cli_ok(&["unrevoke", "--subject", "alice", "--issuer", tokens::ISSUER]);
    assert!(removed.starts_with("unrevoked"), "{removed}");
    let nothing = server.cli_ok(&["unrevoke", "--subject", "alice", "--issuer", tokens::ISSUER]);
    assert!(nothing.starts_with("not revoked"), "{nothing}");
}

#[test]
fn a_token_can_be_read_from_standard_input() {
    let server = ServerProcess::start();
    let token = tokens::valid("stdin-user");
    let mut child = Command::new(BIN)
        .args([
            "revoke",
            "--token",
            "-",
            "--admin-addr",
            &server.admin_url(),
        ])
        .env("JWT_REVOKER_ADMIN_TOKEN", support::server::admin_token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{token}").expect("write the token");
    }
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("revoked: token"),
        "{}",
        stdout(&output)
    );
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

const ISSUER_TOML: &str = r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["api"]
jwks_file = "JWKS"
algorithms = ["RS256"]
"#;

/// The issuer section, with the fixture JWKS.
fn issuer_toml() -> String {
    ISSUER_TOML.replace("JWKS", &support::fixture("jwks.json").display().to_string())
}

#[test]
fn serve_refuses_bad_configuration_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = [("JWT_REVOKER_ADMIN_TOKEN", "0123456789abcdef0123")];
    let cases = [
        (format!("bogus_key = 1\n{}", issuer_toml()), "bogus_key"),
        (
            issuer_toml().replace("[\"RS256\"]", "[\"none\"]"),
            "issuers[0].algorithms",
        ),
        (format!("leeway = \"forever\"\n{}", issuer_toml()), "leeway"),
        ("authz_addr = \"127.0.0.1:1\"\n".to_owned(), "issuers"),
    ];
    for (text, key) in cases {
        let config = write_config(dir.path(), &text);
        let output = run(&["serve", "--config", &config], &token);
        assert_error(&output, key);
    }
    let missing = run(
        &["serve", "--config", "/nonexistent/jwt-revoker.toml"],
        &token,
    );
    assert_one_line_error(&missing, "/nonexistent/jwt-revoker.toml");
}

#[test]
fn serve_refuses_to_run_the_admin_port_without_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &issuer_toml());
    let output = run(&["serve", "--config", &config], &[]);
    assert_one_line_error(&output, "admin.token_file");
}

#[test]
fn an_open_admin_port_is_announced_loudly() {
    let server = ServerProcess::builder()
        .extra_toml("[admin]\nallow_unauthenticated = true")
        .env("JWT_REVOKER_ADMIN_TOKEN", "")
        .start();
    assert!(
        server.log().contains("THE ADMIN API IS OPEN"),
        "{}",
        server.log()
    );
    let output = server.cli_with_token(&["status"], None);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = ServerProcess::builder()
        .extra_toml("shutdown_grace = \"0s\"")
        .start();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[test]
fn after_sigterm_the_server_says_not_ready_but_keeps_serving_for_the_grace_period() {
    let mut server = ServerProcess::builder()
        .extra_toml("shutdown_grace = \"3s\"")
        .start();
    assert_eq!(
        support::http::get(server.metrics_port(), "/readyz").status,
        200
    );
    let mut check = support::check::CheckClient::connect(server.authz_port());
    let token = tokens::mint_alg(jsonwebtoken::Algorithm::RS256, &tokens::claims("alice"));
    let before = check.check(&token);
    let sent = std::time::Instant::now();
    server.sigterm();
    support::wait_until("readiness to fail", Duration::from_secs(2), |last| {
        let status = support::http::get(server.metrics_port(), "/readyz").status;
        *last = format!("/readyz {status}");
        (status == 503).then_some(())
    });
    assert_eq!(
        support::server::health_check(server.authz_port()),
        Ok(false),
        "gRPC health says NOT_SERVING"
    );
    // Still answered, on an existing connection and on a new one.
    assert_eq!(before, support::check::Outcome::Allowed);
    assert_eq!(check.check(&token), before);
    let mut fresh = support::check::CheckClient::connect(server.authz_port());
    assert_eq!(fresh.check(&token), before);
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "checked within the grace"
    );
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "stopped before the grace ended"
    );
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[test]
fn environment_variables_override_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "authz_addr = \"127.0.0.1:1\"\nadmin_addr = \"127.0.0.1:2\"\n[store]\ndata_dir = {:?}\n{}",
            dir.path().join("data").display().to_string(),
            issuer_toml()
        ),
    );
    let (authz, admin) = (free_port(), free_port());
    let authz_addr = format!("127.0.0.1:{authz}");
    let admin_addr = format!("127.0.0.1:{admin}");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", &config])
        .env("JWT_REVOKER_AUTHZ_ADDR", &authz_addr)
        .env("JWT_REVOKER_ADMIN_ADDR", &admin_addr)
        .env("JWT_REVOKER_LOG_LEVEL", "warn")
        .env("JWT_REVOKER_ADMIN_TOKEN", "0123456789abcdef0123")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let serving = support::wait_until(
        "health SERVING on the ports from the environment",
        std::time::Duration::from_secs(20),
        |last| match (
            support::server::health_check(authz),
            support::server::health_check(admin),
        ) {
            (Ok(true), Ok(true)) => Some(true),
            other => {
                *last = format!("{other:?}");
                None
            }
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving);
}

#[test]
fn unusable_issuer_keys_stop_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = [("JWT_REVOKER_ADMIN_TOKEN", "0123456789abcdef0123")];
    let cases = [
        (
            issuer_toml().replace(
                &support::fixture("jwks.json").display().to_string(),
                "/nonexistent/jwks.json",
            ),
            "issuers[0].jwks_file",
        ),
        (
            ISSUER_TOML.replace("jwks_file = \"JWKS\"", "jwks = '{\"keys\": []}'"),
            "issuers[0].jwks",
        ),
    ];
    for (text, key) in cases {
        let config = write_config(
            dir.path(),
            &format!(
                "[store]\ndata_dir = {:?}\n{text}",
                dir.path().join("data").display().to_string()
            ),
        );
        let output = run(&["serve", "--config", &config], &token);
        assert_serve_error(&output, key);
    }
}
