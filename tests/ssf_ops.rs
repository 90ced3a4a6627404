//! Operating Shared Signals streams, against real `jwt-revoker serve` processes and the test
//! transmitter: stream management with OAuth client credentials (the client secret checked by
//! the token endpoint, the token cached, renewed once on a 401), the transmitter's status
//! endpoint read into `jwt-revoker status`, periodic verification (success, a timeout when
//! the event never comes), a gRPC health service per stream that follows both while the
//! server's own health does not, verification through poll delivery, and a verification
//! event delivered to another replica than the one that asked.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::http;
use support::redis::RedisProcess;
use support::server::{ServerProcess, health_check, service_health_check};
use support::ssf::{PUSH_SECRET, StreamConfig, push_url};
use support::transmitter::{MANAGEMENT_CLIENT, Transmitter};
use support::wait_until;

const SERVICE: &str = "jwtrevoker.ssf.idp";
const PATIENCE: Duration = Duration::from_secs(30);

fn wait_for_health(server: &ServerProcess, serving: bool) {
    wait_until(
        &format!("{SERVICE} serving={serving}"),
        PATIENCE,
        |last| match service_health_check(server.admin_port(), SERVICE) {
            Ok(now) if now == serving => Some(()),
            other => {
                *last = format!("{other:?}\n{}", server.cli_ok(&["status"]));
                None
            }
        },
    );
}

/// The stream `idp` in `status --json`.
fn stream_status(server: &ServerProcess) -> Value {
    let status: Value =
        serde_json::from_str(server.cli_ok(&["status", "--json"]).trim()).expect("JSON status");
    status["ssf_streams"]
        .as_array()
        .and_then(|streams| streams.iter().find(|s| s["name"] == "idp").cloned())
        .unwrap_or_else(|| panic!("no stream idp in {status}"))
}

