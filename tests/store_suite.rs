//! One behaviour suite for every `Store` implementation, run against each through a macro,
//! followed by the few tests that only make sense for one of them.

mod support;

use jwt_revoker::revocation::{
    Change, ChangeBatch, FeedPosition, Inserted, Revocation, RevocationKey, RevocationKind, Store,
    StoreError,
};
use jwt_revoker::store::embedded::{EmbeddedOptions, EmbeddedStore, FILE_NAME, REVOCATIONS_TABLE};
use jwt_revoker::store::redis::{RedisOptions, RedisStore, Topology};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::redis::RedisProcess;
use support::redis_ha::{RedisCluster, SentinelSet};
use tempfile::TempDir;

/// "Now" in every test, in Unix seconds; time is passed explicitly, never slept through.
/// In the future, so that the embedded store's purge on open (by the real clock) keeps the data.
const NOW: u64 = 4_000_000_000;
const ISSUER: &str = "https://issuer.test";
/// Feed length of the embedded store under test, small so that history is easy to outrun.
const EMBEDDED_FEED: usize = 4;

fn key(kind: RevocationKind, id: &str) -> RevocationKey {
    RevocationKey::new(ISSUER, kind, id).expect("valid key")
}

fn token(id: &str) -> Revocation {
    revocation(key(RevocationKind::Token, id), NOW + 3600)
}

fn revocation(key: RevocationKey, expires_at: u64) -> Revocation {
    Revocation::new(key, NOW, expires_at, "test").expect("valid revocation")
}

/// A snapshot collected whole.
#[derive(Debug)]
struct Snapshot {
    /// The live revocations, in key order, each once.
    revocations: Vec<Revocation>,
    position: FeedPosition,
}

/// Takes a snapshot of `store`, collecting its pages as they come.
async fn snapshot(store: &dyn Store, now: u64) -> Result<Snapshot, StoreError> {
    let (pages, mut received) = tokio::sync::mpsc::channel(1);
    let collect = async {
        let mut revocations = Vec::new();
        while let Some(page) = received.recv().await {
            revocations.extend(page);
        }
        revocations
    };
    let (position, mut revocations) = tokio::join!(store.snapshot(now, pages), collect);
    revocations.sort_by_cached_key(|revocation| revocation.key.encode());
    revocations.dedup_by(|a, b| a.key == b.key);
    Ok(Snapshot {
        revocations,
        position: position?,
    })
}

/// How a test reaches below one store implementation.
trait Backend: Sized {
    /// A fresh, empty store of its own.
    async fn new() -> Self;
    /// The store under test.
    fn store(&self) -> &dyn Store;
    /// Reopens the store on the same data (a new process, or a second client).
    async fn reopen(&mut self);
    /// Overwrites the stored value of `key` with `garbage`, bypassing the store.
    async fn corrupt(&mut self, key: &RevocationKey, garbage: &[u8]);
    /// Makes the feed forget the changes made so far (trimming, or outrunning its memory).
    async fn lose_feed_history(&mut self);
}

struct Embedded {
    dir: TempDir,
    store: Option<EmbeddedStore>,
}

impl Embedded {
    fn open(dir: &TempDir) -> EmbeddedStore {
        let options = EmbeddedOptions {
            feed_capacity: EMBEDDED_FEED,
            ..EmbeddedOptions::default()
        };
        EmbeddedStore::open_with(dir.path(), options).expect("open the embedded store")
    }
}

impl Backend for Embedded {
    async fn new() -> Self {
        let dir = TempDir::new().expect("create a temp dir");
        let store = Some(Self::open(&dir));
        Self { dir, store }
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref().expect("store is open")
    }

    async fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Self::open(&self.dir));
    }

    async fn corrupt(&mut self, key: &RevocationKey, garbage: &[u8]) {
        self.store = None;
        {
            let table = redb::TableDefinition::<&[u8], &[u8]>::new(REVOCATIONS_TABLE);
            let db = redb::Database::open(self.dir.path().join(FILE_NAME)).expect("open redb");
            let txn = db.begin_write().expect("begin a write");
            txn.open_table(table)
                .expect("open the table")
                .insert(key.encode().as_bytes(), garbage)
                .expect("write garbage");
            txn.commit().expect("commit garbage");
        }
        self.store = Some(Self::open(&self.dir));
    }

    async fn lose_feed_history(&mut self) {
        for n in 0..=EMBEDDED_FEED {
            let filler = token(&format!("filler-{n}"));
            self.store()
                .insert(&filler, NOW)
                .await
                .expect("insert a filler");
        }
    }
}

const PREFIX: &str = "test";

fn redis_options() -> RedisOptions {
    RedisOptions {
        connection_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(1),
        ..RedisOptions::default()
    }
}

struct Redis {
    redis: RedisProcess,
    store: RedisStore,
}

impl Redis {
    async fn connect(redis: &RedisProcess) -> RedisStore {
        RedisStore::connect(&redis.url(), PREFIX, redis_options())
            .await
            .expect("connect to the test redis")
    }

    fn key(name: &str) -> String {
        format!("{{{PREFIX}}}:{name}")
    }

    /// Runs a command on the test Redis and returns its raw RESP reply as text.
    fn command(&self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        String::from_utf8_lossy(&self.redis.command(&args)).into_owned()
    }
}

