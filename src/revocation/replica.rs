//! The replica: this server's in-memory copy of the revocation set, kept current by following
//! the store's change feed (snapshot, then tail; any error or gap means a fresh snapshot).
//! Check consults it with no network call; it knows how stale it is and applies the
//! configured policy once it is too stale.

use super::set::{RevocationSet, TokenIdentity};
use super::store::{ChangeBatch, FeedPosition, Store, StoreError};
use super::{Change, RevocationKind};
use crate::clock::unix_now;
use crate::config::{ReplicaConfig, StalePolicy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinError;
use tokio::time::Instant;

/// The answer of the revocation lookup for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No revocation covers the token.
    Clear,
    /// A revocation of this kind covers the token.
    Revoked(RevocationKind),
    /// The replica cannot vouch for the set (never synced, or stale under the `deny` policy).
    Unavailable,
}

/// Whether the replica can answer Check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaHealth {
    /// It has never loaded a snapshot.
    Starting,
    /// It heard from the store within the staleness bound.
    Current,
    /// It has not heard from the store for longer than the bound; `serving` says whether the
    /// policy lets it keep answering.
    Stale {
        /// True under `serve-stale`.
        serving: bool,
    },
}

impl ReplicaHealth {
    /// Whether Check may be answered from the set.
    pub fn serving(self) -> bool {
        matches!(self, Self::Current | Self::Stale { serving: true })
    }
}

/// What the follower read from the store, relayed to the revocation feed's watchers
/// ([`Replica::followed`]) so that the store is tailed once per server, not once per watcher.
#[derive(Debug, Clone)]
pub enum Followed {
    /// Changes read from the feed (possibly none: a poll that found nothing), the position
    /// they were read from, and the position after them. A watcher relays a batch only when
    /// it starts where the watcher stands, so nothing is relayed twice or out of order.
    Changes(Arc<[Change]>, FeedPosition, FeedPosition),
    /// A snapshot was (re)loaded, tailed from this position: changes before it may not have
    /// been relayed.
    Reloaded(FeedPosition),
}

/// Batches kept for a slow feed watcher before it must catch up from the store.
const FOLLOWED_QUEUED: usize = 1024;

/// A summary for status reports.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaStatus {
    /// The current health.
    pub health: ReplicaHealth,
    /// Time since the replica last heard from the store (None: never).
    pub staleness: Option<Duration>,
    /// Live revocations held.
    pub revocations: usize,
    /// Live revocations by kind, in [`RevocationKind::ALL`] order.
    pub by_kind: [usize; RevocationKind::ALL.len()],
}

const NEVER: u64 = u64::MAX;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often expired revocations are dropped from memory (Check ignores them meanwhile).
const MEMORY_PURGE_EVERY: Duration = Duration::from_secs(5);
const STORE_PURGE_EVERY: Duration = Duration::from_secs(60);
/// Snapshot pages read but not yet added to the set being built; with the one being read
/// and the one being added, this bounds the memory a snapshot takes on top of the sets.
const SNAPSHOT_PAGES_QUEUED: usize = 2;

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("building the set failed: {0}")]
    Build(#[from] JoinError),
}

/// Wall-clock Unix seconds.
pub(crate) type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The in-memory revocation set and its sync state.
pub struct Replica {
    set: RwLock<RevocationSet>,
    config: ReplicaConfig,
    epoch: Instant,
    last_heard_ms: AtomicU64,
    /// Bumped whenever the set is about to change (under its lock), so that a lookup that
    /// found nothing at one generation still holds while the generation is unchanged.
    generation: AtomicU64,
    /// While a snapshot loads: the changes applied locally meanwhile, which the snapshot may
    /// have been read too early to hold, applied again to the new set before it goes live.
    local_during_load: Mutex<Option<Vec<Change>>>,
    /// Wall-clock Unix seconds, for expiry (a parameter only so tests can move it).
    clock: Clock,
    /// What the follower reads, for the revocation feed.
    followed: broadcast::Sender<Followed>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("config", &self.config)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// An empty replica that has not synced yet.
    pub fn new(config: ReplicaConfig) -> Self {
        Self::with_clock(config, Box::new(unix_now))
    }

