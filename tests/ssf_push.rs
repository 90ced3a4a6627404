//! OpenID Shared Signals push delivery (RFC 8935) against real `jwt-revoker serve` replicas
//! on one real Redis, fed by the test transmitter (metadata discovery, JWKS, signed SETs):
//! a pushed event is answered 202 once durable and denied by every replica; a duplicate is a
//! no-op answered 202; a bad push is refused with the RFC 8935 error code and revokes
//! nothing; a store outage answers 503 and the redelivered SET is then recorded.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::check::{CheckClient, Outcome};
use support::http;
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::ssf::{
    AUDIENCE, PUSH_AUTHORIZATION, PUSH_PATH, PUSH_SECRET, StreamConfig, push_set, user, user_set,
};
use support::tokens;
use support::transmitter::{ACCOUNT_DISABLED, SESSION_REVOKED, Transmitter, push};
use support::wait_until;

/// How long a revocation may take to reach another replica.
const PROPAGATION: Duration = Duration::from_secs(15);

fn replica(redis: &RedisProcess, transmitter: &Transmitter) -> ServerProcess {
    StreamConfig::new(transmitter)
        .push_authorization(PUSH_AUTHORIZATION)
        .configure(ServerProcess::builder().redis(&redis.url()))
        .start()
}

#[test]
fn a_pushed_event_is_denied_by_every_replica_once_acknowledged() {
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let a = replica(&redis, &transmitter);
    let b = replica(&redis, &transmitter);
    let (mut check_a, mut check_b) = (
        CheckClient::connect(a.authz_port()),
        CheckClient::connect(b.authz_port()),
    );
    let alice = tokens::valid("alice");
    let bob = tokens::valid("bob");
    assert_eq!(check_a.check(&alice), Outcome::Allowed);
    assert_eq!(check_b.check(&alice), Outcome::Allowed);

    let set = user_set(
        &transmitter,
        SESSION_REVOKED,
        "alice",
        json!({"event_timestamp": tokens::now(), "reason_admin": {"en": "Landspeed violation"}}),
    );
    let answer = push_set(a.admin_port(), &set);
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert!(answer.body.is_empty());
    assert_eq!(check_a.check(&alice), Outcome::Denied(401), "A at once");
    check_b.wait_for(&alice, Outcome::Denied(401), PROPAGATION);
    assert_eq!(check_a.check(&bob), Outcome::Allowed);
    assert_eq!(check_b.check(&bob), Outcome::Allowed);
    // A token issued after the event passes (a subject revocation covers tokens issued up
    // to it).
    let mut later = tokens::claims("alice");
    later["iat"] = json!(tokens::now() + 2);
    assert_eq!(check_b.check(&tokens::rs256(&later)), Outcome::Allowed);

    // The origin is in the revocation's reason.
    let listed = a.cli_ok(&["list"]);
    assert!(listed.contains("ssf stream=idp"), "{listed}");
    assert!(listed.contains("event=caep_session_revoked"), "{listed}");

    // Redelivered (to the other replica, too): 202, nothing new.
    for server in [&a, &b] {
        let again = push_set(server.admin_port(), &set);
        assert_eq!(again.status, 202, "{}", again.text());
    }
    let metrics = http::get(a.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(
            r#"jwt_revoker_ssf_sets_total{stream="idp",event="caep_session_revoked",outcome="revoked"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"jwt_revoker_ssf_sets_total{stream="idp",event="caep_session_revoked",outcome="duplicate"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jwt_revoker_ssf_stream_last_set_timestamp_seconds{stream="idp"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jwt_revoker_ssf_stream_status{stream="idp",status="unknown"} 1"#),
        "{metrics}"
    );

    // The transmitter disables the stream: recorded, and visible in the metrics.
    let disabled = transmitter.set(
        AUDIENCE,
        "https://schemas.openid.net/secevent/ssf/event-type/stream-updated",
        json!({"format": "opaque", "id": "stream-1"}),
        json!({"status": "disabled", "reason": "maintenance"}),
    );
    assert_eq!(push_set(a.admin_port(), &disabled).status, 202);
    let metrics = http::get(a.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(r#"jwt_revoker_ssf_stream_status{stream="idp",status="disabled"} 1"#),
        "{metrics}"
    );
    // …and in `status`, with its reason and source; the stream's health is NOT_SERVING.
    let status: Value =
        serde_json::from_str(a.cli_ok(&["status", "--json"]).trim()).expect("JSON status");
    let stream = &status["ssf_streams"][0];
    assert_eq!(stream["name"], "idp", "{status}");
    assert_eq!(stream["status"], "disabled", "{status}");
    assert_eq!(stream["status_reason"], "maintenance", "{status}");
    assert_eq!(stream["status_source"], "stream_updated", "{status}");
    assert_eq!(stream["delivery"], "push", "{status}");
    assert_eq!(stream["endpoint"], PUSH_PATH, "{status}");
    assert_eq!(stream["healthy"], false, "{status}");
}

#[test]
fn bad_pushes_are_refused_with_their_code_and_revoke_nothing() {
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let server = replica(&redis, &transmitter);
    let mut check = CheckClient::connect(server.authz_port());
    let carol = tokens::valid("carol");
    let event = || json!({"reason": "hijacking"});
    let good = user_set(&transmitter, ACCOUNT_DISABLED, "carol", event());
    let port = server.admin_port();
    let code = |answer: http::Response| {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("content-language"), Some("en"));
        answer.json()["err"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(
        code(push(port, PUSH_PATH, &good, None)),
        "authentication_failed"
    );
    assert_eq!(
        code(push(
            port,
            PUSH_PATH,
            &good,
            Some("Bearer 0123456789abcdef-push-secreX")
        )),
        "authentication_failed"
    );
    let other_audience = transmitter.set(
        "https://other.test",
        ACCOUNT_DISABLED,
        user("carol"),
        event(),
    );
    assert_eq!(code(push_set(port, &other_audience)), "invalid_audience");
    let mut claims: Value = json!({
        "iss": "https://evil.test", "aud": AUDIENCE, "iat": tokens::now(), "jti": "x",
        "sub_id": user("carol"), "events": {ACCOUNT_DISABLED: {}}
    });
    assert_eq!(
        code(push_set(port, &transmitter.sign(&claims))),
        "invalid_issuer"
    );
    claims["iss"] = json!(transmitter.issuer());
    claims["sub_id"] = json!({"format": "iss_sub", "iss": tokens::HMAC_ISSUER, "sub": "carol"});
    assert_eq!(
        code(push_set(port, &transmitter.sign(&claims))),
        "access_denied"
    );
    // An access token, signed by a key the server trusts, is not a SET.
    assert_eq!(code(push_set(port, &carol)), "invalid_request");
    // A SET signed by a key the transmitter does not publish.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("secevent+jwt".to_owned());
    let untrusted = std::fs::read(support::fixture("keys/rsa-untrusted.pem")).expect("pem");
    let untrusted = jsonwebtoken::EncodingKey::from_rsa_pem(&untrusted).expect("key");
    let forged = jsonwebtoken::encode(&header, &claims, &untrusted).expect("sign");
    assert_eq!(code(push_set(port, &forged)), "invalid_key");
    let wrong_type = http::Request::new("POST", PUSH_PATH)
        .header("content-type", "application/jwt")
        .header("authorization", PUSH_AUTHORIZATION)
        .body(good.clone())
        .send(port);
    assert_eq!(code(wrong_type), "invalid_request");
    assert_eq!(
        push(port, "/ssf/push/nope", &good, Some(PUSH_AUTHORIZATION)).status,
        404
    );
    assert_eq!(check.check(&carol), Outcome::Allowed, "nothing was revoked");
    // The same SET, pushed properly, works.
    assert_eq!(push_set(port, &good).status, 202);
    assert_eq!(check.check(&carol), Outcome::Denied(401));
}

#[test]
fn a_store_outage_answers_503_and_the_redelivered_set_is_recorded() {
    let mut redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let a = replica(&redis, &transmitter);
    let b = replica(&redis, &transmitter);
    let dave = tokens::valid("dave");
    let set = user_set(
        &transmitter,
        ACCOUNT_DISABLED,
        "dave",
        json!({"reason": "bulk-account"}),
    );
    redis.kill();
    let answer = push_set(a.admin_port(), &set);
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.header("retry-after").is_some());
    redis.restart();
    // The transmitter redelivers until it is acknowledged.
    wait_until("the redelivered SET is accepted", PROPAGATION, |last| {
        let answer = push_set(a.admin_port(), &set);
        *last = format!("{} {}", answer.status, answer.text());
        (answer.status == 202).then_some(())
    });
    let mut check_b = CheckClient::connect(b.authz_port());
    check_b.wait_for(&dave, Outcome::Denied(401), PROPAGATION);
}

#[test]
fn the_stream_is_created_at_the_transmitter_and_verified() {
    let transmitter = Transmitter::start();
    let admin_port = support::ports::free_port();
    let push_url = support::ssf::push_url(admin_port);
    let server = StreamConfig::new(&transmitter)
        .push_authorization(PUSH_SECRET)
        .management_token()
        .push_url(admin_port)
        .configure(ServerProcess::builder().admin_port(admin_port))
        .start();
    // Created with its push delivery and the events it maps; then the verification event
    // the transmitter sends (with the requested state) is accepted.
    let stream = wait_until("the stream is created", PROPAGATION, |_| {
        transmitter.polled(|queue| queue.stream.clone())
    });
    assert_eq!(stream["delivery"]["method"], "urn:ietf:rfc:8935");
    assert_eq!(stream["delivery"]["endpoint_url"], push_url.as_str());
    assert_eq!(
        stream["delivery"]["authorization_header"],
        format!("Bearer {PUSH_SECRET}").as_str()
    );
    assert!(
        stream["events_requested"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e == SESSION_REVOKED))
    );
    wait_until("the verification is accepted", PROPAGATION, |last| {
        let metrics = http::get(server.metrics_port(), "/metrics").text();
        *last = metrics.clone();
        metrics
            .contains(r#"jwt_revoker_ssf_sets_total{stream="idp",event="verification",outcome="verified"} 1"#)
            .then_some(())
    });
    let metrics = http::get(server.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(
            r#"jwt_revoker_ssf_stream_last_verification_timestamp_seconds{stream="idp"}"#
        ),
        "{metrics}"
    );
    let calls: Vec<String> = transmitter.polled(|queue| {
        queue
            .management_calls
            .iter()
            .map(|(method, _)| method.clone())
            .collect()
    });
    assert_eq!(calls, ["GET", "POST"]);
}