impl Backend for Redis {
    async fn new() -> Self {
        let redis = RedisProcess::start();
        let store = Self::connect(&redis).await;
        Self { redis, store }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn reopen(&mut self) {
        self.store = Self::connect(&self.redis).await;
    }

    async fn corrupt(&mut self, key: &RevocationKey, garbage: &[u8]) {
        let rev = Self::key("rev");
        let reply =
            self.redis
                .command(&[b"HSET", rev.as_bytes(), key.encode().as_bytes(), garbage]);
        assert!(reply.starts_with(b":"), "HSET failed: {reply:?}");
    }

    async fn lose_feed_history(&mut self) {
        let reply = self.command(&["XTRIM", &Self::key("feed"), "MAXLEN", "0"]);
        assert!(reply.starts_with(':'), "XTRIM failed: {reply:?}");
    }
}

tokio::task_local! {
    /// The Sentinel or Cluster topology the suite runs against (one per run, shared by every
    /// test of the run, each under a key prefix of its own).
    static TOPOLOGY: Topology;
}

/// A store on Sentinel or Cluster, with `min_replicas_acked = 1`, under a fresh prefix.
struct Replicated {
    topology: Topology,
    prefix: String,
    store: RedisStore,
}

impl Replicated {
    async fn connect(topology: &Topology, prefix: &str) -> RedisStore {
        let options = RedisOptions {
            min_replicas_acked: 1,
            replication_timeout: Duration::from_secs(2),
            ..redis_options()
        };
        RedisStore::connect_to(topology, prefix, options)
            .await
            .expect("connect to the test topology")
    }

