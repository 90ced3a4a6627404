//! Failover under load, on real processes: the Redis master (Sentinel) or the slot owner
//! (Cluster) is killed with SIGKILL while a loop of revocations runs with
//! `min_replicas_acked = 1`. Every acknowledged revocation must survive (0 lost), a reader
//! that followed the feed must see a gap (the master's replication id changed) and recover
//! everything with a fresh snapshot, and writes must resume without a restart. The time
//! from the kill to the first acknowledged write is printed.

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