    /// An empty replica reading the time (Unix seconds) from `clock`.
    pub(crate) fn with_clock(config: ReplicaConfig, clock: Clock) -> Self {
        Self {
            set: RwLock::new(RevocationSet::new()),
            config,
            epoch: Instant::now(),
            last_heard_ms: AtomicU64::new(NEVER),
            generation: AtomicU64::new(1),
            local_during_load: Mutex::new(None),
            clock,
            followed: broadcast::Sender::new(FOLLOWED_QUEUED),
        }
    }

    /// Whether a revocation covers the token, under the staleness policy.
    pub fn lookup(&self, token: &TokenIdentity<'_>, now: u64) -> Lookup {
        self.lookup_remembered(token, now, &AtomicU64::new(0))
    }

    /// As [`lookup`](Self::lookup), remembering in `memo` the generation at which no
    /// revocation covered the token, so that while the set is unchanged a repeated token
    /// skips the lookup. Only a clear answer is remembered: a change to the set (which
    /// could add a revocation) moves the generation on, and the next call looks again.
    pub fn lookup_remembered(
        &self,
        token: &TokenIdentity<'_>,
        now: u64,
        memo: &AtomicU64,
    ) -> Lookup {
        if !self.health().serving() {
            return Lookup::Unavailable;
        }
        // Read before the set: a writer bumps the generation while holding the write lock,
        // before changing anything, so a lookup under the generation read here sees either
        // the set as it was at that generation or a later one.
        let generation = self.generation.load(Ordering::Acquire);
        if memo.load(Ordering::Relaxed) == generation {
            return Lookup::Clear;
        }
        match self.read_set().covering(token, now) {
            Some(kind) => Lookup::Revoked(kind),
            None => {
                memo.store(generation, Ordering::Relaxed);
                Lookup::Clear
            }
        }
    }

    /// The set's generation: it moves on before every change to the set, so an answer
    /// derived from the set at one generation holds while it is unchanged.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A claim name that a live claim revocation names and `known` does not accept: a reader
    /// that only reads the known claims (the Envoy module) cannot enforce that revocation.
    pub fn unknown_claim(&self, known: impl Fn(&str) -> bool) -> Option<String> {
        self.read_set().unknown_claim(known).map(str::to_owned)
    }

    /// Applies a change this server just made durable, so it takes effect here at once
    /// (the feed will deliver it again; applying is idempotent).
    pub fn apply_local(&self, change: &Change) {
        let mut set = self.write_set();
        set.apply(change);
        if let Some(log) = self.local_log().as_mut() {
            log.push(change.clone());
        }
    }

    /// The log of local changes kept while a snapshot loads.
    fn local_log(&self) -> std::sync::MutexGuard<'_, Option<Vec<Change>>> {
        self.local_during_load
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Subscribes to what the follower reads from the store from now on.
    pub fn followed(&self) -> broadcast::Receiver<Followed> {
        self.followed.subscribe()
    }

    /// Sends `followed` to the subscribers as the follower does, so that a test can hand a
    /// feed watcher batches in an order of its choosing.
    #[cfg(test)]
    pub(crate) fn publish_followed(&self, followed: Followed) {
        let _ = self.followed.send(followed);
    }

    /// The current health.
    pub fn health(&self) -> ReplicaHealth {
        match self.staleness() {
            None => ReplicaHealth::Starting,
            Some(age) if age <= self.config.max_staleness => ReplicaHealth::Current,
            Some(_) => ReplicaHealth::Stale {
                serving: self.config.stale_policy == StalePolicy::ServeStale,
            },
        }
    }

    /// Time since the replica last heard from the store, or None if it never has.
    pub fn staleness(&self) -> Option<Duration> {
        let heard = self.last_heard_ms.load(Ordering::Acquire);
        if heard == NEVER {
            return None;
        }
        let since_epoch = self.epoch.elapsed().as_millis();
        let age = since_epoch.saturating_sub(u128::from(heard));
        Some(Duration::from_millis(
            u64::try_from(age).unwrap_or(u64::MAX),
        ))
    }

    /// A summary for status reports.
    pub fn status(&self) -> ReplicaStatus {
        let set = self.read_set();
        ReplicaStatus {
            health: self.health(),
            staleness: self.staleness(),
            revocations: set.len(),
            by_kind: set.len_by_kind(),
        }
    }

    fn heard(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_heard_ms.store(ms, Ordering::Release);
    }

    fn read_set(&self) -> std::sync::RwLockReadGuard<'_, RevocationSet> {
        self.set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The set, for a change: moves the generation on (see
    /// [`lookup_remembered`](Self::lookup_remembered)).
    fn write_set(&self) -> std::sync::RwLockWriteGuard<'_, RevocationSet> {
        let set = self
            .set
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        set
    }