    /// Runs `cmd` on the master of the prefix's slot, bypassing the store.
    async fn raw(&self, cmd: &::redis::Cmd) -> ::redis::Value {
        match &self.topology {
            Topology::Cluster { nodes, .. } => {
                let client = ::redis::cluster::ClusterClient::new(nodes.clone()).expect("client");
                let mut conn = client.get_async_connection().await.expect("connect");
                cmd.query_async(&mut conn).await.expect("raw command")
            }
            Topology::Sentinel {
                sentinels, master, ..
            } => {
                let mut client = ::redis::sentinel::SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    None,
                    ::redis::sentinel::SentinelServerType::Master,
                )
                .expect("client");
                let mut conn = client.get_async_connection().await.expect("connect");
                cmd.query_async(&mut conn).await.expect("raw command")
            }
            Topology::Standalone { .. } => unreachable!("only Sentinel and Cluster"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }
}

impl Backend for Replicated {
    async fn new() -> Self {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let topology = TOPOLOGY.get();
        let prefix = format!("suite{}", RUN.fetch_add(1, Ordering::Relaxed));
        let store = Self::connect(&topology, &prefix).await;
        Self {
            topology,
            prefix,
            store,
        }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn reopen(&mut self) {
        self.store = Self::connect(&self.topology, &self.prefix).await;
    }

    async fn corrupt(&mut self, key: &RevocationKey, garbage: &[u8]) {
        let mut cmd = ::redis::cmd("HSET");
        cmd.arg(self.key("rev")).arg(key.encode()).arg(garbage);
        self.raw(&cmd).await;
    }

    async fn lose_feed_history(&mut self) {
        let mut cmd = ::redis::cmd("XTRIM");
        cmd.arg(self.key("feed")).arg("MAXLEN").arg(0);
        self.raw(&cmd).await;
    }
}

/// Writes the suite once and instantiates it for each backend: a test per function for the
/// embedded store and standalone Redis; for Sentinel and Cluster, one test that starts the
/// topology once and runs every function against it in turn (each on its own key prefix).
macro_rules! store_suite {
    ($($test:ident),+ $(,)?) => {
        mod sentinel {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole_suite() {
                let set = super::SentinelSet::start();
                super::TOPOLOGY.scope(set.topology(), async {
                    $(
                        eprintln!("sentinel: {}", stringify!($test));
                        super::$test(<super::Replicated as super::Backend>::new().await).await;
                    )+
                }).await;
            }
        }
        mod cluster {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole_suite() {
                let cluster = super::RedisCluster::start();
                super::TOPOLOGY.scope(cluster.topology(), async {
                    $(
                        eprintln!("cluster: {}", stringify!($test));
                        super::$test(<super::Replicated as super::Backend>::new().await).await;
                    )+
                }).await;
            }
        }
        mod embedded {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(<super::Embedded as super::Backend>::new().await).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(<super::Redis as super::Backend>::new().await).await;
                }
            )+
        }
    };
}

store_suite!(
    insert_then_get_returns_it,
    insert_of_a_live_key_returns_it_and_keeps_it,
    insert_that_covers_more_extends_the_live_one,
    insert_over_an_expired_entry_records_the_new_one,
    remove_says_whether_there_was_one,
    claim_revocations_are_stored_like_any_kind,
    list_pages_through_everything_in_key_order,
    list_ends_without_a_cursor_when_the_last_page_is_full,
    expired_entries_are_never_returned_and_purge_deletes_them,
    changes_after_a_snapshot_come_in_order,
    writes_that_change_nothing_add_nothing_to_the_feed,
    waiting_with_no_change_returns_an_empty_batch_after_the_wait,
    a_waiting_reader_wakes_on_a_change,
    lost_feed_history_is_a_gap_and_a_fresh_snapshot_recovers,
    a_foreign_position_is_a_gap,
    extreme_limits_and_waits_are_safe,
    a_corrupt_stored_value_is_skipped,
    writes_are_durable_across_reopening,
    kind_and_location_describe_the_store,
    remember_once_refuses_a_repeat_until_the_mark_expires,
    remember_once_lets_exactly_one_of_concurrent_callers_win,
    remember_once_marks_are_durable_and_not_in_the_feed,
    a_snapshot_comes_in_pages,
    a_snapshot_fails_when_its_receiver_goes_away,
);

/// More than two pages' worth arrive in several bounded pages, whole.
async fn a_snapshot_comes_in_pages(backend: impl Backend) {
    let store = backend.store();
    let all: Vec<Revocation> = (0..2500).map(|i| token(&format!("t{i:04}"))).collect();
    for revocation in &all {
        store.insert(revocation, NOW).await.expect("insert");
    }
    let (pages, mut received) = tokio::sync::mpsc::channel::<Vec<Revocation>>(1);
    let collect = async {
        let mut sizes = Vec::new();
        while let Some(page) = received.recv().await {
            sizes.push(page.len());
        }
        sizes
    };
    let (position, sizes) = tokio::join!(store.snapshot(NOW, pages), collect);
    position.expect("snapshot");
    assert!(sizes.len() >= 2, "{sizes:?}");
    assert!(sizes.iter().all(|size| *size <= 2000), "{sizes:?}");
    assert!(sizes.iter().sum::<usize>() >= all.len(), "{sizes:?}");
    assert_eq!(
        snapshot(store, NOW).await.expect("snapshot").revocations,
        all
    );
}

async fn a_snapshot_fails_when_its_receiver_goes_away(backend: impl Backend) {
    let store = backend.store();
    store.insert(&token("a"), NOW).await.expect("insert");
    let (pages, received) = tokio::sync::mpsc::channel(1);
    drop(received);
    assert!(store.snapshot(NOW, pages).await.is_err());
}

async fn insert_then_get_returns_it(backend: impl Backend) {
    let store = backend.store();
    let rev = token("a");
    assert_eq!(
        store.insert(&rev, NOW).await.expect("insert"),
        Inserted::New
    );
    assert_eq!(store.get(&rev.key, NOW).await.expect("get"), Some(rev));
    let missing = key(RevocationKind::Token, "b");
    assert_eq!(store.get(&missing, NOW).await.expect("get"), None);
    let other_kind = key(RevocationKind::Session, "a");
    assert_eq!(store.get(&other_kind, NOW).await.expect("get"), None);
}

async fn insert_of_a_live_key_returns_it_and_keeps_it(backend: impl Backend) {
    let store = backend.store();
    let first = token("a");
    store.insert(&first, NOW).await.expect("insert");
    let mut second = token("a");
    second.reason = "again".into();
    second.expires_at -= 100;
    assert_eq!(
        store.insert(&second, NOW + 1).await.expect("insert"),
        Inserted::Existing(first.clone())
    );
    assert_eq!(store.get(&first.key, NOW).await.expect("get"), Some(first));
}

async fn insert_that_covers_more_extends_the_live_one(backend: impl Backend) {
    let store = backend.store();
    let first = token("a");
    store.insert(&first, NOW).await.expect("insert");
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    let mut longer = token("a");
    longer.expires_at += 100;
    longer.revoked_at += 5;
    let extended = Revocation {
        expires_at: longer.expires_at,
        ..first.clone()
    };
    assert_eq!(
        store.insert(&longer, NOW + 5).await.expect("insert"),
        Inserted::Extended(extended.clone())
    );
    assert_eq!(
        store.get(&first.key, NOW).await.expect("get"),
        Some(extended.clone())
    );
    let ChangeBatch::Changes(changes, _) = store
        .changes(&position, Duration::from_secs(1))
        .await
        .expect("changes")
    else {
        panic!("unexpected gap");
    };
    assert_eq!(changes, vec![Change::Put(extended)]);

    // A subject revoked again later also covers tokens issued since the first time.
    let subject = revocation(key(RevocationKind::Subject, "alice"), NOW + 3600);
    store.insert(&subject, NOW).await.expect("insert");
    let mut again = subject.clone();
    again.revoked_at = NOW + 60;
    again.reason = "second".into();
    let Inserted::Extended(merged) = store.insert(&again, NOW + 60).await.expect("insert") else {
        panic!("a later subject revocation extends the first");
    };
    assert_eq!(
        (merged.revoked_at, merged.expires_at),
        (NOW + 60, NOW + 3600)
    );
    assert_eq!(merged.reason, "second");
}

async fn insert_over_an_expired_entry_records_the_new_one(backend: impl Backend) {
    let store = backend.store();
    let old = revocation(key(RevocationKind::Subject, "alice"), NOW + 10);
    store.insert(&old, NOW).await.expect("insert");
    let new = revocation(key(RevocationKind::Subject, "alice"), NOW + 1000);
    assert_eq!(
        store.insert(&new, NOW + 10).await.expect("insert"),
        Inserted::New
    );
    assert_eq!(store.get(&new.key, NOW + 10).await.expect("get"), Some(new));
    // The old entry's expiry must not purge the new one.
    store.purge_expired(NOW + 500).await.expect("purge");
    assert!(store.get(&old.key, NOW + 500).await.expect("get").is_some());
}

/// A claim revocation is stored, read, extended, listed, fed and removed like any other
/// kind, its id normalised (`NAME=VALUE`, the value ASCII-lowercased) so that every spelling
/// of the value names the one revocation.
async fn claim_revocations_are_stored_like_any_kind(backend: impl Backend) {
    let store = backend.store();
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    let claim = revocation(
        key(RevocationKind::Claim, "email=Alice=1@Example.COM"),
        NOW + 3600,
    );
    assert_eq!(claim.key.id, "email=alice=1@example.com");
    let subject = revocation(
        key(RevocationKind::Subject, "email=alice=1@example.com"),
        NOW + 3600,
    );
    assert_eq!(
        store.insert(&claim, NOW).await.expect("insert"),
        Inserted::New
    );
    assert_eq!(
        store.insert(&subject, NOW).await.expect("insert"),
        Inserted::New
    );
    let other_spelling = key(RevocationKind::Claim, "email=ALICE=1@example.com");
    assert_eq!(
        store.get(&other_spelling, NOW).await.expect("get"),
        Some(claim.clone())
    );
    let mut again = claim.clone();
    again.revoked_at = NOW + 60;
    let Inserted::Extended(merged) = store.insert(&again, NOW + 60).await.expect("insert") else {
        panic!("a later claim revocation extends the first, like a subject's");
    };
    assert_eq!(merged.revoked_at, NOW + 60);
    let listed = store.list(None, 10, NOW + 60).await.expect("list");
    assert!(listed.revocations.iter().any(|r| r.key == claim.key));
    assert!(listed.revocations.iter().any(|r| r.key == subject.key));
    let ChangeBatch::Changes(changes, _) = store
        .changes(&position, Duration::from_secs(1))
        .await
        .expect("changes")
    else {
        panic!("unexpected gap");
    };
    assert_eq!(changes.first(), Some(&Change::Put(claim.clone())));
    assert!(
        store
            .remove(&other_spelling, NOW + 60)
            .await
            .expect("remove")
    );
    assert_eq!(store.get(&claim.key, NOW + 60).await.expect("get"), None);
    assert!(
        store
            .get(&subject.key, NOW + 60)
            .await
            .expect("get")
            .is_some()
    );
}

async fn remove_says_whether_there_was_one(backend: impl Backend) {
    let store = backend.store();
    let rev = token("a");
    store.insert(&rev, NOW).await.expect("insert");
    assert!(store.remove(&rev.key, NOW).await.expect("remove"));
    assert_eq!(store.get(&rev.key, NOW).await.expect("get"), None);
    assert!(!store.remove(&rev.key, NOW).await.expect("remove"));
    let expired = revocation(key(RevocationKind::Client, "app"), NOW + 5);
    store.insert(&expired, NOW).await.expect("insert");
    assert!(!store.remove(&expired.key, NOW + 5).await.expect("remove"));
    // Re-inserting after a removal is a new revocation.
    assert_eq!(
        store.insert(&rev, NOW).await.expect("insert"),
        Inserted::New
    );
}

/// Revocations of every kind and two issuers, inserted out of order; sorted by encoded key.
async fn insert_many(store: &dyn Store, count: usize) -> Vec<Revocation> {
    let mut all = Vec::new();
    for n in 0..count {
        let kind = RevocationKind::ALL[n % RevocationKind::ALL.len()];
        let issuer = if n % 3 == 0 { ISSUER } else { "https://b.test" };
        // Scrambled ids, so insertion order is not key order.
        let id = format!("id-{:03}", (n * 37) % 101);
        let id = match kind {
            RevocationKind::Claim => format!("email={id}"),
            _ => id,
        };
        let key = RevocationKey::new(issuer, kind, id).expect("valid key");
        let rev = revocation(key, NOW + 3600 + n as u64);
        store.insert(&rev, NOW).await.expect("insert");
        all.push(rev);
    }
    all.sort_by_key(|rev| rev.key.encode());
    all
}

async fn list_pages_through_everything_in_key_order(backend: impl Backend) {
    let store = backend.store();
    let all = insert_many(store, 25).await;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list(cursor.as_deref(), 10, NOW).await.expect("list");
        pages += 1;
        assert!(page.revocations.len() <= 10);
        if let Some(next) = &page.next {
            assert_eq!(
                page.revocations.len(),
                10,
                "only the last page may be short"
            );
            let last = page.revocations.last().expect("a full page");
            assert_eq!(next, &last.key.encode(), "the cursor is the last key");
        }
        listed.extend(page.revocations);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, all);
    // A cursor in the middle starts just after it.
    let middle = all[11].key.encode();
    let page = store.list(Some(&middle), 2, NOW).await.expect("list");
    assert_eq!(page.revocations, all[12..14].to_vec());
}

