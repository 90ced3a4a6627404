//! Failover under load, on real processes: the Redis master (Sentinel) or the slot owner
//! (Cluster) is killed with SIGKILL while a loop of revocations runs with
//! `min_replicas_acked = 1`. Every acknowledged revocation must survive (0 lost), a reader
//! that followed the feed must see a gap (the master's replication id changed) and recover
//! everything with a fresh snapshot, and writes must resume without a restart. For both
//! also with three jwt-revoker replicas, one behind a real Envoy under Check load: no Check
//! is refused and every acknowledged revocation is enforced by every replica afterwards.
//! The time from the kill to the first acknowledged write is printed. And a revoke that
//! loses its last replica answers UNAVAILABLE within `replication_timeout`, stored whole, and
//! is acknowledged when retried once the replica is back.

mod support;

use jwt_revoker::revocation::{
    ChangeBatch, Revocation, RevocationKey, RevocationKind, Store, StoreError,
};
use jwt_revoker::store::redis::{RedisOptions, RedisStore, Topology};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::redis_ha::{RedisCluster, SentinelSet};

const NOW: u64 = 4_000_000_000;
const ISSUER: &str = "https://issuer.test";
const PREFIX: &str = "failover";

fn revocation(id: &str) -> Revocation {
    let key = RevocationKey::new(ISSUER, RevocationKind::Token, id).expect("key");
    Revocation::new(key, NOW, NOW + 3600, "test").expect("revocation")
}

async fn store(topology: &Topology) -> RedisStore {
    let options = RedisOptions {
        connection_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(1),
        min_replicas_acked: 1,
        replication_timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    };
    RedisStore::connect_to(topology, PREFIX, options)
        .await
        .expect("connect")
}

/// What the write loop saw.
struct Written {
    acked: Vec<String>,
    /// When each acknowledged write was sent, and when it was acknowledged.
    acked_at: Vec<(Instant, Instant)>,
    refused: usize,
}