    /// Replaces the set with one built from a snapshot of `store`; returns how many
    /// revocations it holds and the feed position to tail from. The store's pages are added
    /// to a new set as they arrive, off the async workers and outside the lock, and the old
    /// set (a million entries take a while) is dropped off the async workers too: Check
    /// waits only for the swap itself.
    async fn load(&self, store: &dyn Store) -> Result<(usize, FeedPosition), LoadError> {
        let now = (self.clock)();
        let (pages, mut received) = mpsc::channel(SNAPSHOT_PAGES_QUEUED);
        let build = move || {
            let revocations = std::iter::from_fn(|| received.blocking_recv()).flatten();
            RevocationSet::from_revocations(revocations, now)
        };
        let built = tokio::task::spawn_blocking(build);
        // A revocation this server makes from now on is in the store before `apply_local`
        // applies it here, but the snapshot may have read past it already: keep a log.
        let _logging = LocalLog::start(self);
        // `pages` goes with the snapshot: when it ends, the build does.
        let position = store.snapshot(now, pages).await;
        let loaded = match (built.await, position) {
            (Ok(set), Ok(position)) => Ok((set, position)),
            (Ok(set), Err(error)) => {
                drop_off_workers(set);
                Err(LoadError::from(error))
            }
            (Err(error), _) => Err(LoadError::from(error)),
        };
        let (mut set, position) = loaded?;
        let mut current = self.write_set();
        // Under the write lock, so no local change can slip between the log and the swap.
        for change in self.local_log().take().into_iter().flatten() {
            set.apply(&change);
        }
        let len = set.len();
        let old = std::mem::replace(&mut *current, set);
        drop(current);
        drop_off_workers(old);
        Ok((len, position))
    }

    /// Drops expired revocations from memory, when any may be due: the scan of every entry
    /// runs off the async workers under the shared lock, so Check keeps reading meanwhile;
    /// the removal takes the exclusive lock only for the expired ones.
    async fn purge_memory(self: &Arc<Self>) {
        let now = (self.clock)();
        if !self.read_set().may_have_expired(now) {
            return;
        }
        let replica = Arc::clone(self);
        let scan = move || replica.read_set().expired(now);
        match tokio::task::spawn_blocking(scan).await {
            Ok(expired) => {
                let purged = self.write_set().remove_expired(&expired, now);
                tracing::debug!(purged, "replica dropped expired revocations");
            }
            Err(error) => tracing::warn!(%error, "replica expiry scan failed"),
        }
    }

    /// How long one feed poll may wait: short enough to hear from the store well within the
    /// staleness bound even when nothing changes.
    fn poll_wait(&self) -> Duration {
        (self.config.max_staleness / 3).min(Duration::from_secs(1))
    }