async fn list_ends_without_a_cursor_when_the_last_page_is_full(backend: impl Backend) {
    let store = backend.store();
    let all = insert_many(store, 6).await;
    let first = store.list(None, 3, NOW).await.expect("list");
    assert_eq!(first.revocations, all[..3].to_vec());
    let next = first.next.expect("a second page");
    let second = store.list(Some(&next), 3, NOW).await.expect("list");
    assert_eq!(second.revocations, all[3..].to_vec());
    assert_eq!(second.next, None);
    let empty = store.list(None, 10, NOW + 100_000).await.expect("list");
    assert!(empty.revocations.is_empty());
    assert_eq!(empty.next, None);
}

async fn expired_entries_are_never_returned_and_purge_deletes_them(backend: impl Backend) {
    let store = backend.store();
    let short = revocation(key(RevocationKind::Token, "short"), NOW + 10);
    let long = revocation(key(RevocationKind::Token, "long"), NOW + 100);
    store.insert(&short, NOW).await.expect("insert");
    store.insert(&long, NOW).await.expect("insert");

    let at = NOW + 10; // `expires_at <= now` is expired.
    assert_eq!(store.get(&short.key, at).await.expect("get"), None);
    assert_eq!(
        store.get(&long.key, at).await.expect("get"),
        Some(long.clone())
    );
    let page = store.list(None, 10, at).await.expect("list");
    assert_eq!(page.revocations, vec![long.clone()]);
    let snapshot = snapshot(store, at).await.expect("snapshot");
    assert_eq!(snapshot.revocations, vec![long.clone()]);

    assert_eq!(store.purge_expired(at).await.expect("purge"), 1);
    assert_eq!(store.purge_expired(at).await.expect("purge"), 0);
    // Gone from storage: not visible even at an earlier "now".
    assert_eq!(store.get(&short.key, NOW).await.expect("get"), None);
    assert_eq!(
        store.get(&long.key, NOW).await.expect("get"),
        Some(long.clone())
    );
    assert_eq!(store.purge_expired(NOW + 100).await.expect("purge"), 1);
    assert_eq!(store.get(&long.key, NOW).await.expect("get"), None);
}

