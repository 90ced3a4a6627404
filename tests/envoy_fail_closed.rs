//! Envoy's side of the contract, testable without jwt-revoker: the bootstrap in
//! `envoy/envoy.yaml` is valid, and Envoy refuses requests when the authorization service
//! cannot be reached (`failure_mode_allow: false`).

mod support;

use std::time::Duration;
use support::envoy::{self, EnvoyPorts, EnvoyProcess};
use support::http::{self, Request};
use support::ports::free_port;
use support::upstream::TestUpstream;
use support::wait_until;

#[test]
fn rendered_config_passes_envoy_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("envoy.yaml");
    std::fs::write(
        &config,
        envoy::render_config(&EnvoyPorts::new(free_port(), free_port())),
    )
    .expect("write the rendered config");
    let output = envoy::validate(&config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "envoy --mode validate failed ({})\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

#[test]
fn unreachable_authz_service_refuses_requests_with_403() {
    let upstream = TestUpstream::start();
    // Nothing listens on this port: every Check fails to connect.
    let envoy = EnvoyProcess::start(free_port(), upstream.port());

    // The upstream itself is reachable through Envoy where ext_authz is off…
    let public = http::get(envoy.listen_port(), "/public/ping");
    assert_eq!(public.status, 200, "body: {}", public.text());
    assert_eq!(upstream.request_count(), 1);

    // …but a request that needs the check is refused, with or without a token.
    let plain = http::get(envoy.listen_port(), "/api/items");
    assert_eq!(plain.status, 403, "body: {}", plain.text());
    let with_token = Request::get("/api/items")
        .bearer("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        .send(envoy.listen_port());
    assert_eq!(with_token.status, 403, "body: {}", with_token.text());
    assert_eq!(
        upstream.request_count(),
        1,
        "a refused request reached the upstream"
    );

    // Envoy counts them as ext_authz errors, not denials.
    let errors = wait_until("ext_authz error stats", Duration::from_secs(10), |last| {
        let errors = envoy.stat("http.ingress_http.ext_authz.error");
        *last = format!("{errors:?}");
        errors.filter(|&n| n >= 2)
    });
    assert_eq!(errors, 2);
}

#[test]
fn hung_authz_service_refuses_requests_after_the_timeout() {
    let upstream = TestUpstream::start();
    // A listener that never accepts: connections complete in the kernel's backlog, but
    // no Check is ever answered, so Envoy's 250 ms ext_authz timeout fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let silent_port = silent.local_addr().expect("silent listener address").port();
    let envoy = EnvoyProcess::start(silent_port, upstream.port());

    let started = std::time::Instant::now();
    let response = http::get(envoy.listen_port(), "/api/items");
    assert_eq!(response.status, 403, "body: {}", response.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Envoy waited {:?} for the authorization service",
        started.elapsed()
    );
    assert_eq!(
        upstream.request_count(),
        0,
        "a refused request reached the upstream"
    );
}
