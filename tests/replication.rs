//! Replicas of the revocation set, with real `jwt-revoker serve` processes and a real
//! `redis-server`: a revocation made on one replica is enforced by another; a Redis outage
//! turns replicas stale (deny or serve-stale, as configured) and they recover without a
//! restart, losing nothing; a trimmed feed forces a fresh snapshot; a cached token that gets
//! revoked is denied on the very next Check.

mod support;

use std::time::Duration;
use support::check::{CheckClient, Outcome};
use support::redis::RedisProcess;
use support::server::{ServerProcess, health_check};
use support::tokens;
use support::wait_until;

/// How long a revocation may take to reach another replica, or a replica to change health.
const PROPAGATION: Duration = Duration::from_secs(15);

/// The change feed's key for the default key prefix.
const FEED_KEY: &[u8] = b"{jwt-revoker}:feed";

fn replica(redis: &RedisProcess, extra_toml: &str) -> ServerProcess {
    ServerProcess::builder()
        .redis(&redis.url())
        .extra_toml(extra_toml)
        .start()
}

/// Polls Check with `token` until it answers `expected`.
fn wait_for_outcome(client: &mut CheckClient, token: &str, expected: Outcome) {
    wait_until(&format!("Check → {expected:?}"), PROPAGATION, |last| {
        let outcome = client.check(token);
        *last = format!("{outcome:?}");
        (outcome == expected).then_some(())
    });
}

/// Polls the authz port's gRPC health until it is (not) SERVING.
fn wait_for_health(server: &ServerProcess, serving: bool) {
    wait_until(
        &format!("health serving={serving}"),
        PROPAGATION,
        |last| match health_check(server.authz_port()) {
            Ok(now) if now == serving => Some(()),
            other => {
                *last = format!("{other:?}");
                None
            }
        },
    );
}

#[test]
fn a_revocation_made_on_one_replica_is_enforced_by_another() {
    let redis = RedisProcess::start();
    let a = replica(&redis, "");
    let b = replica(&redis, "");
    let mut check_a = CheckClient::connect(a.authz_port());
    let mut check_b = CheckClient::connect(b.authz_port());
    let token = tokens::valid("alice");
    let bystander = tokens::valid("bob");
    // Both replicas now hold the token in their verified-token cache.
    assert_eq!(check_a.check(&token), Outcome::Allowed);
    assert_eq!(check_b.check(&token), Outcome::Allowed);

    a.cli_ok(&["revoke", "--token", &token]);
    assert_eq!(check_a.check(&token), Outcome::Denied(401), "A at once");
    wait_for_outcome(&mut check_b, &token, Outcome::Denied(401));
    assert_eq!(check_b.check(&bystander), Outcome::Allowed);

    // And back the other way.
    b.cli_ok(&["unrevoke", "--token", &token]);
    wait_for_outcome(&mut check_a, &token, Outcome::Allowed);
    assert_eq!(check_b.check(&token), Outcome::Allowed);
}

#[test]
fn a_cached_token_that_gets_revoked_is_denied_on_the_next_check() {
    let server = ServerProcess::start();
    let mut check = CheckClient::connect(server.authz_port());
    let token = tokens::valid("carol");
    for _ in 0..3 {
        assert_eq!(check.check(&token), Outcome::Allowed);
    }
    server.cli_ok(&["revoke", "--token", &token]);
    assert_eq!(check.check(&token), Outcome::Denied(401));
    server.cli_ok(&["unrevoke", "--token", &token]);
    assert_eq!(check.check(&token), Outcome::Allowed);

    // A subject revocation covers the cached token too ("sign out everywhere").
    server.cli_ok(&["revoke", "--subject", "carol", "--issuer", tokens::ISSUER]);
    assert_eq!(check.check(&token), Outcome::Denied(401));
}