/// Reads changes until `count` have arrived, failing after a few empty waits.
async fn read_changes(
    store: &dyn Store,
    position: &FeedPosition,
    count: usize,
) -> (Vec<Change>, FeedPosition) {
    let mut changes = Vec::new();
    let mut position = position.clone();
    for _ in 0..10 {
        match store
            .changes(&position, Duration::from_millis(500))
            .await
            .expect("changes")
        {
            ChangeBatch::Changes(batch, next) => {
                changes.extend(batch);
                position = next;
            }
            ChangeBatch::Gap => panic!("unexpected gap after {changes:?}"),
        }
        if changes.len() >= count {
            break;
        }
    }
    (changes, position)
}

async fn changes_after_a_snapshot_come_in_order(backend: impl Backend) {
    let store = backend.store();
    let a = token("a");
    store.insert(&a, NOW).await.expect("insert");
    let Snapshot {
        revocations,
        position,
    } = snapshot(store, NOW).await.expect("snapshot");
    assert_eq!(revocations, vec![a.clone()]);

    let b = token("b");
    store.insert(&b, NOW).await.expect("insert");
    store.remove(&a.key, NOW).await.expect("remove");
    let (changes, next) = read_changes(store, &position, 2).await;
    assert_eq!(changes, vec![Change::Put(b), Change::Delete(a.key)]);
    assert_ne!(next, position, "the position advances");

    match store.changes(&next, Duration::ZERO).await.expect("changes") {
        ChangeBatch::Changes(changes, again) => {
            assert!(changes.is_empty());
            assert_eq!(again, next);
        }
        ChangeBatch::Gap => panic!("unexpected gap"),
    }
    // A second snapshot starts where the feed is now, with the current set.
    let snapshot = snapshot(store, NOW).await.expect("snapshot");
    assert_eq!(snapshot.revocations.len(), 1);
    assert!(matches!(
        store.changes(&snapshot.position, Duration::ZERO).await.expect("changes"),
        ChangeBatch::Changes(changes, _) if changes.is_empty()
    ));
}

async fn writes_that_change_nothing_add_nothing_to_the_feed(backend: impl Backend) {
    let store = backend.store();
    let a = token("a");
    store.insert(&a, NOW).await.expect("insert");
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    store.insert(&a, NOW).await.expect("insert again");
    store
        .remove(&key(RevocationKind::Token, "missing"), NOW)
        .await
        .expect("remove");
    store.purge_expired(NOW + 1_000_000).await.expect("purge");
    let c = token("c");
    store.insert(&c, NOW).await.expect("insert");
    let (changes, _) = read_changes(store, &position, 1).await;
    assert_eq!(changes, vec![Change::Put(c)]);
}

async fn waiting_with_no_change_returns_an_empty_batch_after_the_wait(backend: impl Backend) {
    let store = backend.store();
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    let started = Instant::now();
    let batch = store
        .changes(&position, Duration::from_millis(300))
        .await
        .expect("changes");
    let elapsed = started.elapsed();
    assert_eq!(batch, ChangeBatch::Changes(Vec::new(), position));
    assert!(
        elapsed >= Duration::from_millis(250),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}"
    );
}