/// Writes revocations one after another until `stop`, recording the acknowledged ones.
async fn write_loop(store: Arc<RedisStore>, stop: Arc<AtomicBool>) -> Written {
    let mut written = Written {
        acked: Vec::new(),
        acked_at: Vec::new(),
        refused: 0,
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("r{n}");
        let sent = Instant::now();
        match store.insert(&revocation(&id), NOW).await {
            Ok(_) => {
                written.acked.push(id);
                written.acked_at.push((sent, Instant::now()));
            }
            Err(StoreError::Unavailable(_)) => {
                written.refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("unexpected store error: {err}"),
        }
    }
    written
}

/// How many revocations the store holds (0 while it cannot answer).
async fn writer_count(store: &RedisStore) -> usize {
    store
        .list(None, 100_000, NOW)
        .await
        .map_or(0, |page| page.revocations.len())
}

/// Runs the scenario: `kill` kills the master, `wait_failed_over` waits for the new one.
async fn survive_a_failover(
    topology: Topology,
    kill: impl FnOnce(),
    wait_failed_over: impl FnOnce(),
) {
    let writer = Arc::new(store(&topology).await);
    let reader = store(&topology).await;
    // The reader follows the feed from a snapshot taken before any write.
    let (pages, mut received) = tokio::sync::mpsc::channel(4);
    let drain = tokio::spawn(async move { while received.recv().await.is_some() {} });
    let position = reader.snapshot(NOW, pages).await.expect("snapshot");
    drain.await.expect("drain");

    let stop = Arc::new(AtomicBool::new(false));
    let loop_task = tokio::spawn(write_loop(Arc::clone(&writer), Arc::clone(&stop)));
    // Some writes before the kill.
    let start = Instant::now();
    while writer
        .list(None, 25, NOW)
        .await
        .map_or(0, |p| p.revocations.len())
        < 20
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no writes before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = writer_count(&writer).await;
    let killed = Instant::now();
    kill();
    wait_failed_over();
    // Writes continue on the new master for a while.
    let resumed = Instant::now();
    loop {
        if writer_count(&writer).await >= before + 20 {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "writes did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = loop_task.await.expect("write loop");
    let first_after = written
        .acked_at
        .iter()
        .find(|(sent, _)| *sent > killed)
        .map(|(_, acked)| acked.duration_since(killed));
    eprintln!(
        "acknowledged {} writes ({} refused, retried); the first one sent after the kill was \
         acknowledged {:?} after it",
        written.acked.len(),
        written.refused,
        first_after
    );
    assert!(
        first_after.is_some(),
        "no write acknowledged after the kill"
    );

    // 0 lost: every acknowledged revocation is in the store.
    let stored: BTreeSet<String> = writer
        .list(None, 100_000, NOW)
        .await
        .expect("list")
        .revocations
        .into_iter()
        .map(|r| r.key.encode())
        .collect();
    for id in &written.acked {
        assert!(
            stored.contains(&revocation(id).key.encode()),
            "acknowledged revocation {id} was lost"
        );
    }
    // The reader's position predates the failover: a gap, and a fresh snapshot has it all.
    assert_eq!(
        reader
            .changes(&position, Duration::ZERO)
            .await
            .expect("changes"),
        ChangeBatch::Gap,
        "a new master must force a fresh snapshot"
    );
    let (pages, mut received) = tokio::sync::mpsc::channel::<Vec<Revocation>>(4);
    let collect = tokio::spawn(async move {
        let mut all = BTreeSet::new();
        while let Some(page) = received.recv().await {
            all.extend(page.into_iter().map(|r| r.key.encode()));
        }
        all
    });
    reader.snapshot(NOW, pages).await.expect("fresh snapshot");
    let snapshot = collect.await.expect("collect");
    for id in &written.acked {
        assert!(
            snapshot.contains(&revocation(id).key.encode()),
            "{id} missing from the snapshot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_loses_no_acknowledged_revocation() {
    let mut set = SentinelSet::start();
    let topology = set.topology();
    let old = set.master_index().expect("a master");
    let set_ref = std::sync::Mutex::new(&mut set);
    survive_a_failover(
        topology,
        || set_ref.lock().expect("lock").data[old].kill(),
        || {
            set_ref.lock().expect("lock").wait_failed_over(old, 1);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_loses_no_acknowledged_revocation() {
    let mut cluster = RedisCluster::start();
    let topology = cluster.topology();
    let slot_key = format!("{{{PREFIX}}}:rev");
    let old = cluster.owner_of(&slot_key).expect("an owner");
    let cluster_ref = std::sync::Mutex::new(&mut cluster);
    survive_a_failover(
        topology,
        || cluster_ref.lock().expect("lock").nodes[old].kill(),
        || {
            let mut cluster = cluster_ref.lock().expect("lock");
            cluster.wait_failed_over(&slot_key, old);
            // The new owner has no replica left (3 + 3): `WAIT 1` refuses writes until the
            // old owner comes back as its replica, as it does after a restart.
            cluster.nodes[old].restart();
        },
    )
    .await;
}

/// With `min_replicas_acked = 1` and the only replica gone, a revoke through the admin API
/// answers UNAVAILABLE "not replicated in time; retry" once `replication_timeout` has passed
/// (not sooner, not much later); the revocation is stored, whole, and the same revoke
/// retried once the replica is back is acknowledged, with the revocation unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_loses_its_last_replica_is_unavailable_then_whole_after_a_retry() {
    use jwt_revoker::admin::pb::{
        GetRevocationRequest, RevocationKind as PbKind, RevokeOutcome, RevokeRequest,
        revoke_request,
    };
    use support::redis_ha::ReplicatedPair;
    use support::server::ServerProcess;

    const TIMEOUT: Duration = Duration::from_millis(300);
    let mut pair = ReplicatedPair::start();
    let store = format!(
        "url = \"{}\"\nmin_replicas_acked = 1\nreplication_timeout = \"{}ms\"",
        pair.master.url(),
        TIMEOUT.as_millis()
    );
    let server = ServerProcess::builder().store_toml(&store).start();
    let mut client = admin_client(&server.admin_url())
        .await
        .expect("connect to the admin port");
    let key = |id: &str| AdminKey {
        issuer: support::tokens::ISSUER.to_owned(),
        kind: PbKind::Subject.into(),
        id: id.to_owned(),
    };
    let revoke = |id: &str| RevokeRequest {
        target: Some(revoke_request::Target::Key(key(id))),
        reason: format!("reason of {id}"),
        expires_at: None,
    };

    // Acknowledged while the replica is up (a loaded machine may keep the replica's
    // acknowledgement past the short timeout: the same revoke is retried, as a client would).
    acknowledged(&mut client, || revoke("before")).await;
    pair.replica.kill();
    let started = Instant::now();
    let refused = client
        .revoke(admin_request(revoke("during")))
        .await
        .expect_err("no replica to acknowledge it");
    let took = started.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(refused.message(), jwt_revoker::revocation::NOT_REPLICATED);
    eprintln!("UNAVAILABLE after {took:?} (replication_timeout {TIMEOUT:?})");
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_millis(1500),
        "answered after {took:?}"
    );
    // Whole: stored with everything it was sent with.
    let stored = client
        .get_revocation(admin_request(GetRevocationRequest {
            key: Some(key("during")),
        }))
        .await
        .expect("the unacknowledged revocation is stored")
        .into_inner();
    assert_eq!(stored.key, Some(key("during")));
    assert_eq!(stored.reason, "reason of during");
    assert!(stored.revoked_at.is_some() && stored.expires_at.is_some());

    pair.replica.restart();
    pair.wait_in_sync();
    let retried = acknowledged(&mut client, || revoke("during")).await;
    assert!(
        matches!(
            retried.outcome(),
            RevokeOutcome::AlreadyRevoked | RevokeOutcome::Extended
        ),
        "{retried:?}"
    );
    let after = retried.revocation.expect("the revocation in force");
    assert_eq!(after.key, stored.key);
    assert_eq!(after.reason, stored.reason);
}

/// The admin API's revocation key.
type AdminKey = jwt_revoker::admin::pb::RevocationKey;

/// Sends `request()` until the server acknowledges it (it answers UNAVAILABLE "not
/// replicated in time; retry" while the replica's acknowledgement is late); at most 10 s.
async fn acknowledged(
    client: &mut jwt_revoker::admin::pb::revocation_admin_client::RevocationAdminClient<
        tonic::transport::Channel,
    >,
    request: impl Fn() -> jwt_revoker::admin::pb::RevokeRequest,
) -> jwt_revoker::admin::pb::RevokeResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.revoke(admin_request(request())).await {
            Ok(response) => return response.into_inner(),
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("not acknowledged within 10 s: {status:?}"),
        }
    }
}

/// `message` with the admin token.
fn admin_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let bearer = format!("Bearer {}", support::server::admin_token());
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("header value"));
    request
}

/// An admin client of the server at `admin_url`, if it can be reached.
async fn admin_client(
    admin_url: &str,
) -> Option<
    jwt_revoker::admin::pb::revocation_admin_client::RevocationAdminClient<
        tonic::transport::Channel,
    >,
> {
    let endpoint = tonic::transport::Endpoint::from_shared(admin_url.to_owned()).ok()?;
    let channel = endpoint
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    Some(jwt_revoker::admin::pb::revocation_admin_client::RevocationAdminClient::new(channel))
}

/// Revokes `token` through the admin API at `admin_url`; the key of the revocation in force
/// if it was acknowledged.
async fn revoke(admin_url: &str, token: &str) -> Option<AdminKey> {
    use jwt_revoker::admin::pb::{RevokeRequest, revoke_request};
    let request = admin_request(RevokeRequest {
        target: Some(revoke_request::Target::Token(token.to_owned())),
        reason: "failover test".into(),
        expires_at: None,
    });
    admin_client(admin_url)
        .await?
        .revoke(request)
        .await
        .ok()?
        .into_inner()
        .revocation?
        .key
}

/// Three jwt-revoker replicas with the `[store]` lines `store`, one behind a real Envoy under
/// Check load, and a loop of revocations through all three while `kill` kills the master
/// and `wait_failed_over` waits for the new one: no Check through Envoy is refused (the
/// failover is shorter than `max_staleness`), every acknowledged revocation is in the store
/// and enforced by every replica afterwards, and the replicas follow the new master without
/// a restart. The
/// time from the kill to the first acknowledged revocation sent after it is printed.
fn failover_under_check_load_through_envoy(
    store: &str,
    kill: impl FnOnce(),
    wait_failed_over: impl FnOnce(),
) {
    use support::check::{CheckClient, Outcome};
    use support::envoy::EnvoyProcess;
    use support::server::ServerProcess;
    use support::{stack, tokens};

    let replicas: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::builder().store_toml(store).start())
        .collect();
    let upstream = support::upstream::TestUpstream::start();
    let envoy = Arc::new(EnvoyProcess::start(
        replicas[0].authz_port(),
        upstream.port(),
    ));
    let good = tokens::mint_alg(jsonwebtoken::Algorithm::RS256, &tokens::claims("alice"));
    stack::wait_for_status(&envoy, &good, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let checks = {
        let (envoy, stop) = (Arc::clone(&envoy), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut sent, mut refused) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let status = stack::get(&envoy, &good).status;
                sent += 1;
                if status != 200 {
                    refused.push(status);
                }
            }
            (sent, refused)
        })
    };
    let admin_urls: Vec<String> = replicas.iter().map(ServerProcess::admin_url).collect();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(
        String,
        AdminKey,
        Instant,
        Instant,
    )>::new()));
    let revokes = {
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let token =
                    tokens::mint_alg(jsonwebtoken::Algorithm::RS256, &tokens::claims("bob"));
                let sent = Instant::now();
                if let Some(key) =
                    runtime.block_on(revoke(&admin_urls[n % admin_urls.len()], &token))
                {
                    acked
                        .lock()
                        .expect("lock")
                        .push((token, key, sent, Instant::now()));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let count = || acked.lock().expect("lock").len();
    support::wait_until(
        "revocations before the kill",
        Duration::from_secs(20),
        |_| (count() >= 10).then_some(()),
    );
    let before = count();
    let killed = Instant::now();
    kill();
    wait_failed_over();
    support::wait_until(
        "revocations after the failover",
        Duration::from_secs(30),
        |_| (count() >= before + 10).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    revokes.join().expect("revoke loop");
    let (sent, refused) = checks.join().expect("check load");
    let acked = acked.lock().expect("lock").clone();
    let first_after = acked
        .iter()
        .find(|(_, _, sent, _)| *sent > killed)
        .map(|(_, _, _, at)| at.duration_since(killed));
    eprintln!(
        "{sent} checks through envoy, {} refused; {} revocations acknowledged; the first sent \
         after the kill was acknowledged {first_after:?} after it",
        refused.len(),
        acked.len()
    );
    assert!(
        refused.is_empty(),
        "checks refused during the failover: {refused:?}"
    );
    // 0 lost: each is in the store (the admin API reads it there)...
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = admin_client(&replicas[0].admin_url())
            .await
            .expect("admin client");
        for (_, key, _, _) in &acked {
            let request = admin_request(jwt_revoker::admin::pb::GetRevocationRequest {
                key: Some(key.clone()),
            });
            let stored = client.get_revocation(request).await;
            assert!(
                stored.is_ok(),
                "acknowledged revocation {key:?} lost: {stored:?}"
            );
        }
    });
    // ... and enforced by every replica.
    for replica in &replicas {
        let mut client = CheckClient::connect(replica.authz_port());
        for (token, _, _, _) in &acked {
            support::wait_until(
                "every acknowledged revocation enforced",
                Duration::from_secs(20),
                |last| {
                    let outcome = client.check(token);
                    *last = format!("{outcome:?}");
                    (outcome == Outcome::Denied(401)).then_some(())
                },
            );
        }
    }
}

