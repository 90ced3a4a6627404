//! The Prometheus `/metrics` endpoint of a real `jwt-revoker serve`, scraped while real
//! Envoy traffic is allowed and denied: decision counters by reason, the Check latency
//! histogram, revocations by kind, replica state and admin RPCs by method and code move as
//! they should, and no label carries a subject or a token. The same port's `/readyz`
//! follows the replica (503 while Redis is down, 200 once it is up) and `/livez` answers.

mod support;

use std::time::Duration;
use support::envoy::EnvoyProcess;
use support::http::{self, Request};
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::tokens;
use support::upstream::TestUpstream;
use support::wait_until;

/// Scrapes `/metrics` and returns the text, checking the status and content type.
fn scrape(server: &ServerProcess) -> String {
    let response = http::get(server.metrics_port(), "/metrics");
    assert_eq!(response.status, 200, "{}", response.text());
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text()
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[test]
fn counters_move_as_requests_are_allowed_and_denied() {
    let upstream = TestUpstream::start();
    let server = ServerProcess::start();
    let envoy = EnvoyProcess::start(server.authz_port(), upstream.port());

    let before = scrape(&server);
    assert_eq!(
        value(&before, r#"jwt_revoker_replica_health{state="current"}"#),
        1.0
    );
    assert_eq!(
        value(&before, r#"jwt_revoker_revocations{kind="token"}"#),
        0.0
    );
    assert!(value(&before, "jwt_revoker_replica_staleness_seconds") < 30.0);
    assert_eq!(
        sample(
            &before,
            r#"jwt_revoker_decisions_total{decision="allow",reason="ok"}"#
        ),
        None
    );
    assert_eq!(
        value(&before, "jwt_revoker_check_duration_seconds_count"),
        0.0
    );
    assert_eq!(
        value(&before, "jwt_revoker_store_entries_skipped_total"),
        0.0
    );
    assert_eq!(value(&before, "jwt_revoker_token_cache_entries"), 0.0);
    assert_eq!(value(&before, "jwt_revoker_token_cache_bytes"), 0.0);

    let token = tokens::valid("metrics-alice");
    let allowed = Request::get("/api")
        .bearer(&token)
        .send(envoy.listen_port());
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let anonymous = Request::get("/api").send(envoy.listen_port());
    assert_eq!(anonymous.status, 401);

    server.cli_ok(&["revoke", "--token", &token]);
    let refused = server.cli_with_token(&["list"], Some("not-the-admin-token-at-all"));
    assert!(!refused.status.success());
    let denied = Request::get("/api")
        .bearer(&token)
        .send(envoy.listen_port());
    assert_eq!(denied.status, 401, "{}", denied.text());

    let after = scrape(&server);
    assert_eq!(
        value(
            &after,
            r#"jwt_revoker_decisions_total{decision="allow",reason="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"jwt_revoker_decisions_total{decision="deny",reason="missing_token"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"jwt_revoker_decisions_total{decision="deny",reason="revoked_token"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&after, "jwt_revoker_check_duration_seconds_count"),
        3.0
    );
    assert!(value(&after, "jwt_revoker_check_duration_seconds_sum") > 0.0);
    // The one verified token is cached, counted for at least its own bytes.
    assert_eq!(value(&after, "jwt_revoker_token_cache_entries"), 1.0);
    assert!(value(&after, "jwt_revoker_token_cache_bytes") > token.len() as f64);
    assert_eq!(
        value(&after, r#"jwt_revoker_revocations{kind="token"}"#),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"jwt_revoker_admin_requests_total{method="Revoke",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"jwt_revoker_admin_requests_total{method="ListRevocations",code="UNAUTHENTICATED"}"#
        ),
        1.0
    );
    assert!(
        !after.contains("metrics-alice"),
        "a subject leaked:\n{after}"
    );
    assert!(!after.contains(&token), "a token leaked");
}

#[test]
fn store_errors_are_counted_by_operation_and_kind() {
    let redis = support::redis::RedisProcess::start();
    let server = ServerProcess::builder().redis(&redis.url()).start();
    drop(redis);
    // The replica's feed reads fail once Redis is gone.
    wait_until(
        "a transient store error in /metrics",
        Duration::from_secs(20),
        |last| {
            let text = scrape(&server);
            let errors = sample(
                &text,
                r#"jwt_revoker_store_errors_total{operation="changes",kind="transient"}"#,
            )
            .or_else(|| {
                sample(
                    &text,
                    r#"jwt_revoker_store_errors_total{operation="snapshot",kind="transient"}"#,
                )
            });
            *last = text;
            errors.filter(|n| *n >= 1.0)
        },
    );
}

#[test]
fn readyz_follows_the_replica_and_livez_always_answers() {
    let port = RedisProcess::free_port();
    let server = ServerProcess::builder()
        .redis(&format!("redis://127.0.0.1:{port}/0"))
        .serving_not_required()
        .start();
    // Redis down at start-up: alive, but not ready (no revocation set to decide with).
    let ready = http::get(server.metrics_port(), "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    let live = http::get(server.metrics_port(), "/livez");
    assert_eq!(live.status, 200, "{}", live.text());

    let _redis = RedisProcess::start_on(port);
    wait_until(
        "/readyz 200 once Redis is up",
        Duration::from_secs(20),
        |last| {
            let ready = http::get(server.metrics_port(), "/readyz");
            *last = format!("{} {}", ready.status, ready.text());
            (ready.status == 200).then_some(())
        },
    );
    // gRPC health follows the same replica state (it is updated as the state changes).
    wait_until("gRPC health SERVING too", Duration::from_secs(20), |_| {
        server.authz_serving().then_some(())
    });
    let live = http::get(server.metrics_port(), "/livez");
    assert_eq!(live.status, 200, "{}", live.text());
}
