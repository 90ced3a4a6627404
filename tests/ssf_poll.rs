//! OpenID Shared Signals poll delivery (RFC 8936) against real `jwt-revoker serve` replicas
//! on one real Redis and the test transmitter's poll endpoint: a queued event is polled,
//! recorded, acknowledged, and denied by every replica; a refused SET comes back in
//! `setErrs`; during a store outage nothing is acknowledged, and the SET redelivered after
//! it is recorded.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::check::{CheckClient, Outcome};
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::tokens;
use support::transmitter::{
    ACCOUNT_DISABLED, POLL_CLIENT, POLL_TOKEN, SESSION_REVOKED, Transmitter,
};
use support::wait_until;

const AUDIENCE: &str = "https://revoker.test/ssf";
const PATIENCE: Duration = Duration::from_secs(30);

fn replica(redis: &RedisProcess, transmitter: &Transmitter) -> ServerProcess {
    ServerProcess::builder()
        .redis(&redis.url())
        .env("TEST_SSF_POLL_TOKEN", POLL_TOKEN)
        .extra_toml(&format!(
            r#"
[[ssf.streams]]
name = "idp"
issuer = "{issuer}"
audience = "{AUDIENCE}"
token_issuers = ["{token_issuer}"]
delivery = "poll"
poll_endpoint = "{endpoint}"
poll_token_env = "TEST_SSF_POLL_TOKEN"
long_poll = "1s"
"#,
            issuer = transmitter.issuer(),
            endpoint = transmitter.poll_endpoint(),
            token_issuer = tokens::ISSUER,
        ))
        .start()
}

fn user(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": tokens::ISSUER, "sub": sub})
}

fn wait_for(client: &mut CheckClient, token: &str, expected: Outcome) {
    wait_until(&format!("Check → {expected:?}"), PATIENCE, |last| {
        let outcome = client.check(token);
        *last = format!("{outcome:?}");
        (outcome == expected).then_some(())
    });
}

#[test]
fn polled_events_are_recorded_acknowledged_and_denied_everywhere() {
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
    let jti = transmitter.queue(&transmitter.set(
        AUDIENCE,
        SESSION_REVOKED,
        user("alice"),
        json!({"event_timestamp": tokens::now()}),
    ));
    wait_for(&mut check_a, &alice, Outcome::Denied(401));
    wait_for(&mut check_b, &alice, Outcome::Denied(401));
    assert_eq!(check_a.check(&bob), Outcome::Allowed);
    wait_until("the SET is acknowledged", PATIENCE, |_| {
        transmitter
            .polled(|queue| queue.acked.contains(&jti) && queue.pending.is_empty())
            .then_some(())
    });
    // A SET for another audience is refused in setErrs, never acknowledged.
    let refused = transmitter.queue(&transmitter.set(
        "https://other.test",
        ACCOUNT_DISABLED,
        user("bob"),
        json!({}),
    ));
    let error = wait_until("setErrs", PATIENCE, |_| {
        transmitter.polled(|queue| queue.errors.get(&refused).cloned())
    });
    assert_eq!(error["err"], "invalid_audience");
    assert!(transmitter.polled(|queue| !queue.acked.contains(&refused)));
    assert_eq!(check_b.check(&bob), Outcome::Allowed);
}

#[test]
fn during_a_store_outage_nothing_is_acknowledged_and_nothing_lost() {
    let mut redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let a = replica(&redis, &transmitter);
    let dave = tokens::valid("dave");
    redis.kill();
    let jti = transmitter.queue(&transmitter.set(
        AUDIENCE,
        ACCOUNT_DISABLED,
        user("dave"),
        json!({"reason": "hijacking"}),
    ));
    // It is polled (more than once) but not acknowledged while the store is down.
    let seen = transmitter.polled(|queue| queue.polls);
    wait_until("polls during the outage", PATIENCE, |_| {
        (transmitter.polled(|queue| queue.polls) >= seen + 2).then_some(())
    });
    assert!(transmitter.polled(|queue| queue.pending.contains_key(&jti) && queue.acked.is_empty()));
    redis.restart();
    wait_until("the SET is acknowledged after the outage", PATIENCE, |_| {
        transmitter
            .polled(|queue| queue.acked.contains(&jti))
            .then_some(())
    });
    let mut check = CheckClient::connect(a.authz_port());
    wait_for(&mut check, &dave, Outcome::Denied(401));
}

#[test]
fn polling_with_oauth_client_credentials() {
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let server = ServerProcess::builder()
        .redis(&redis.url())
        .env("TEST_SSF_POLL_SECRET", POLL_CLIENT.1)
        .extra_toml(&format!(
            r#"
[[ssf.streams]]
name = "idp"
issuer = "{issuer}"
audience = "{AUDIENCE}"
token_issuers = ["{token_issuer}"]
delivery = "poll"
poll_endpoint = "{endpoint}"
poll_token_endpoint = "{token_endpoint}"
poll_client_id = "{client}"
poll_client_secret_env = "TEST_SSF_POLL_SECRET"
poll_scope = "ssf.read"
long_poll = "1s"
"#,
            issuer = transmitter.issuer(),
            endpoint = transmitter.poll_endpoint(),
            token_endpoint = transmitter.token_endpoint(),
            client = POLL_CLIENT.0,
            token_issuer = tokens::ISSUER,
        ))
        .start();
    let erin = tokens::valid("erin");
    transmitter.queue(&transmitter.set(AUDIENCE, ACCOUNT_DISABLED, user("erin"), json!({})));
    let mut check = CheckClient::connect(server.authz_port());
    wait_for(&mut check, &erin, Outcome::Denied(401));
    // One token, reused for every poll since (it lives 60 s).
    let (issued, polls) = transmitter.polled(|queue| (queue.tokens_issued, queue.polls));
    assert_eq!(issued, 1);
    assert!(polls >= 1);
}