/// A sample of the metrics, 0 when absent.
fn metric(server: &ServerProcess, sample: &str) -> u64 {
    let text = http::get(server.metrics_port(), "/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(sample))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

fn verifications(server: &ServerProcess, outcome: &str) -> u64 {
    metric(
        server,
        &format!(r#"jwt_revoker_ssf_verification_total{{stream="idp",outcome="{outcome}"}}"#),
    )
}

/// The server's own health: "" on both ports and Check SERVING.
fn assert_server_serving(server: &ServerProcess) {
    assert_eq!(health_check(server.authz_port()), Ok(true));
    assert_eq!(health_check(server.admin_port()), Ok(true));
    assert_eq!(
        service_health_check(server.authz_port(), "envoy.service.auth.v3.Authorization"),
        Ok(true)
    );
}

#[test]
fn a_managed_stream_reports_its_status_verifies_periodically_and_has_its_own_health() {
    let transmitter = Transmitter::start();
    transmitter.set_status("enabled", Some("ready"));
    let admin_port = support::ports::free_port();
    // The client secret comes from the environment.
    let server = StreamConfig::new(&transmitter)
        .push_authorization(PUSH_SECRET)
        .push_url(admin_port)
        .verification("2s", "1500ms")
        .management_client(MANAGEMENT_CLIENT.1)
        .configure(ServerProcess::builder().admin_port(admin_port))
        .start();

    // Configured with an access token from the token endpoint, verified, enabled: SERVING.
    wait_for_health(&server, true);
    assert_server_serving(&server);
    let status = stream_status(&server);
    assert_eq!(status["status"], "enabled", "{status}");
    assert_eq!(status["status_source"], "status_endpoint", "{status}");
    assert_eq!(status["status_reason"], "ready", "{status}");
    assert_eq!(status["stream_id"], "stream-1", "{status}");
    assert_eq!(status["delivery"], "push");
    assert_eq!(status["endpoint"], push_url(admin_port).as_str());
    assert_eq!(status["verification"]["outcome"], "succeeded", "{status}");
    assert!(
        status["verification"]["requested_at"].is_string(),
        "{status}"
    );
    assert!(
        status["verification"]["received_at"].is_string(),
        "{status}"
    );
    assert_eq!(status["healthy"], true);
    assert_eq!(status["health_service"], SERVICE);
    // The last SET is the verification event the transmitter pushed.
    assert!(
        status["last_set_jti"]
            .as_str()
            .is_some_and(|jti| !jti.is_empty()),
        "{status}"
    );
    let text = server.cli_ok(&["status"]);
    assert!(text.contains("ssf stream   idp"), "{text}");
    assert!(
        text.contains(&format!("health        {SERVICE} SERVING")),
        "{text}"
    );
    assert!(
        text.contains("status        enabled (from status_endpoint at "),
        "{text}"
    );
    assert!(
        text.contains("verification  succeeded  requested "),
        "{text}"
    );

    // Periodic: more verifications follow, all with one cached access token (scope asked).
    wait_until("a second verification", PATIENCE, |last| {
        let done = verifications(&server, "succeeded");
        *last = format!("{done} succeeded");
        (done >= 2).then_some(())
    });
    let (issued, scopes) =
        transmitter.polled(|queue| (queue.management_tokens.len(), queue.scopes.clone()));
    assert_eq!(issued, 1, "one token for every call while it lives");
    assert_eq!(scopes, ["ssf.manage"]);
    let states = transmitter.polled(|queue| queue.verifications.clone());
    assert!(states.len() >= 2 && states[0] != states[1], "{states:?}");

    // The transmitter withdraws the token before its expiry: refused once, renewed, retried.
    transmitter.withdraw_management_tokens();
    let before = verifications(&server, "succeeded");
    wait_until("a verification with a renewed token", PATIENCE, |last| {
        let (issued, refusals) =
            transmitter.polled(|queue| (queue.management_tokens.len(), queue.management_refusals));
        *last = format!("{issued} tokens, {refusals} refusals");
        (issued == 2 && verifications(&server, "succeeded") > before).then_some(())
    });
    assert_eq!(verifications(&server, "request_failed"), 0);
    assert_eq!(transmitter.polled(|queue| queue.management_refusals), 1);

    // Paused at the transmitter: the stream's health goes NOT_SERVING, the server's not.
    transmitter.set_status("paused", Some("maintenance"));
    wait_for_health(&server, false);
    assert_server_serving(&server);
    let status = stream_status(&server);
    assert_eq!(status["status"], "paused", "{status}");
    assert_eq!(status["status_reason"], "maintenance", "{status}");
    assert_eq!(status["healthy"], false);
    let text = server.cli_ok(&["status"]);
    assert!(
        text.contains(&format!("health        {SERVICE} NOT_SERVING")),
        "{text}"
    );
    assert!(text.contains("reason \"maintenance\""), "{text}");
    assert_eq!(
        metric(&server, r#"jwt_revoker_ssf_stream_healthy{stream="idp"}"#),
        0
    );
    transmitter.set_status("enabled", None);
    wait_for_health(&server, true);

    // The transmitter stops sending verification events: a timeout, NOT_SERVING, counted.
    transmitter.drop_verifications(true);
    wait_for_health(&server, false);
    assert_server_serving(&server);
    let status = stream_status(&server);
    assert_eq!(status["status"], "enabled", "{status}");
    assert_eq!(status["verification"]["outcome"], "timeout", "{status}");
    assert!(
        status["verification"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no verification event")),
        "{status}"
    );
    assert!(verifications(&server, "timeout") >= 1);
    assert_eq!(
        metric(
            &server,
            r#"jwt_revoker_ssf_stream_last_verification_outcome{stream="idp",outcome="timeout"}"#
        ),
        1
    );
    assert!(
        metric(
            &server,
            r#"jwt_revoker_ssf_stream_last_verification_success_timestamp_seconds{stream="idp"}"#
        ) > 0
    );
    // And back.
    transmitter.drop_verifications(false);
    wait_for_health(&server, true);

    // Refused as too frequent (429): counted, and the last outcome stands.
    transmitter.rate_limit_verifications(true);
    wait_until("a rate-limited verification", PATIENCE, |_| {
        (verifications(&server, "rate_limited") >= 1).then_some(())
    });
    assert_eq!(service_health_check(server.admin_port(), SERVICE), Ok(true));
    let status = stream_status(&server);
    assert_eq!(status["verification"]["outcome"], "succeeded", "{status}");
}

#[test]
fn a_wrong_client_secret_configures_nothing_and_the_stream_stays_not_serving() {
    let transmitter = Transmitter::start();
    let admin_port = support::ports::free_port();
    let server = StreamConfig::new(&transmitter)
        .push_authorization(PUSH_SECRET)
        .push_url(admin_port)
        .management_client("not-the-secret-0123456789abcdef")
        .configure(ServerProcess::builder().admin_port(admin_port))
        .start();
    wait_until("the token endpoint refuses the secret", PATIENCE, |_| {
        (transmitter.polled(|queue| queue.token_refusals) >= 1).then_some(())
    });
    assert!(
        transmitter.polled(|queue| queue.stream.is_none() && queue.management_calls.is_empty())
    );
    assert_eq!(
        service_health_check(server.admin_port(), SERVICE),
        Ok(false)
    );
    assert_server_serving(&server);
    let status = stream_status(&server);
    assert_eq!(status["stream_id"], "", "{status}");
    assert_eq!(status["status"], "unknown", "{status}");
    assert_eq!(status["verification"]["outcome"], "none", "{status}");
}

#[test]
fn a_polled_stream_is_verified_through_its_poll() {
    let transmitter = Transmitter::start();
    let server = StreamConfig::new(&transmitter)
        .poll()
        .poll_token()
        .management_token()
        .verification("1h", "20s")
        .configure(ServerProcess::builder())
        .start();
    wait_for_health(&server, true);
    let stream = transmitter
        .polled(|queue| queue.stream.clone())
        .expect("created");
    assert_eq!(stream["delivery"]["method"], "urn:ietf:rfc:8936");
    let status = stream_status(&server);
    assert_eq!(status["delivery"], "poll");
    assert_eq!(status["endpoint"], transmitter.poll_endpoint().as_str());
    assert_eq!(status["verification"]["outcome"], "succeeded", "{status}");
    // The verification SET came through the poll and was acknowledged.
    assert_eq!(
        transmitter.polled(|queue| queue.acked.clone()),
        [status["last_set_jti"].as_str().expect("jti").to_owned()]
    );
    assert_eq!(verifications(&server, "succeeded"), 1);
}

#[test]
fn a_verification_event_pushed_to_another_replica_verifies_the_one_that_asked() {
    // Both replicas manage the stream; the transmitter pushes everything to A (as through a
    // load balancer that picked A). While A awaits its own verification event, B's reaches
    // A: A accepts it (B's state is in the store; not `invalid_state`), and B learns from
    // the store that it arrived.
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let a_port = support::ports::free_port();
    let replica = |admin_port: u16| {
        StreamConfig::new(&transmitter)
            .push_authorization(PUSH_SECRET)
            .management_token()
            .push_url(a_port)
            .verification("1h", "60s")
            .configure(
                ServerProcess::builder()
                    .redis(&redis.url())
                    .admin_port(admin_port),
            )
            .start()
    };
    // A's own verification event is held back: A keeps awaiting its state.
    transmitter.drop_verifications(true);
    let a = replica(a_port);
    wait_until("A asks for a verification", PATIENCE, |_| {
        (transmitter.polled(|queue| queue.verifications.len()) == 1).then_some(())
    });
    transmitter.drop_verifications(false);
    let b = replica(support::ports::free_port());
    wait_for_health(&b, true);
    let status = stream_status(&b);
    assert_eq!(status["verification"]["outcome"], "succeeded", "{status}");
    assert_eq!(
        status["sets_accepted"], 0,
        "B received no SET itself: {status}"
    );
    let status = stream_status(&a);
    assert_eq!(status["verification"]["pending"], true, "{status}");
    assert_eq!(status["sets_accepted"], 1, "{status}");
    assert_eq!(
        metric(
            &a,
            r#"jwt_revoker_ssf_sets_total{stream="idp",event="verification",outcome="verified"}"#
        ),
        1
    );
    assert_eq!(
        service_health_check(a.admin_port(), SERVICE),
        Ok(false),
        "A is not verified"
    );
}