async fn a_waiting_reader_wakes_on_a_change(backend: impl Backend) {
    let store = backend.store();
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    let a = token("a");
    let started = Instant::now();
    let (batch, inserted) =
        tokio::join!(store.changes(&position, Duration::from_secs(30)), async {
            tokio::task::yield_now().await;
            store.insert(&a, NOW).await
        });
    inserted.expect("insert");
    match batch.expect("changes") {
        ChangeBatch::Changes(changes, _) => assert_eq!(changes, vec![Change::Put(a)]),
        ChangeBatch::Gap => panic!("unexpected gap"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the reader waited out its wait"
    );
}

async fn lost_feed_history_is_a_gap_and_a_fresh_snapshot_recovers(mut backend: impl Backend) {
    let a = token("a");
    let position = snapshot(backend.store(), NOW)
        .await
        .expect("snapshot")
        .position;
    backend.store().insert(&a, NOW).await.expect("insert");
    backend.lose_feed_history().await;
    assert_eq!(
        backend
            .store()
            .changes(&position, Duration::from_millis(100))
            .await
            .expect("changes"),
        ChangeBatch::Gap
    );
    let snapshot = snapshot(backend.store(), NOW).await.expect("snapshot");
    assert!(snapshot.revocations.contains(&a));
    let b = token("b");
    backend.store().insert(&b, NOW).await.expect("insert");
    let (changes, _) = read_changes(backend.store(), &snapshot.position, 1).await;
    assert_eq!(changes, vec![Change::Put(b)]);
}

async fn a_foreign_position_is_a_gap(backend: impl Backend) {
    let store = backend.store();
    store.insert(&token("a"), NOW).await.expect("insert");
    for position in ["", "nonsense", "0:0", "feed/0-0/0", "x/y/z"] {
        assert_eq!(
            store
                .changes(&FeedPosition(position.into()), Duration::ZERO)
                .await
                .expect("changes"),
            ChangeBatch::Gap,
            "{position:?}"
        );
    }
}

async fn extreme_limits_and_waits_are_safe(backend: impl Backend) {
    let store = backend.store();
    let all = insert_many(store, 3).await;
    let page = store.list(None, usize::MAX, NOW).await.expect("list");
    assert_eq!((page.revocations, page.next), (all.clone(), None));
    // A limit of 0 is taken as 1.
    let page = store.list(None, 0, NOW).await.expect("list");
    assert_eq!(page.revocations, all[..1].to_vec());
    let position = snapshot(store, NOW).await.expect("snapshot").position;
    store.insert(&token("late"), NOW).await.expect("insert");
    let batch = store
        .changes(&position, Duration::MAX)
        .await
        .expect("changes");
    assert!(matches!(batch, ChangeBatch::Changes(changes, _) if changes.len() == 1));
}

async fn a_corrupt_stored_value_is_skipped(mut backend: impl Backend) {
    let all = insert_many(backend.store(), 3).await;
    backend.corrupt(&all[1].key, b"\xff{not json").await;
    backend.corrupt(&all[2].key, b"{}").await;
    let store = backend.store();
    assert_eq!(store.get(&all[1].key, NOW).await.expect("get"), None);
    assert_eq!(store.get(&all[2].key, NOW).await.expect("get"), None);
    let page = store.list(None, 10, NOW).await.expect("list");
    assert_eq!(page.revocations, vec![all[0].clone()]);
    let snapshot = snapshot(store, NOW).await.expect("snapshot");
    assert_eq!(snapshot.revocations, vec![all[0].clone()]);
    store.purge_expired(NOW).await.expect("purge");
    // Recording the key again replaces the garbage.
    for rev in &all[1..] {
        assert_eq!(store.insert(rev, NOW).await.expect("insert"), Inserted::New);
        assert_eq!(
            store.get(&rev.key, NOW).await.expect("get"),
            Some(rev.clone())
        );
    }
}

async fn writes_are_durable_across_reopening(mut backend: impl Backend) {
    let a = token("a");
    let b = token("b");
    backend.store().insert(&a, NOW).await.expect("insert");
    backend.store().insert(&b, NOW).await.expect("insert");
    backend.store().remove(&b.key, NOW).await.expect("remove");
    backend.reopen().await;
    let store = backend.store();
    assert_eq!(store.get(&a.key, NOW).await.expect("get"), Some(a.clone()));
    assert_eq!(store.get(&b.key, NOW).await.expect("get"), None);
    assert_eq!(
        store.insert(&a, NOW).await.expect("insert"),
        Inserted::Existing(a)
    );
}

async fn kind_and_location_describe_the_store(backend: impl Backend) {
    let store = backend.store();
    assert!(["redis", "embedded"].contains(&store.kind()));
    assert!(!store.location().is_empty());
}

// ---- embedded only ----

#[tokio::test]
async fn embedded_open_creates_the_directory_and_names_the_file_it_cannot_open() {
    let dir = TempDir::new().expect("create a temp dir");
    let nested = dir.path().join("a/b");
    let store = EmbeddedStore::open(&nested).expect("open");
    assert!(nested.join(FILE_NAME).is_file());
    assert_eq!(store.kind(), "embedded");
    assert!(store.location().ends_with(FILE_NAME));

    // Locked by the first instance.
    let err = EmbeddedStore::open(&nested).expect_err("the file is in use");
    assert!(
        matches!(&err, StoreError::Internal(message) if message.contains(&*nested.to_string_lossy())),
        "{err}"
    );
    drop(store);

    // Not a redb file.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).expect("create dir");
    std::fs::write(corrupt.join(FILE_NAME), b"this is not a database").expect("write");
    let err = EmbeddedStore::open(&corrupt).expect_err("not a database");
    assert!(
        matches!(&err, StoreError::Internal(message) if message.contains(FILE_NAME)),
        "{err}"
    );
}

#[tokio::test]
async fn embedded_position_from_a_previous_instance_is_a_gap() {
    let mut backend = Embedded::new().await;
    let position = snapshot(backend.store(), NOW)
        .await
        .expect("snapshot")
        .position;
    backend.reopen().await;
    assert_eq!(
        backend
            .store()
            .changes(&position, Duration::ZERO)
            .await
            .expect("changes"),
        ChangeBatch::Gap
    );
}

#[tokio::test]
async fn embedded_open_purges_entries_expired_by_the_clock() {
    let dir = TempDir::new().expect("create a temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    // Expired long ago by the real clock, live at the test's "now" of 1970 + 1 s.
    let ancient = Revocation::new(key(RevocationKind::Token, "old"), 0, 10, "").expect("valid");
    store.insert(&ancient, 1).await.expect("insert");
    assert!(store.get(&ancient.key, 1).await.expect("get").is_some());
    drop(store);
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(store.get(&ancient.key, 1).await.expect("get"), None);
}

async fn remember_once_refuses_a_repeat_until_the_mark_expires(backend: impl Backend) {
    let store = backend.store();
    let once = |scope: &'static str, id: &'static str, expires_at: u64, now: u64| async move {
        store
            .remember_once(scope, id, expires_at, now)
            .await
            .expect("remember_once")
    };
    let seen = |scope: &'static str, id: &'static str, now: u64| async move {
        store
            .is_remembered(scope, id, now)
            .await
            .expect("is_remembered")
    };
    assert!(!seen("jti", "a", NOW).await, "not yet recorded");
    assert!(once("jti", "a", NOW + 60, NOW).await, "first time");
    assert!(seen("jti", "a", NOW + 59).await, "recorded");
    assert!(!seen("jti", "a", NOW + 60).await, "expired");
    assert!(!seen("other", "a", NOW).await, "another scope");
    assert!(!once("jti", "a", NOW + 60, NOW + 1).await, "repeat");
    assert!(
        !once("jti", "a", NOW + 600, NOW + 59).await,
        "repeat just before expiry"
    );
    assert!(once("jti", "b", NOW + 60, NOW).await, "another id");
    assert!(once("other", "a", NOW + 60, NOW).await, "another scope");
    assert!(once("jti", "with:colons", NOW + 60, NOW).await);
    assert!(!once("jti", "with:colons", NOW + 60, NOW).await);
    // Once expired, the id may be recorded again (and is then refused again).
    store.purge_expired(NOW + 60).await.expect("purge");
    assert!(once("jti", "a", NOW + 120, NOW + 60).await, "after expiry");
    assert!(
        !once("jti", "a", NOW + 120, NOW + 61).await,
        "repeat after re-recording"
    );
}

async fn remember_once_lets_exactly_one_of_concurrent_callers_win(backend: impl Backend) {
    let store = backend.store();
    let calls = (0..16).map(|_| store.remember_once("jti", "race", NOW + 60, NOW));
    let results = futures_util::future::join_all(calls).await;
    let winners = results
        .into_iter()
        .map(|result| result.expect("remember_once"))
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}

async fn remember_once_marks_are_durable_and_not_in_the_feed(mut backend: impl Backend) {
    let position = snapshot(backend.store(), NOW)
        .await
        .expect("snapshot")
        .position;
    assert!(
        backend
            .store()
            .remember_once("jti", "kept", NOW + 60, NOW)
            .await
            .expect("remember_once")
    );
    assert_eq!(
        backend
            .store()
            .changes(&position, Duration::ZERO)
            .await
            .expect("changes"),
        ChangeBatch::Changes(Vec::new(), position.clone()),
    );
    backend.reopen().await;
    assert!(
        !backend
            .store()
            .remember_once("jti", "kept", NOW + 60, NOW + 1)
            .await
            .expect("remember_once"),
        "the mark survives reopening"
    );
    assert!(
        snapshot(backend.store(), NOW)
            .await
            .expect("snapshot")
            .revocations
            .is_empty()
    );
}

// ---- Redis only ----

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_down_gives_unavailable_and_recovers_when_it_is_back() {
    let mut backend = Redis::new().await;
    let a = token("a");
    backend.store.insert(&a, NOW).await.expect("insert");
    let position = snapshot(&backend.store, NOW)
        .await
        .expect("snapshot")
        .position;

    backend.redis.kill();
    let store = &backend.store;
    assert_unavailable(store.insert(&token("b"), NOW).await, "insert");
    assert_unavailable(store.get(&a.key, NOW).await, "get");
    assert_unavailable(store.remove(&a.key, NOW).await, "remove");
    assert_unavailable(store.list(None, 10, NOW).await, "list");
    assert_unavailable(snapshot(store, NOW).await, "snapshot");
    assert_unavailable(
        store.changes(&position, Duration::from_millis(200)).await,
        "changes",
    );
    assert_unavailable(store.purge_expired(NOW).await, "purge");

    // Back, empty (nothing is saved): the store reconnects, and the old position is a gap.
    backend.redis.restart();
    let store = &backend.store;
    let c = token("c");
    let inserted = eventually(|| store.insert(&c, NOW)).await;
    assert_eq!(inserted, Inserted::New);
    assert_eq!(
        store
            .changes(&position, Duration::ZERO)
            .await
            .expect("changes"),
        ChangeBatch::Gap
    );
    let snapshot = snapshot(store, NOW).await.expect("snapshot");
    assert_eq!(snapshot.revocations, vec![token("c")]);
}

/// Retries `call` while it is `Unavailable`, for a bounded time.
async fn eventually<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("still failing: {err}"),
        }
    }
}

