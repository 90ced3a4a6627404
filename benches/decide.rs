//! Criterion benchmarks of the Check decision, `Decider::decide`: a cached and an uncached
//! token (RS256, ES256, EdDSA), with 0 and 1,000,000 revocations in the replica. A cached
//! token whose clear lookup is remembered skips the revocation lookup while the set is
//! unchanged; "changed" is a cached token right after a change to the set (here a no-op
//! removal, made before each timed call), so that the four lookups run.
//!
//! The replica is real: the revocations are written into an embedded store file, and a
//! `Replica` follows that store (snapshot, then the feed) on a background runtime. Each
//! benchmark cycles through 1,024 distinct tokens, each with a `jti`, `sid`, `sub` and
//! `client_id`, so all four revocation lookups run. Run: `cargo bench --bench decide`.

mod support;

use criterion::BatchSize;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use jwt_revoker::authz::{Decider, Decision, RequestHeaders};
use jwt_revoker::config::{Config, Overrides};
use jwt_revoker::revocation::{Change, Replica, ReplicaHealth, RevocationKey, RevocationKind};
use jwt_revoker::server::open_store;
use jwt_revoker::token::{VerifiedCache, Verifier};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const TOKENS: usize = 1024;
const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
];

/// A replica holding `revocations`, followed on its own runtime, and the deciders using it.
struct Fixture {
    replica: Arc<Replica>,
    cached: Decider,
    uncached: Decider,
    _stop: watch::Sender<bool>,
    _background: Runtime,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(revocations: usize, now: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        support::write_embedded(dir.path(), revocations, now);
        let toml = support::config_toml(&format!(
            "[store]\ndata_dir = \"{}\"\n",
            dir.path().display()
        ));
        let overrides = Overrides {
            admin_token: Some("bench-admin-token-0123456789".into()),
            ..Overrides::default()
        };
        let config = Config::parse(&toml, Path::new("bench.toml"), dir.path(), &overrides)
            .expect("a valid config");
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let started = Instant::now();
        let store = background
            .block_on(open_store(
                &config.store,
                prometheus_client::metrics::counter::Counter::default(),
            ))
            .expect("open the store");
        let replica = Arc::new(Replica::new(config.replica.clone()));
        let (stop, stop_rx) = watch::channel(false);
        background.spawn(Arc::clone(&replica).follow(store, stop_rx));
        while replica.health() != ReplicaHealth::Current {
            assert!(started.elapsed() < Duration::from_secs(300), "replica load");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(replica.status().revocations, revocations);
        eprintln!(
            "replica: {revocations} revocations loaded from the embedded store in {:.2?}",
            started.elapsed()
        );
        let verifier = Arc::new(
            background
                .block_on(Verifier::new(
                    &config.issuers,
                    config.leeway,
                    config.max_token_bytes,
                    config.max_token_lifetime,
                ))
                .expect("load the keys"),
        );
        let decider = |cache: u64| {
            Decider::new(
                Arc::clone(&verifier),
                VerifiedCache::new(cache, config.cache_max_bytes, config.leeway),
                Arc::clone(&replica),
                config.token_sources.clone(),
                config.max_token_bytes,
            )
        };
        let (cached, uncached) = (decider(100_000), decider(0));
        Self {
            replica,
            cached,
            uncached,
            _stop: stop,
            _background: background,
            _dir: dir,
        }
    }
}

fn decide(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let now = support::unix_now();
    let requests: Vec<(&str, Vec<RequestHeaders>)> = ALGORITHMS
        .iter()
        .map(|(name, alg)| {
            let tokens = support::tokens(*alg, TOKENS);
            (
                *name,
                tokens
                    .iter()
                    .map(|t| {
                        let headers = support::envoy_headers(t);
                        RequestHeaders::from_pairs(
                            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    for (label, revocations) in [("0", 0), ("1M", 1_000_000)] {
        let fixture = Fixture::new(revocations, now);
        let mut group = c.benchmark_group("check");
        for (name, requests) in &requests {
            for (cache, decider) in [("cached", &fixture.cached), ("uncached", &fixture.uncached)] {
                let allow_all = || {
                    for request in requests {
                        let decision = runtime.block_on(decider.decide(request, now));
                        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
                    }
                };
                // Fills the cache, and checks that every request is allowed.
                allow_all();
                let mut next = 0;
                group.bench_function(format!("{cache}/{name}/{label}"), |b| {
                    b.to_async(&runtime).iter(|| {
                        next = (next + 1) % requests.len();
                        decider.decide(&requests[next], now)
                    });
                });
                // Still allowed: the replica stayed current throughout.
                allow_all();
            }
            // A cached token right after the set changed: the remembered lookup is void.
            let unrelated =
                RevocationKey::new(support::ISSUER, RevocationKind::Token, "none").expect("a key");
            let change = Change::Delete(unrelated);
            let decider = &fixture.cached;
            let mut next = 0;
            group.bench_function(format!("changed/{name}/{label}"), |b| {
                b.to_async(&runtime).iter_batched(
                    || {
                        fixture.replica.apply_local(&change);
                        next = (next + 1) % requests.len();
                        &requests[next]
                    },
                    |request| decider.decide(request, now),
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = decide
}
criterion_main!(benches);