/// Three jwt-revoker replicas on Sentinel; the master is SIGKILLed (see
/// [`failover_under_check_load_through_envoy`]).
#[test]
fn sentinel_failover_under_check_load_through_envoy() {
    let mut set = SentinelSet::start();
    let sentinels: Vec<String> = set
        .sentinel_urls()
        .iter()
        .map(|url| format!("{url:?}"))
        .collect();
    let store = format!(
        "sentinels = [{}]\nsentinel_master = \"{}\"\nmin_replicas_acked = 1",
        sentinels.join(", "),
        support::redis_ha::MASTER_NAME
    );
    let old = set.master_index().expect("a master");
    let set = std::sync::Mutex::new(&mut set);
    failover_under_check_load_through_envoy(
        &store,
        || set.lock().expect("lock").data[old].kill(),
        || {
            set.lock().expect("lock").wait_failed_over(old, 1);
        },
    );
}

/// Three jwt-revoker replicas on Cluster; the master that owns the `{prefix}` slot is
/// SIGKILLed (see [`failover_under_check_load_through_envoy`]). Each master has two replicas,
/// as a cluster that must keep acknowledging writes with `min_replicas_acked = 1` needs: the
/// promoted one keeps the other as its replica, so `WAIT 1` is met again without the killed
/// node coming back (it stays dead here).
#[test]
fn cluster_failover_under_check_load_through_envoy() {
    let mut cluster = RedisCluster::start_with_replicas(2);
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| format!("{url:?}"))
        .collect();
    let store = format!(
        "cluster_nodes = [{}]\nkey_prefix = \"{PREFIX}\"\nmin_replicas_acked = 1",
        nodes.join(", ")
    );
    let slot_key = format!("{{{PREFIX}}}:rev");
    let old = cluster.owner_of(&slot_key).expect("an owner");
    let cluster = std::sync::Mutex::new(&mut cluster);
    failover_under_check_load_through_envoy(
        &store,
        || cluster.lock().expect("lock").nodes[old].kill(),
        || {
            cluster
                .lock()
                .expect("lock")
                .wait_failed_over(&slot_key, old);
        },
    );
}
