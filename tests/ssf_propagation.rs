//! Event-to-deny, measured (ignored by default; run with
//! `cargo test --test ssf_propagation -- --ignored --nocapture`): three real replicas on one
//! real Redis; for each of N tokens, either an SSF push (CAEP session-revoked for the token's
//! session, to each replica in turn) or an admin-API `Revoke` of the token, alternating, and
//! the time from sending it until all three replicas deny the token. Prints both figures side
//! by side (this build's profile, this machine's load). The release figure is the `signals`
//! section of `cargo bench --bench stack`.

mod support;

use jsonwebtoken::{Algorithm, Header};
use jwt_revoker::admin::pb::{
    RevokeRequest, revocation_admin_client::RevocationAdminClient, revoke_request,
};
use serde_json::json;
use std::time::{Duration, Instant};
use support::check::{CheckClient, Outcome};
use support::redis::RedisProcess;
use support::server::{ServerProcess, admin_token};
use support::tokens;
use support::transmitter::{SESSION_REVOKED, Transmitter, push};

const AUDIENCE: &str = "https://revoker.test/ssf";
const ROUNDS: usize = 200;

fn percentiles(mut times: Vec<f64>) -> String {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    format!(
        "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        times.len(),
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    )
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn event_to_deny_next_to_the_admin_api() {
    let redis = RedisProcess::start();
    let transmitter = Transmitter::start();
    let replicas: Vec<ServerProcess> = (0..3)
        .map(|_| {
            ServerProcess::builder()
                .redis(&redis.url())
                .log_level("warn")
                .extra_toml(&format!(
                    "[[ssf.streams]]\nname = \"idp\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\ntoken_issuers = [\"{}\"]\n",
                    transmitter.issuer(),
                    tokens::ISSUER
                ))
                .start()
        })
        .collect();
    let mut checks: Vec<CheckClient> = replicas
        .iter()
        .map(|r| CheckClient::connect(r.authz_port()))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut admins: Vec<_> = replicas
        .iter()
        .map(|r| {
            runtime.block_on(async {
                RevocationAdminClient::connect(r.admin_url())
                    .await
                    .expect("admin client")
            })
        })
        .collect();
    let (key, kid) = tokens::fixture_key(Algorithm::ES256);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let (mut pushed, mut revoked) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let mut claims = tokens::claims(&format!("user-{i}"));
        claims["sid"] = json!(format!("session-{i}"));
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
        for check in &mut checks {
            assert_eq!(check.check(&token), Outcome::Allowed);
        }
        let replica = &replicas[i % replicas.len()];
        let started = Instant::now();
        if i % 2 == 0 {
            let set = transmitter.set(
                AUDIENCE,
                SESSION_REVOKED,
                json!({"format": "opaque", "id": format!("session-{i}")}),
                json!({"event_timestamp": tokens::now()}),
            );
            assert_eq!(
                push(replica.admin_port(), "/ssf/push/idp", &set, None).status,
                202
            );
        } else {
            let mut request = tonic::Request::new(RevokeRequest {
                target: Some(revoke_request::Target::Token(token.clone())),
                reason: "measurement".into(),
                expires_at: None,
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", admin_token()).parse().expect("header"),
            );
            runtime
                .block_on(admins[i % replicas.len()].revoke(request))
                .expect("revoke");
        }
        for check in &mut checks {
            while check.check(&token) == Outcome::Allowed {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "not denied within 5 s"
                );
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if i % 2 == 0 {
            pushed.push(ms)
        } else {
            revoked.push(ms)
        }
    }
    println!(
        "event-to-deny (SSF push, 3 replicas):   {}",
        percentiles(pushed)
    );
    println!(
        "revoke-to-deny (admin API, 3 replicas): {}",
        percentiles(revoked)
    );
}