#[tokio::test]
async fn redis_frozen_gives_unavailable_within_the_time_budget() {
    let redis = RedisProcess::start();
    let options = RedisOptions {
        connection_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&redis.url(), PREFIX, options)
        .await
        .expect("connect");
    let backend = Redis { redis, store };
    let a = token("a");
    backend.store.insert(&a, NOW).await.expect("insert");
    let position = snapshot(&backend.store, NOW)
        .await
        .expect("snapshot")
        .position;

    backend.redis.pause();
    let store = &backend.store;
    assert_unavailable(store.insert(&token("b"), NOW).await, "insert");
    assert_unavailable(store.get(&a.key, NOW).await, "get");
    assert_unavailable(snapshot(store, NOW).await, "snapshot");
    assert_unavailable(
        store.changes(&position, Duration::from_millis(100)).await,
        "changes",
    );

    backend.redis.resume();
    let got = eventually(|| store.get(&a.key, NOW)).await;
    assert_eq!(got, Some(a));
    // A timed-out write is an unknown outcome: Redis may run it once it thaws, whole.
    let b = token("b");
    let mut expected = Vec::new();
    if store.get(&b.key, NOW).await.expect("get").is_some() {
        expected.push(Change::Put(b));
    }
    let c = token("c");
    eventually(|| store.insert(&c, NOW)).await;
    expected.push(Change::Put(c));
    // The feed connection, abandoned while blocked, is replaced.
    let (changes, _) = read_changes(store, &position, expected.len()).await;
    assert_eq!(changes, expected);
}

#[tokio::test]
async fn redis_connect_succeeds_while_redis_is_down() {
    let port = RedisProcess::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisStore::connect(&url, PREFIX, redis_options())
        .await
        .expect("connect does not need redis");
    assert_unavailable(
        store.get(&key(RevocationKind::Token, "a"), NOW).await,
        "get",
    );
    let _redis = RedisProcess::start_on(port);
    let a = token("a");
    let inserted = eventually(|| store.insert(&a, NOW)).await;
    assert_eq!(inserted, Inserted::New);
}

#[tokio::test]
async fn redis_connect_refuses_a_bad_url_or_prefix() {
    for (url, prefix) in [
        ("not a url", "p"),
        ("redis://127.0.0.1:1", ""),
        ("redis://127.0.0.1:1", "a{b"),
    ] {
        let err = RedisStore::connect(url, prefix, redis_options())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, StoreError::Internal(_)),
            "{url} {prefix}: {err}"
        );
    }
}

#[tokio::test]
async fn redis_location_hides_the_password() {
    let store = RedisStore::connect(
        "redis://user:hunter2@127.0.0.1:1/0",
        PREFIX,
        redis_options(),
    )
    .await
    .expect("connect is lazy");
    assert_eq!(store.location(), "redis://user:***@127.0.0.1:1/0");
}