    /// Follows the store until `shutdown` turns true: snapshot, then tail the feed; on any
    /// error or gap, back off and take a fresh snapshot. Also drops expired revocations, and
    /// reloads a snapshot every `resync_interval` so that any divergence heals by itself.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut last_memory_purge = Instant::now();
        let mut last_store_purge = Instant::now();
        loop {
            let started = Instant::now();
            let loaded = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                loaded = self.load(&*store) => loaded,
            };
            let mut position = match loaded {
                Ok((revocations, position)) => {
                    tracing::info!(
                        revocations,
                        elapsed_ms = started.elapsed().as_millis(),
                        "replica loaded a snapshot"
                    );
                    self.heard();
                    backoff = Duration::from_millis(100);
                    // No watcher is not an error.
                    let _ = self.followed.send(Followed::Reloaded(position.clone()));
                    position
                }
                Err(error) => {
                    tracing::warn!(%error, "replica cannot load a snapshot; retrying");
                    if sleep_or_stop(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            loop {
                let batch = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    batch = store.changes(&position, self.poll_wait()) => batch,
                };
                match batch {
                    Ok(ChangeBatch::Changes(changes, next)) => {
                        if !changes.is_empty() {
                            let mut set = self.write_set();
                            for change in &changes {
                                set.apply(change);
                            }
                            tracing::debug!(changes = changes.len(), "replica applied changes");
                        }
                        self.heard();
                        if self.followed.receiver_count() > 0 {
                            let _ = self.followed.send(Followed::Changes(
                                changes.into(),
                                position.clone(),
                                next.clone(),
                            ));
                        }
                        position = next;
                    }
                    Ok(ChangeBatch::Gap) => {
                        tracing::warn!(
                            "replica fell behind the change feed; taking a fresh snapshot"
                        );
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "replica lost the change feed; will resnapshot");
                        if sleep_or_stop(backoff, &mut shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
                if started.elapsed() >= self.config.resync_interval {
                    tracing::debug!("replica reloads its periodic snapshot");
                    break;
                }
                if last_memory_purge.elapsed() >= MEMORY_PURGE_EVERY {
                    last_memory_purge = Instant::now();
                    self.purge_memory().await;
                }
                if last_store_purge.elapsed() >= STORE_PURGE_EVERY {
                    last_store_purge = Instant::now();
                    if let Err(error) = store.purge_expired((self.clock)()).await {
                        tracing::debug!(%error, "store purge failed");
                    }
                }
            }
        }
    }

    /// Reports health transitions into `on_change` (called once at start with the current
    /// health), logging when the replica goes stale and when it recovers, until `shutdown`.
    pub async fn watch_health(
        self: Arc<Self>,
        mut on_change: impl FnMut(ReplicaHealth) + Send,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut previous = self.health();
        on_change(previous);
        loop {
            if sleep_or_stop(Duration::from_millis(250), &mut shutdown).await {
                return;
            }
            let current = self.health();
            if current == previous {
                continue;
            }
            match current {
                ReplicaHealth::Stale { serving } => tracing::warn!(
                    staleness_secs = self.staleness().map_or(0.0, |s| s.as_secs_f64()),
                    serving,
                    "revocation replica is stale"
                ),
                ReplicaHealth::Current => tracing::info!("revocation replica is current"),
                ReplicaHealth::Starting => {}
            }
            previous = current;
            on_change(current);
        }
    }
}

/// Keeps the log of local changes while a snapshot loads; ends it when dropped, also when
/// the load fails or is cancelled.
struct LocalLog<'a>(&'a Replica);

impl<'a> LocalLog<'a> {
    fn start(replica: &'a Replica) -> Self {
        *replica.local_log() = Some(Vec::new());
        Self(replica)
    }
}

impl Drop for LocalLog<'_> {
    fn drop(&mut self) {
        *self.0.local_log() = None;
    }
}

/// Drops a set on a blocking thread: freeing a million entries takes a while.
fn drop_off_workers(set: RevocationSet) {
    drop(tokio::task::spawn_blocking(move || drop(set)));
}

