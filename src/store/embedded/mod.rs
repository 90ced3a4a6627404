//! The embedded store: the zero-setup default, revocations kept durably in a `redb` file in a
//! data directory, with an in-process change feed for the replica in the same process.
//!
//! On disk, table [`REVOCATIONS_TABLE`] maps each encoded [`RevocationKey`] to the JSON of its
//! [`Revocation`], and table `expiry` indexes the keys by `expires_at` so that purging is cheap.
//! Tables `once` and `once_expiry` hold the marks of `remember_once` (`<scope>:<id>` →
//! `expires_at`, and their index by expiry).
//! Every write is committed durably before the call returns. The feed lives in memory only: a
//! position is only meaningful to the instance that issued it, and any other is a gap.

mod feed;

use super::{MAX_CHANGES_PER_BATCH, MAX_WAIT, SNAPSHOT_PAGE, random_u64};
use crate::revocation::{
    Change, ChangeBatch, FeedPosition, Inserted, Page, Revocation, RevocationKey, Store, StoreError,
};
use async_trait::async_trait;
use feed::Feed;
use prometheus_client::metrics::counter::Counter;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Name of the file created in the data directory.
pub const FILE_NAME: &str = "revocations.redb";

/// Most memory `redb` keeps for pages it has read or is about to write. Its default (1 GiB)
/// would keep the whole file in memory once a snapshot has read it through, some 400 bytes
/// per revocation held for nothing: Check never reads the store, and a snapshot reads each
/// page once.
const CACHE_BYTES: usize = 16 << 20;

/// Name of the table mapping encoded keys (bytes) to the JSON of a revocation (bytes).
pub const REVOCATIONS_TABLE: &str = "revocations";

const REVOCATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new(REVOCATIONS_TABLE);
const EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("expiry");
/// `remember_once` marks: `<scope>:<id>` → `expires_at`.
const ONCE: TableDefinition<&[u8], u64> = TableDefinition::new("once");
/// The marks by `expires_at`, for purging.
const ONCE_EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("once_expiry");

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How many recent changes the in-process feed keeps; a replica further behind gets a gap.
    pub feed_capacity: usize,
    /// Counts entries skipped because they are unreadable (a metric; see `crate::metrics`).
    pub skipped_entries: Counter,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            feed_capacity: 65_536,
            skipped_entries: Counter::default(),
        }
    }
}

