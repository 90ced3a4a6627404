//! End to end with the Redis store, through a real Envoy: revocations survive a restart of
//! jwt-revoker, and a Redis that is down at start-up fails closed (503, health NOT_SERVING)
//! until it comes up, with no restart needed.

mod support;

use std::time::Duration;
use support::envoy::EnvoyProcess;
use support::http::Request;
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::tokens;
use support::upstream::TestUpstream;
use support::wait_until;

#[test]
fn revocations_survive_a_restart_with_the_redis_store() {
    let redis = RedisProcess::start();
    let upstream = TestUpstream::start();
    let mut server = ServerProcess::builder().redis(&redis.url()).start();
    let envoy = EnvoyProcess::start(server.authz_port(), upstream.port());
    let token = tokens::valid("wendy");
    assert_eq!(
        Request::get("/")
            .bearer(&token)
            .send(envoy.listen_port())
            .status,
        200
    );
    server.cli_ok(&["revoke", "--token", &token]);
    assert_eq!(
        Request::get("/")
            .bearer(&token)
            .send(envoy.listen_port())
            .status,
        401
    );
    server.restart();
    let after = Request::get("/").bearer(&token).send(envoy.listen_port());
    assert_eq!(after.status, 401, "{}", after.text());
    let other = Request::get("/")
        .bearer(&tokens::valid("xavier"))
        .send(envoy.listen_port());
    assert_eq!(other.status, 200);
}

#[test]
fn redis_down_at_start_up_fails_closed_until_it_comes_up() {
    let port = RedisProcess::free_port();
    let upstream = TestUpstream::start();
    let server = ServerProcess::builder()
        .redis(&format!("redis://127.0.0.1:{port}/0"))
        .serving_not_required()
        .start();
    let envoy = EnvoyProcess::start(server.authz_port(), upstream.port());
    assert!(!server.authz_serving(), "serving without a revocation set");
    let token = tokens::valid("yara");
    let refused = Request::get("/").bearer(&token).send(envoy.listen_port());
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(upstream.request_count(), 0);
    let revoke = server.cli(&["revoke", "--subject", "yara", "--issuer", tokens::ISSUER]);
    assert!(
        !revoke.status.success(),
        "a revoke was acknowledged with Redis down"
    );

    let _redis = RedisProcess::start_on(port);
    wait_until(
        "authz SERVING once Redis is up",
        Duration::from_secs(20),
        |_| server.authz_serving().then_some(()),
    );
    let allowed = Request::get("/").bearer(&token).send(envoy.listen_port());
    assert_eq!(allowed.status, 200, "{}", allowed.text());
}