/// Sleeps for `duration`; returns true if shutdown was requested meanwhile.
async fn sleep_or_stop(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => true,
        () = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    //! The replica against the real embedded store, in paused tokio time. `Switched` wraps
    //! the store to inject faults: it can make the store unreachable, or hold feed reads
    //! back so that the feed moves on without the replica.

    use super::*;
    use crate::revocation::{Inserted, Page, Revocation, RevocationKey};
    use crate::store::{EmbeddedOptions, EmbeddedStore};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    const MAX_STALENESS: Duration = Duration::from_secs(3);

    struct Switched {
        inner: EmbeddedStore,
        down: AtomicBool,
        hold: watch::Sender<bool>,
        snapshots: AtomicUsize,
        /// While true, a snapshot that has read everything waits before it returns.
        hold_snapshot: watch::Sender<bool>,
        /// Notified when a snapshot has read everything.
        snapshot_read: tokio::sync::Notify,
    }

    impl Switched {
        fn new(inner: EmbeddedStore) -> Self {
            Self {
                inner,
                down: AtomicBool::new(false),
                hold: watch::Sender::new(false),
                snapshots: AtomicUsize::new(0),
                hold_snapshot: watch::Sender::new(false),
                snapshot_read: tokio::sync::Notify::new(),
            }
        }
    }

    impl Switched {
        fn unavailable(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("switched off by the test".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Store for Switched {
        async fn insert(&self, revocation: &Revocation, now: u64) -> Result<Inserted, StoreError> {
            self.unavailable()?;
            self.inner.insert(revocation, now).await
        }
        async fn remove(&self, key: &RevocationKey, now: u64) -> Result<bool, StoreError> {
            self.unavailable()?;
            self.inner.remove(key, now).await
        }
        async fn get(
            &self,
            key: &RevocationKey,
            now: u64,
        ) -> Result<Option<Revocation>, StoreError> {
            self.unavailable()?;
            self.inner.get(key, now).await
        }
        async fn list(
            &self,
            after: Option<&str>,
            limit: usize,
            now: u64,
        ) -> Result<Page, StoreError> {
            self.unavailable()?;
            self.inner.list(after, limit, now).await
        }
        async fn snapshot(
            &self,
            now: u64,
            pages: mpsc::Sender<Vec<Revocation>>,
        ) -> Result<FeedPosition, StoreError> {
            self.unavailable()?;
            self.snapshots.fetch_add(1, Ordering::SeqCst);
            let position = self.inner.snapshot(now, pages).await;
            self.snapshot_read.notify_one();
            let _ = self.hold_snapshot.subscribe().wait_for(|hold| !*hold).await;
            position
        }
        async fn changes(
            &self,
            position: &FeedPosition,
            wait: Duration,
        ) -> Result<ChangeBatch, StoreError> {
            let _ = self.hold.subscribe().wait_for(|hold| !*hold).await;
            self.unavailable()?;
            self.inner.changes(position, wait).await
        }
        async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
            self.unavailable()?;
            self.inner.purge_expired(now).await
        }
        async fn remember_once(
            &self,
            scope: &str,
            id: &str,
            expires_at: u64,
            now: u64,
        ) -> Result<bool, StoreError> {
            self.unavailable()?;
            self.inner.remember_once(scope, id, expires_at, now).await
        }
        async fn is_remembered(&self, scope: &str, id: &str, now: u64) -> Result<bool, StoreError> {
            self.unavailable()?;
            self.inner.is_remembered(scope, id, now).await
        }
        fn kind(&self) -> &'static str {
            "embedded"
        }
        fn location(&self) -> String {
            self.inner.location()
        }
    }

    /// A replica following a fresh embedded store, with a clock that moves with tokio's.
    struct Fixture {
        replica: Arc<Replica>,
        store: Arc<Switched>,
        /// Unix seconds when the test started.
        base: u64,
        stop: watch::Sender<bool>,
        follower: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn start(policy: StalePolicy, feed_capacity: usize) -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let inner = EmbeddedStore::open_with(
                dir.path(),
                EmbeddedOptions {
                    feed_capacity,
                    ..EmbeddedOptions::default()
                },
            )
            .expect("open the embedded store");
            let store = Arc::new(Switched::new(inner));
            let base = unix_now();
            let start = Instant::now();
            let config = ReplicaConfig {
                max_staleness: MAX_STALENESS,
                stale_policy: policy,
                resync_interval: Duration::from_secs(600),
            };
            let replica = Arc::new(Replica::with_clock(
                config,
                Box::new(move || base + start.elapsed().as_secs()),
            ));
            let (stop, stop_rx) = watch::channel(false);
            let follower = tokio::spawn(
                Arc::clone(&replica).follow(Arc::clone(&store) as Arc<dyn Store>, stop_rx),
            );
            Self {
                replica,
                store,
                base,
                stop,
                follower,
                _dir: dir,
            }
        }

        fn now(&self) -> u64 {
            (self.replica.clock)()
        }

        async fn revoke(&self, id: &str, lifetime: u64) -> Revocation {
            let revocation = revocation(id, self.now(), self.now() + lifetime);
            let inserted = self.store.inner.insert(&revocation, self.now()).await;
            assert_eq!(inserted.expect("insert"), Inserted::New);
            revocation
        }

        fn lookup(&self, id: &str) -> Lookup {
            self.replica.lookup(&identity(id), self.now())
        }

        /// Polls (in paused time) until the replica gives `expected` for `id`.
        async fn wait_for_lookup(&self, id: &str, expected: Lookup) {
            wait_until(&format!("{id} → {expected:?}"), || {
                self.lookup(id) == expected
            })
            .await;
        }

        async fn wait_for_health(&self, expected: ReplicaHealth) {
            wait_until(&format!("health {expected:?}"), || {
                self.replica.health() == expected
            })
            .await;
        }

        async fn stop(self) {
            self.stop.send_replace(true);
            self.follower.await.expect("the follower ends cleanly");
        }
    }

    fn revocation(id: &str, revoked_at: u64, expires_at: u64) -> Revocation {
        let key = RevocationKey::new("https://idp", RevocationKind::Token, id).expect("key");
        Revocation::new(key, revoked_at, expires_at, "test").expect("revocation")
    }

    fn identity(id: &str) -> TokenIdentity<'_> {
        TokenIdentity {
            issuer: "https://idp",
            token_id: id,
            session: None,
            subject: None,
            client: None,
            issued_at: None,
            claims: &[],
        }
    }

    const REVOKED: Lookup = Lookup::Revoked(RevocationKind::Token);

    /// Polls `done` every 10 ms of (paused) time, for at most a minute of it.
    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn loads_a_snapshot_then_follows_the_feed() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        // Before the first snapshot the replica cannot vouch for anything.
        assert_eq!(fixture.replica.health(), ReplicaHealth::Starting);
        assert_eq!(fixture.lookup("before"), Lookup::Unavailable);
        fixture.revoke("before", 3600).await;
        fixture.wait_for_lookup("before", REVOKED).await;
        assert_eq!(fixture.lookup("after"), Lookup::Clear);

        let after = fixture.revoke("after", 3600).await;
        fixture.wait_for_lookup("after", REVOKED).await;
        let removed = fixture.store.inner.remove(&after.key, fixture.now()).await;
        assert!(removed.expect("remove"));
        fixture.wait_for_lookup("after", Lookup::Clear).await;
        assert_eq!(fixture.lookup("before"), REVOKED);
        assert_eq!(fixture.store.snapshots.load(Ordering::SeqCst), 1);
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_remembered_clear_answer_ends_when_the_set_changes() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        let remembered = |id, memo: &AtomicU64| {
            fixture
                .replica
                .lookup_remembered(&identity(id), fixture.now(), memo)
        };
        let memo = AtomicU64::new(0);
        assert_eq!(remembered("jti-1", &memo), Lookup::Clear);
        let generation = memo.load(Ordering::SeqCst);
        assert_ne!(generation, 0, "a clear answer is remembered");
        // A local change (as an admin Revoke makes) is seen by the very next lookup.
        let now = fixture.now();
        fixture
            .replica
            .apply_local(&Change::Put(revocation("jti-1", now, now + 3600)));
        assert_eq!(remembered("jti-1", &memo), REVOKED);
        assert_eq!(memo.load(Ordering::SeqCst), generation, "not overwritten");
        // So is one that arrives through the feed.
        let memo = AtomicU64::new(0);
        assert_eq!(remembered("jti-2", &memo), Lookup::Clear);
        fixture.revoke("jti-2", 3600).await;
        wait_until("jti-2 revoked through the feed", || {
            remembered("jti-2", &memo) == REVOKED
        })
        .await;
        fixture.stop().await;
    }

    #[tokio::test]
    async fn a_local_change_made_while_a_snapshot_loads_survives_the_swap() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Switched::new(EmbeddedStore::open(dir.path()).expect("open the store"));
        store.hold_snapshot.send_replace(true);
        let replica = Replica::new(ReplicaConfig {
            max_staleness: MAX_STALENESS,
            stale_policy: StalePolicy::Deny,
            resync_interval: Duration::from_secs(600),
        });
        let now = unix_now();
        // Revoked here after the snapshot has read the store, before its set goes live (the
        // store write itself is left out: the snapshot has already read past it).
        let revoke = async {
            store.snapshot_read.notified().await;
            let during = revocation("during", now, now + 3600);
            replica.apply_local(&Change::Put(during));
            store.hold_snapshot.send_replace(false);
        };
        let (loaded, ()) = tokio::join!(replica.load(&store), revoke);
        assert_eq!(loaded.expect("loaded").0, 1);
        replica.heard();
        assert_eq!(replica.lookup(&identity("during"), now), REVOKED);
        assert!(replica.local_log().is_none(), "the log ends with the load");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_feed_keeps_the_replica_current() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        for _ in 0..20 {
            tokio::time::sleep(MAX_STALENESS).await;
            assert_eq!(fixture.replica.health(), ReplicaHealth::Current);
            let staleness = fixture.replica.staleness().expect("synced");
            assert!(staleness <= MAX_STALENESS / 2, "{staleness:?}");
        }
        assert_eq!(fixture.store.snapshots.load(Ordering::SeqCst), 1);
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn expired_revocations_stop_covering_and_are_dropped_from_memory() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        fixture.revoke("short", 10).await;
        fixture.revoke("long", 3600).await;
        fixture.wait_for_lookup("short", REVOKED).await;
        fixture.wait_for_lookup("long", REVOKED).await;
        assert_eq!(fixture.replica.status().revocations, 2);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fixture.lookup("short"), Lookup::Clear);
        wait_until("the expired revocation to leave memory", || {
            fixture.replica.status().revocations == 1
        })
        .await;
        assert_eq!(fixture.lookup("long"), REVOKED);
        assert!(fixture.now() < fixture.base + 60, "purged late");
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_trimmed_feed_forces_a_fresh_snapshot_and_nothing_is_missed() {
        let fixture = Fixture::start(StalePolicy::Deny, 2);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        // Hold the replica's feed reads while five changes go by a feed that keeps two.
        fixture.store.hold.send_replace(true);
        for i in 0..5 {
            fixture.revoke(&format!("missed-{i}"), 3600).await;
        }
        fixture.store.hold.send_replace(false);
        for i in 0..5 {
            fixture
                .wait_for_lookup(&format!("missed-{i}"), REVOKED)
                .await;
        }
        assert_eq!(fixture.store.snapshots.load(Ordering::SeqCst), 2);
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_turns_stale_under_deny_and_recovers_without_a_restart() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        fixture.revoke("old", 3600).await;
        fixture.wait_for_lookup("old", REVOKED).await;

        fixture.store.down.store(true, Ordering::SeqCst);
        // Still current within the bound…
        tokio::time::sleep(MAX_STALENESS / 2).await;
        assert_eq!(fixture.replica.health(), ReplicaHealth::Current);
        // …then stale: every lookup is refused.
        fixture
            .wait_for_health(ReplicaHealth::Stale { serving: false })
            .await;
        assert!(fixture.replica.staleness().expect("synced") > MAX_STALENESS);
        assert_eq!(fixture.lookup("old"), Lookup::Unavailable);
        assert_eq!(fixture.lookup("other"), Lookup::Unavailable);

        // A revocation recorded while this replica could not read the store.
        fixture.revoke("during", 3600).await;
        fixture.store.down.store(false, Ordering::SeqCst);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        fixture.wait_for_lookup("during", REVOKED).await;
        assert_eq!(fixture.lookup("old"), REVOKED);
        assert_eq!(fixture.lookup("other"), Lookup::Clear);
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_under_serve_stale_keeps_answering_from_the_last_set() {
        let fixture = Fixture::start(StalePolicy::ServeStale, 1024);
        fixture.revoke("old", 3600).await;
        fixture.wait_for_lookup("old", REVOKED).await;

        fixture.store.down.store(true, Ordering::SeqCst);
        fixture
            .wait_for_health(ReplicaHealth::Stale { serving: true })
            .await;
        assert_eq!(fixture.lookup("old"), REVOKED);
        assert_eq!(fixture.lookup("other"), Lookup::Clear);

        fixture.revoke("during", 3600).await;
        fixture.store.down.store(false, Ordering::SeqCst);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        fixture.wait_for_lookup("during", REVOKED).await;
        fixture.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn health_watch_reports_each_transition_once() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(Arc::clone(&fixture.replica).watch_health(
            move |health| {
                let _ = seen_tx.send(health);
            },
            fixture.stop.subscribe(),
        ));
        let mut next = async || seen.recv().await.expect("a health report");
        assert_eq!(next().await, ReplicaHealth::Starting);
        assert_eq!(next().await, ReplicaHealth::Current);
        fixture.store.down.store(true, Ordering::SeqCst);
        assert_eq!(next().await, ReplicaHealth::Stale { serving: false });
        fixture.store.down.store(false, Ordering::SeqCst);
        assert_eq!(next().await, ReplicaHealth::Current);
        fixture.stop().await;
        watcher.await.expect("the watcher ends cleanly");
    }

    #[tokio::test(start_paused = true)]
    async fn local_changes_apply_at_once() {
        let fixture = Fixture::start(StalePolicy::Deny, 1024);
        fixture.wait_for_health(ReplicaHealth::Current).await;
        // Held feed: only `apply_local` can make the revocation visible.
        fixture.store.hold.send_replace(true);
        let revocation = fixture.revoke("local", 3600).await;
        fixture
            .replica
            .apply_local(&Change::Put(revocation.clone()));
        assert_eq!(fixture.lookup("local"), REVOKED);
        fixture.replica.apply_local(&Change::Delete(revocation.key));
        assert_eq!(fixture.lookup("local"), Lookup::Clear);
        fixture.store.hold.send_replace(false);
        fixture.stop().await;
    }
}