/// Revocations in a `redb` file, with an in-process change feed.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Held across each write transaction and its feed entry, so feed order is commit order
    /// and a snapshot can read a state and its position together.
    writer: Mutex<()>,
    /// Held only briefly (never across disk I/O), so async readers of the feed never wait
    /// for a commit.
    feed: Mutex<Feed>,
    /// The sequence number of the last change, for waiters.
    last_seq: watch::Sender<u64>,
    /// Counts unreadable entries skipped.
    skipped_entries: Counter,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) `revocations.redb` in `dir`, creating `dir` too, and purges
    /// expired entries.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Like [`EmbeddedStore::open`], with explicit options.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let cannot_open =
            |what: String| StoreError::Internal(format!("cannot open {}: {what}", path.display()));
        std::fs::create_dir_all(dir).map_err(|err| cannot_open(err.to_string()))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|err| cannot_open(err.to_string()))?;
        let txn = db
            .begin_write()
            .map_err(|err| cannot_open(err.to_string()))?;
        txn.open_table(REVOCATIONS)
            .map_err(|err| cannot_open(err.to_string()))?;
        txn.open_table(EXPIRY)
            .map_err(|err| cannot_open(err.to_string()))?;
        txn.open_table(ONCE)
            .map_err(|err| cannot_open(err.to_string()))?;
        txn.open_table(ONCE_EXPIRY)
            .map_err(|err| cannot_open(err.to_string()))?;
        txn.commit().map_err(|err| cannot_open(err.to_string()))?;

        let inner = Inner {
            db,
            path: path.clone(),
            writer: Mutex::new(()),
            feed: Mutex::new(Feed::new(random_u64(), options.feed_capacity)),
            last_seq: watch::Sender::new(0),
            skipped_entries: options.skipped_entries,
        };
        let purged = inner.purge_expired(unix_now())?;
        tracing::info!(path = %path.display(), purged, "embedded store opened");
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Runs blocking database work off the async runtime.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| StoreError::Internal(format!("embedded store task failed: {err}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert(&self, revocation: &Revocation, now: u64) -> Result<Inserted, StoreError> {
        let revocation = revocation.clone();
        self.run(move |inner| inner.insert(revocation, now)).await
    }

    async fn remove(&self, key: &RevocationKey, now: u64) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(move |inner| inner.remove(key, now)).await
    }

    async fn get(&self, key: &RevocationKey, now: u64) -> Result<Option<Revocation>, StoreError> {
        let encoded = key.encode();
        self.run(move |inner| inner.get(&encoded, now)).await
    }

    async fn list(&self, after: Option<&str>, limit: usize, now: u64) -> Result<Page, StoreError> {
        let after = after.map(str::to_owned);
        self.run(move |inner| inner.list(after.as_deref(), limit, now))
            .await
    }

    async fn snapshot(
        &self,
        now: u64,
        pages: mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError> {
        self.run(move |inner| inner.snapshot(now, &pages)).await
    }

    async fn changes(
        &self,
        position: &FeedPosition,
        wait: Duration,
    ) -> Result<ChangeBatch, StoreError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        // Subscribed before looking, so a change made after the look wakes us.
        let mut last_seq = self.inner.last_seq.subscribe();
        loop {
            let batch = {
                let feed = self.inner.lock_feed();
                match feed.parse(position) {
                    Some(seq) => feed.since(seq, MAX_CHANGES_PER_BATCH),
                    None => ChangeBatch::Gap,
                }
            };
            let empty = matches!(&batch, ChangeBatch::Changes(changes, _) if changes.is_empty());
            if !empty {
                return Ok(batch);
            }
            match tokio::time::timeout_at(deadline, last_seq.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out (or the sender is gone, which cannot happen while `self` lives).
                Ok(Err(_)) | Err(_) => return Ok(batch),
            }
        }
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.run(move |inner| inner.purge_expired(now)).await
    }

    async fn remember_once(
        &self,
        scope: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mark = format!("{scope}:{id}");
        self.run(move |inner| inner.remember_once(&mark, expires_at, now))
            .await
    }

    async fn is_remembered(&self, scope: &str, id: &str, now: u64) -> Result<bool, StoreError> {
        let mark = format!("{scope}:{id}");
        self.run(move |inner| inner.is_remembered(&mark, now)).await
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn location(&self) -> String {
        self.inner.path.display().to_string()
    }
}