#[test]
fn a_trimmed_feed_forces_a_fresh_snapshot() {
    let redis = RedisProcess::start();
    let a = replica(&redis, "");
    let b = replica(&redis, "");
    let mut check_b = CheckClient::connect(b.authz_port());
    let token = tokens::valid("dave");
    assert_eq!(check_b.check(&token), Outcome::Allowed);

    // While B is frozen, its revocation passes through the feed and is trimmed away.
    b.pause();
    a.cli_ok(&["revoke", "--token", &token]);
    let trimmed = redis.command(&[b"XTRIM", FEED_KEY, b"MAXLEN", b"0"]);
    b.resume();
    assert_eq!(trimmed, b":1\r\n", "XTRIM removed the entry");

    wait_for_outcome(&mut check_b, &token, Outcome::Denied(401));
    let log = b.log();
    assert!(
        log.contains("replica fell behind the change feed; taking a fresh snapshot"),
        "{log}"
    );
    assert_eq!(log.matches("replica loaded a snapshot").count(), 2, "{log}");
}

/// Redis dies and comes back (with its data, as a production Redis with an append-only
/// file would) while two replicas run with a one-second staleness bound.
fn redis_outage(policy: &str) {
    let mut redis = RedisProcess::start_durable();
    let config = format!("[replica]\nmax_staleness = \"1s\"\nstale_policy = \"{policy}\"");
    let a = replica(&redis, &config);
    let b = replica(&redis, &config);
    let mut check_b = CheckClient::connect(b.authz_port());
    let early = tokens::valid("early");
    let during = tokens::valid("during");
    let bystander = tokens::valid("bystander");
    a.cli_ok(&["revoke", "--token", &early]);
    wait_for_outcome(&mut check_b, &early, Outcome::Denied(401));

    redis.kill();
    // Acknowledged means durable: with the store gone, Revoke refuses.
    let refused = a.cli(&["revoke", "--token", &during]);
    assert!(
        !refused.status.success(),
        "revoke succeeded without a store"
    );

    if policy == "deny" {
        wait_for_health(&b, false);
        assert_eq!(check_b.check(&bystander), Outcome::Denied(503));
        assert_eq!(check_b.check(&early), Outcome::Denied(503));
    } else {
        wait_until("B to report itself stale", PROPAGATION, |last| {
            let status = b.cli_ok(&["status", "--json"]);
            *last = status.clone();
            let status: serde_json::Value = serde_json::from_str(&status).expect("JSON status");
            (status["synced"] == false).then_some(())
        });
        assert_eq!(health_check(b.authz_port()), Ok(true), "serve-stale serves");
        assert_eq!(check_b.check(&early), Outcome::Denied(401));
        assert_eq!(check_b.check(&bystander), Outcome::Allowed);
    }

    redis.restart();
    // Revoked as soon as A reaches the store again, while B may still be reconnecting.
    wait_until("A to revoke again", PROPAGATION, |last| {
        let output = a.cli(&["revoke", "--token", &during]);
        *last = String::from_utf8_lossy(&output.stderr).into_owned();
        output.status.success().then_some(())
    });
    wait_for_health(&b, true);
    wait_for_outcome(&mut check_b, &during, Outcome::Denied(401));
    assert_eq!(
        check_b.check(&early),
        Outcome::Denied(401),
        "lost a revocation"
    );
    assert_eq!(check_b.check(&bystander), Outcome::Allowed);

    // Health transitions are logged by a watcher that looks every 250 ms: wait for it.
    wait_until("B to log that it is current again", PROPAGATION, |last| {
        *last = b.log();
        last.contains("revocation replica is current").then_some(())
    });
    assert!(
        b.log().contains("revocation replica is stale"),
        "{}",
        b.log()
    );
}

#[test]
fn a_redis_outage_under_deny_fails_closed_and_recovers() {
    redis_outage("deny");
}

#[test]
fn a_redis_outage_under_serve_stale_serves_the_last_set_and_recovers() {
    redis_outage("serve-stale");
}
