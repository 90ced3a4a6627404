//! OpenID Shared Signals poll delivery (RFC 8936) against real `jwt-revoker serve` replicas
//! on one real Redis and the test transmitter's poll endpoint: a queued event is polled,
//! recorded, acknowledged, and denied by every replica; a refused SET comes back in
//! `setErrs`; during a store outage nothing is acknowledged, and the SET redelivered after
//! it is recorded.

mod support;

use serde_json::json;
use std::time::Duration;
use support::check::{CheckClient, Outcome};
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::ssf::{StreamConfig, user, user_set};
use support::tokens;
use support::transmitter::{ACCOUNT_DISABLED, SESSION_REVOKED, Transmitter};
use support::wait_until;

const PATIENCE: Duration = Duration::from_secs(30);

fn replica(redis: &RedisProcess, transmitter: &Transmitter) -> ServerProcess {
    StreamConfig::new(transmitter)
        .poll()
        .poll_token()
        .configure(ServerProcess::builder().redis(&redis.url()))
        .start()
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
    let jti = transmitter.queue(&user_set(
        &transmitter,
        SESSION_REVOKED,
        "alice",
        json!({"event_timestamp": tokens::now()}),
    ));
    check_a.wait_for(&alice, Outcome::Denied(401), PATIENCE);
    check_b.wait_for(&alice, Outcome::Denied(401), PATIENCE);
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
    let jti = transmitter.queue(&user_set(
        &transmitter,
        ACCOUNT_DISABLED,
        "dave",
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
    check.wait_for(&dave, Outcome::Denied(401), PATIENCE);
}

#[test]
fn polling_with_oauth_client_credentials() {
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let server = StreamConfig::new(&transmitter)
        .poll()
        .poll_client_credentials()
        .configure(ServerProcess::builder().redis(&redis.url()))
        .start();
    let erin = tokens::valid("erin");
    transmitter.queue(&user_set(&transmitter, ACCOUNT_DISABLED, "erin", json!({})));
    let mut check = CheckClient::connect(server.authz_port());
    check.wait_for(&erin, Outcome::Denied(401), PATIENCE);
    // One token, reused for every poll since (it lives 60 s).
    let (issued, polls) = transmitter.polled(|queue| (queue.tokens_issued, queue.polls));
    assert_eq!(issued, 1);
    assert!(polls >= 1);
}