impl Inner {
    fn lock_feed(&self) -> MutexGuard<'_, Feed> {
        // A panic while holding the lock leaves the feed consistent (push is one step).
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // It guards no data: a panic while holding it cannot leave anything half-done.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn error(&self, err: impl std::fmt::Display) -> StoreError {
        StoreError::Internal(format!("{}: {err}", self.path.display()))
    }

    /// Appends a committed change to the feed (the caller holds the writer lock) and wakes
    /// the readers.
    fn publish(&self, change: Change) {
        let seq = self.lock_feed().push(change);
        self.last_seq.send_replace(seq);
    }

    fn insert(&self, mut revocation: Revocation, now: u64) -> Result<Inserted, StoreError> {
        let encoded = revocation.key.encode();
        let mut outcome = Inserted::New;
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|err| self.error(err))?;
        {
            let mut revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
            let mut expiry = txn.open_table(EXPIRY).map_err(|err| self.error(err))?;
            let existing = revocations
                .get(encoded.as_bytes())
                .map_err(|err| self.error(err))?
                .map(|value| value.value().to_vec());
            if let Some(existing) = existing.and_then(|bytes| self.parse(&encoded, &bytes)) {
                if !existing.is_expired(now) {
                    match existing.extended_by(&revocation) {
                        None => return Ok(Inserted::Existing(existing)),
                        Some(extended) => {
                            revocation = extended;
                            outcome = Inserted::Extended(revocation.clone());
                        }
                    }
                }
                expiry
                    .remove((existing.expires_at, encoded.as_bytes()))
                    .map_err(|err| self.error(err))?;
            }
            let json = serde_json::to_vec(&revocation).map_err(|err| self.error(err))?;
            revocations
                .insert(encoded.as_bytes(), json.as_slice())
                .map_err(|err| self.error(err))?;
            expiry
                .insert((revocation.expires_at, encoded.as_bytes()), ())
                .map_err(|err| self.error(err))?;
        }
        txn.commit().map_err(|err| self.error(err))?;
        tracing::debug!(key = %encoded, expires_at = revocation.expires_at, "revocation stored");
        self.publish(Change::Put(revocation));
        Ok(outcome)
    }

    fn remove(&self, key: RevocationKey, now: u64) -> Result<bool, StoreError> {
        let encoded = key.encode();
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|err| self.error(err))?;
        let live = {
            let mut revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
            let mut expiry = txn.open_table(EXPIRY).map_err(|err| self.error(err))?;
            let removed = revocations
                .remove(encoded.as_bytes())
                .map_err(|err| self.error(err))?
                .map(|value| value.value().to_vec());
            let Some(removed) = removed else {
                return Ok(false);
            };
            match self.parse(&encoded, &removed) {
                Some(removed) => {
                    expiry
                        .remove((removed.expires_at, encoded.as_bytes()))
                        .map_err(|err| self.error(err))?;
                    !removed.is_expired(now)
                }
                None => false,
            }
        };
        txn.commit().map_err(|err| self.error(err))?;
        if live {
            tracing::debug!(key = %encoded, "revocation removed");
            self.publish(Change::Delete(key));
        }
        Ok(live)
    }

    fn get(&self, encoded: &str, now: u64) -> Result<Option<Revocation>, StoreError> {
        let txn = self.db.begin_read().map_err(|err| self.error(err))?;
        let revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
        let value = revocations
            .get(encoded.as_bytes())
            .map_err(|err| self.error(err))?;
        Ok(value
            .and_then(|value| self.parse(encoded, value.value()))
            .filter(|revocation| !revocation.is_expired(now)))
    }

    fn list(&self, after: Option<&str>, limit: usize, now: u64) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let txn = self.db.begin_read().map_err(|err| self.error(err))?;
        let revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
        let start = match after {
            Some(after) => Bound::Excluded(after.as_bytes()),
            None => Bound::Unbounded,
        };
        let mut page = Vec::new();
        for entry in revocations
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(|err| self.error(err))?
        {
            let (key, value) = entry.map_err(|err| self.error(err))?;
            let Some(revocation) = self.parse_entry(key.value(), value.value()) else {
                continue;
            };
            if revocation.is_expired(now) {
                continue;
            }
            if page.len() == limit {
                let next = page.last().map(|last: &Revocation| last.key.encode());
                return Ok(Page {
                    revocations: page,
                    next,
                });
            }
            page.push(revocation);
        }
        Ok(Page {
            revocations: page,
            next: None,
        })
    }

    /// Reads every live revocation in one read transaction, sending them into `pages` as it
    /// goes (this runs on a blocking thread, which waits while the channel is full).
    fn snapshot(
        &self,
        now: u64,
        pages: &mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError> {
        // Writers commit and publish under the writer lock, so this read sees exactly the
        // changes up to `position`.
        let (position, txn) = {
            let _writer = self.lock_writer();
            let txn = self.db.begin_read().map_err(|err| self.error(err))?;
            (self.lock_feed().position(), txn)
        };
        let revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
        let mut page = Vec::with_capacity(SNAPSHOT_PAGE);
        for entry in revocations.iter().map_err(|err| self.error(err))? {
            let (key, value) = entry.map_err(|err| self.error(err))?;
            if let Some(revocation) = self.parse_entry(key.value(), value.value())
                && !revocation.is_expired(now)
            {
                page.push(revocation);
            }
            if page.len() == SNAPSHOT_PAGE {
                let full = std::mem::replace(&mut page, Vec::with_capacity(SNAPSHOT_PAGE));
                pages
                    .blocking_send(full)
                    .map_err(|_| StoreError::snapshot_abandoned())?;
            }
        }
        if !page.is_empty() {
            pages
                .blocking_send(page)
                .map_err(|_| StoreError::snapshot_abandoned())?;
        }
        Ok(position)
    }

    fn is_remembered(&self, mark: &str, now: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|err| self.error(err))?;
        let marks = txn.open_table(ONCE).map_err(|err| self.error(err))?;
        let expires_at = marks
            .get(mark.as_bytes())
            .map_err(|err| self.error(err))?
            .map(|value| value.value());
        Ok(expires_at.is_some_and(|expires_at| expires_at > now))
    }

    fn remember_once(&self, mark: &str, expires_at: u64, now: u64) -> Result<bool, StoreError> {
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|err| self.error(err))?;
        {
            let mut marks = txn.open_table(ONCE).map_err(|err| self.error(err))?;
            let mut index = txn.open_table(ONCE_EXPIRY).map_err(|err| self.error(err))?;
            let existing = marks
                .get(mark.as_bytes())
                .map_err(|err| self.error(err))?
                .map(|value| value.value());
            if let Some(existing) = existing {
                if existing > now {
                    return Ok(false);
                }
                index
                    .remove((existing, mark.as_bytes()))
                    .map_err(|err| self.error(err))?;
            }
            marks
                .insert(mark.as_bytes(), expires_at)
                .map_err(|err| self.error(err))?;
            index
                .insert((expires_at, mark.as_bytes()), ())
                .map_err(|err| self.error(err))?;
        }
        txn.commit().map_err(|err| self.error(err))?;
        Ok(true)
    }

    /// Deletes the `remember_once` marks expired at `now` within `txn`.
    fn purge_marks(&self, txn: &redb::WriteTransaction, now: u64) -> Result<(), StoreError> {
        let mut marks = txn.open_table(ONCE).map_err(|err| self.error(err))?;
        let mut index = txn.open_table(ONCE_EXPIRY).map_err(|err| self.error(err))?;
        let end = match now.checked_add(1) {
            Some(next) => Bound::Excluded((next, &[][..])),
            None => Bound::Unbounded,
        };
        let mut due = Vec::new();
        for entry in index
            .range::<(u64, &[u8])>((Bound::Unbounded, end))
            .map_err(|err| self.error(err))?
        {
            let (entry, _) = entry.map_err(|err| self.error(err))?;
            let (expires_at, mark) = entry.value();
            due.push((expires_at, mark.to_vec()));
        }
        for (expires_at, mark) in due {
            index
                .remove((expires_at, mark.as_slice()))
                .map_err(|err| self.error(err))?;
            let stored = marks
                .get(mark.as_slice())
                .map_err(|err| self.error(err))?
                .map(|value| value.value());
            if stored == Some(expires_at) {
                marks
                    .remove(mark.as_slice())
                    .map_err(|err| self.error(err))?;
            }
        }
        Ok(())
    }

    fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let _writer = self.lock_writer();
        let txn = self.db.begin_write().map_err(|err| self.error(err))?;
        self.purge_marks(&txn, now)?;
        let mut purged = 0;
        {
            let mut revocations = txn.open_table(REVOCATIONS).map_err(|err| self.error(err))?;
            let mut expiry = txn.open_table(EXPIRY).map_err(|err| self.error(err))?;
            // Every index entry with `expires_at <= now` sorts before `(now + 1, [])`.
            let end = match now.checked_add(1) {
                Some(next) => Bound::Excluded((next, &[][..])),
                None => Bound::Unbounded,
            };
            let mut due = Vec::new();
            for entry in expiry
                .range::<(u64, &[u8])>((Bound::Unbounded, end))
                .map_err(|err| self.error(err))?
            {
                let (index, _) = entry.map_err(|err| self.error(err))?;
                let (expires_at, key) = index.value();
                due.push((expires_at, key.to_vec()));
            }
            for (expires_at, key) in due {
                expiry
                    .remove((expires_at, key.as_slice()))
                    .map_err(|err| self.error(err))?;
                // The index may be stale for a key rewritten since: only delete what is due.
                let stored = revocations
                    .get(key.as_slice())
                    .map_err(|err| self.error(err))?
                    .map(|value| value.value().to_vec());
                let due = stored.is_some_and(|stored| {
                    self.parse_entry(&key, &stored)
                        .is_none_or(|revocation| revocation.is_expired(now))
                });
                if due {
                    revocations
                        .remove(key.as_slice())
                        .map_err(|err| self.error(err))?;
                    purged += 1;
                }
            }
        }
        txn.commit().map_err(|err| self.error(err))?;
        if purged > 0 {
            tracing::debug!(purged, now, "expired revocations purged");
        }
        Ok(purged)
    }

    /// Parses a stored entry, warning (and returning `None`) when it is unreadable.
    fn parse_entry(&self, key: &[u8], value: &[u8]) -> Option<Revocation> {
        match std::str::from_utf8(key) {
            Ok(key) => self.parse(key, value),
            Err(_) => {
                tracing::warn!(path = %self.path.display(), "skipping entry with a non-UTF-8 key");
                self.skipped_entries.inc();
                None
            }
        }
    }

    /// Parses a stored value, warning (and returning `None`) when it is unreadable.
    fn parse(&self, key: &str, value: &[u8]) -> Option<Revocation> {
        match serde_json::from_slice::<Revocation>(value) {
            Ok(revocation) if revocation.key.encode() == key => Some(revocation),
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), key, "skipping entry stored under another key");
                self.skipped_entries.inc();
                None
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), key, error = %err, "skipping unreadable entry");
                self.skipped_entries.inc();
                None
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}