#[tokio::test]
async fn redis_a_failing_write_writes_nothing() {
    let backend = Redis::new().await;
    // Make the feed unusable: the write must fail before touching anything.
    backend.command(&["SET", &Redis::key("feed"), "not a stream"]);
    let err = backend
        .store
        .insert(&token("a"), NOW)
        .await
        .expect_err("the feed is not a stream");
    assert!(matches!(err, StoreError::Internal(_)), "{err}");
    for name in ["rev", "exp", "idx"] {
        assert_eq!(
            backend.command(&["EXISTS", &Redis::key(name)]),
            ":0\r\n",
            "{name}"
        );
    }
}

#[tokio::test]
async fn redis_hash_indexes_and_feed_agree_after_many_operations() {
    let backend = Redis::new().await;
    let store = &backend.store;
    let mut feed_entries = 0;
    for n in 0..30 {
        let rev = revocation(key(RevocationKind::Token, &format!("t{n}")), NOW + 10 + n);
        if store.insert(&rev, NOW).await.expect("insert") == Inserted::New {
            feed_entries += 1;
        }
        if n % 3 == 0 && store.remove(&rev.key, NOW).await.expect("remove") {
            feed_entries += 1;
        }
        // A repeat is a no-op, unless the revocation was just removed.
        if store.insert(&rev, NOW).await.expect("insert again") == Inserted::New {
            feed_entries += 1;
        }
    }
    // Writes at a later "now" purge expired entries along the way.
    store
        .insert(&token("late"), NOW + 25)
        .await
        .expect("insert");
    feed_entries += 1;
    let count = |args: &[&str]| backend.command(args);
    let live = count(&["HLEN", &Redis::key("rev")]);
    assert_eq!(count(&["ZCARD", &Redis::key("exp")]), live);
    assert_eq!(count(&["ZCARD", &Redis::key("idx")]), live);
    assert_eq!(
        count(&["XLEN", &Redis::key("feed")]),
        format!(":{feed_entries}\r\n")
    );
    let expected = store
        .list(None, 1000, NOW + 25)
        .await
        .expect("list")
        .revocations;
    assert_eq!(live, format!(":{}\r\n", expected.len()));
}

#[tokio::test]
async fn redis_a_second_client_follows_the_same_feed() {
    let backend = Redis::new().await;
    let other = Redis::connect(&backend.redis).await;
    let position = snapshot(&other, NOW).await.expect("snapshot").position;
    let a = token("a");
    backend.store.insert(&a, NOW).await.expect("insert");
    let (changes, _) = read_changes(&other, &position, 1).await;
    assert_eq!(changes, vec![Change::Put(a)]);
}

#[tokio::test]
async fn redis_a_wiped_database_is_a_gap() {
    let backend = Redis::new().await;
    backend
        .store
        .insert(&token("a"), NOW)
        .await
        .expect("insert");
    let position = snapshot(&backend.store, NOW)
        .await
        .expect("snapshot")
        .position;
    backend.command(&["FLUSHALL"]);
    backend
        .store
        .insert(&token("b"), NOW)
        .await
        .expect("insert");
    assert_eq!(
        backend
            .store
            .changes(&position, Duration::ZERO)
            .await
            .expect("changes"),
        ChangeBatch::Gap
    );
}

#[tokio::test]
async fn redis_a_partly_trimmed_feed_is_a_gap_only_for_positions_before_the_trim() {
    let backend = Redis::new().await;
    let store = &backend.store;
    let start = snapshot(store, NOW).await.expect("snapshot").position;
    let mut positions = vec![start];
    for id in ["a", "b", "c"] {
        store.insert(&token(id), NOW).await.expect("insert");
        positions.push(snapshot(store, NOW).await.expect("snapshot").position);
    }
    // Following the feed lands on the same position as a snapshot taken at the same point.
    let (changes, followed) = read_changes(store, &positions[0], 3).await;
    assert_eq!(changes.len(), 3);
    assert_eq!(followed, positions[3]);
    // Keep only the entry of "c".
    backend.command(&["XTRIM", &Redis::key("feed"), "MAXLEN", "1"]);
    for stale in &positions[..2] {
        assert_eq!(
            store.changes(stale, Duration::ZERO).await.expect("changes"),
            ChangeBatch::Gap
        );
    }
    let (changes, _) = read_changes(store, &positions[2], 1).await;
    assert_eq!(changes, vec![Change::Put(token("c"))]);
}

#[tokio::test]
async fn redis_a_write_no_replica_confirms_is_unavailable_but_whole() {
    let redis = RedisProcess::start();
    let options = RedisOptions {
        min_replicas_acked: 1,
        replication_timeout: Duration::from_millis(100),
        ..redis_options()
    };
    let store = RedisStore::connect(&redis.url(), PREFIX, options)
        .await
        .expect("connect");
    let a = token("a");
    let started = Instant::now();
    match store.insert(&a, NOW).await {
        Err(StoreError::Unavailable(detail)) => {
            assert_eq!(detail, jwt_revoker::revocation::NOT_REPLICATED);
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "WAIT waited"
    );
    // The write is there, whole; retrying is safe.
    assert_eq!(store.get(&a.key, NOW).await.expect("get"), Some(a.clone()));
    assert!(matches!(
        store.insert(&a, NOW).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.remember_once("s", "id", NOW + 10, NOW).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn redis_the_first_call_after_redis_is_back_succeeds() {
    let mut backend = Redis::new().await;
    backend
        .store
        .insert(&token("a"), NOW)
        .await
        .expect("insert");
    backend.redis.kill();
    // Calls fail while Redis is down, leaving the connection's failed reconnect behind.
    for _ in 0..3 {
        assert_unavailable(backend.store.get(&token("a").key, NOW).await, "get");
    }
    backend.redis.restart(); // Answers PING when this returns.
    // The first call after that is served (a broken connection is retried once at once).
    let b = token("b");
    assert_eq!(
        backend.store.insert(&b, NOW).await.expect("the first call"),
        Inserted::New
    );
}
