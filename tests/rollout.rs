//! A rollout that refuses nothing: two jwt-revoker replicas behind one real Envoy, whose
//! ext_authz cluster health-checks them over gRPC health (as Kubernetes endpoints follow
//! readiness). One replica gets SIGTERM while requests flow; it says NOT_SERVING, keeps
//! answering for its `shutdown_grace`, then drains and exits: not one request is refused.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::envoy::EnvoyProcess;
use support::server::ServerProcess;
use support::stack;
use support::tokens;
use support::upstream::TestUpstream;

/// The rendered Envoy config with the authz cluster on both replicas, health-checked.
fn two_replicas(config: String, first: u16, second: u16) -> String {
    let endpoint = |port: u16| {
        format!(
            "        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
        )
    };
    let single = endpoint(first);
    assert!(
        config.contains(&single),
        "the authz endpoint is where the test expects it"
    );
    let health_checks = "    health_checks:\n    - timeout: 0.2s\n      interval: 0.1s\n      \
        no_traffic_interval: 0.1s\n      unhealthy_threshold: 1\n      healthy_threshold: 1\n      \
        grpc_health_check: {}\n";
    let cluster = "  - name: jwt_revoker_authz\n";
    assert!(config.contains(cluster));
    config
        .replacen(&single, &format!("{single}{}", endpoint(second)), 1)
        .replacen(cluster, &format!("{cluster}{health_checks}"), 1)
}

#[test]
fn sigterm_to_one_of_two_replicas_behind_envoy_refuses_nothing() {
    let upstream = TestUpstream::start();
    let builder = ServerProcess::builder().extra_toml("shutdown_grace = \"2s\"");
    let mut leaving = builder.clone().start();
    let staying = builder.start();
    let (first, second) = (leaving.authz_port(), staying.authz_port());
    let envoy = Arc::new(EnvoyProcess::start_edited(
        first,
        upstream.port(),
        |config| two_replicas(config, first, second),
    ));
    let token = tokens::mint_alg(jsonwebtoken::Algorithm::RS256, &tokens::claims("alice"));
    stack::wait_for_status(&envoy, &token, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (envoy, stop, token) = (Arc::clone(&envoy), Arc::clone(&stop), token.clone());
        std::thread::spawn(move || {
            let (mut sent, mut refused) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let status = stack::get(&envoy, &token).status;
                sent += 1;
                if status != 200 {
                    refused.push(status);
                }
            }
            (sent, refused)
        })
    };
    // Both replicas take Checks before the rollout.
    support::wait_until("checks on both replicas", Duration::from_secs(10), |_| {
        let healthy = envoy
            .stat("cluster.jwt_revoker_authz.membership_healthy")
            .unwrap_or(0);
        (healthy == 2).then_some(())
    });
    let terminated = Instant::now();
    leaving.sigterm();
    let status = leaving.wait_exit();
    let exited = terminated.elapsed();
    // Requests keep flowing to the remaining replica for a moment after the exit.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (sent, refused) = load.join().expect("load thread");
    assert!(status.success(), "exit status {status}");
    eprintln!(
        "{sent} requests during the rollout, {} refused",
        refused.len()
    );
    assert!(sent > 50, "too little load to tell: {sent}");
    assert!(
        refused.is_empty(),
        "refused during the rollout: {refused:?}\nenvoy log:\n{}",
        envoy.log()
    );
    assert!(
        exited >= Duration::from_secs(2),
        "exited before its grace: {exited:?}"
    );
    assert!(
        staying.authz_serving(),
        "the other replica still serves: {}",
        staying.log()
    );
}
