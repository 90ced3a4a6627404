//! The Redis store: revocations shared by every replica of a mesh, with a Redis Stream as the
//! change feed.
//!
//! All keys share the hash tag `{<prefix>}`, so they live in one slot (ready for Cluster):
//!
//! | key              | type   | content                                                  |
//! |------------------|--------|----------------------------------------------------------|
//! | `{p}:rev`        | HASH   | encoded key → JSON of the `Revocation`                   |
//! | `{p}:exp`        | ZSET   | encoded key, scored by `expires_at` (what to purge)      |
//! | `{p}:idx`        | ZSET   | encoded key, score 0 (key order for `list`)              |
//! | `{p}:feed`       | STREAM | `op=put rev=<JSON>` or `op=del key=<encoded key>`        |
//! | `{p}:epoch`      | STRING | random name of this data set, to notice a wiped Redis    |
//! | `{p}:once:<s>:<id>` | STRING | a [`Store::remember_once`] mark: its `expires_at`, with a Redis TTL |
//!
//! Writes are Lua scripts (module `scripts`) that change the data and append to the feed
//! atomically. A feed position is `<epoch>/<stream id>/<entries added up to it>`; a gap is
//! reported when the epoch changed (Redis was wiped), the stream is gone or behind the
//! position, or entries after the position were trimmed: the stream holds only its last
//! `length` of `entries-added` entries (`XINFO STREAM`, Redis 7.0 and later; its
//! `max-deleted-entry-id` is also checked, but 7.0 does not advance it on `XTRIM`).
//! A position's epoch also carries the master's replication id (`master_replid`): a failover
//! (Sentinel or Cluster) or a restart changes it, and so reports a gap, since a new master may
//! lack entries the old one had appended but not replicated.
//! Every call is bounded in time: a dead Redis gives [`StoreError::Unavailable`]. A command
//! that failed on a broken connection is retried once at once (the connection is remade).
//! With `min_replicas_acked`, every write is pipelined with `WAIT` on the same connection and
//! acknowledged only once that many replicas have it.
//!
//! How Redis is reached (one server, Sentinel, Cluster) is the business of module `link`.

mod feed;
mod link;
mod scripts;

pub use link::Topology;

use super::{MAX_CHANGES_PER_BATCH, MAX_WAIT, SNAPSHOT_PAGE, random_u64};
use crate::revocation::{
    Change, ChangeBatch, FeedPosition, Inserted, Page, Revocation, RevocationKey, Store, StoreError,
};
use async_trait::async_trait;
use feed::{FeedState, Position, StreamPos};
use link::{Conn, Link};
use prometheus_client::metrics::counter::Counter;
use redis::streams::{StreamId, StreamReadReply};
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind};
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many expired entries each write also purges.
const PURGE_PER_WRITE: usize = 100;
/// How many expired entries one purge step deletes.
const PURGE_PER_STEP: usize = 1000;
/// How many index keys one read of a listing asks for.
const SCAN_COUNT: usize = 1000;

/// Connection settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for a TCP (and TLS) connection to be established.
    pub connection_timeout: Duration,
    /// Longest wait for the answer to one command (a blocking feed read adds its own wait).
    pub response_timeout: Duration,
    /// Approximate number of entries the change feed keeps (`XADD MAXLEN ~`).
    pub feed_max_len: usize,
    /// Counts entries skipped because they are unreadable (a metric; see `crate::metrics`).
    pub skipped_entries: Counter,
    /// Replicas that must hold a write before it is acknowledged (`WAIT`); 0: none.
    pub min_replicas_acked: u32,
    /// How long a write waits for them.
    pub replication_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            feed_max_len: 100_000,
            skipped_entries: Counter::default(),
            min_replicas_acked: 0,
            replication_timeout: Duration::from_millis(500),
        }
    }
}

/// The names of the keys of one prefix.
#[derive(Debug)]
struct Keys {
    rev: String,
    exp: String,
    idx: String,
    feed: String,
    epoch: String,
    /// Prefix of the `remember_once` marks.
    once: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let key = |name: &str| format!("{{{prefix}}}:{name}");
        Self {
            rev: key("rev"),
            exp: key("exp"),
            idx: key("idx"),
            feed: key("feed"),
            epoch: key("epoch"),
            once: key("once"),
        }
    }
}

/// Revocations in Redis, with a Redis Stream as the change feed.
pub struct RedisStore {
    link: Link,
    /// The blocking feed read's own connection, made on first use and replaced after an
    /// error or timeout (a blocked read would otherwise hold it).
    feed_conn: tokio::sync::Mutex<Option<Conn>>,
    keys: Keys,
    options: RedisOptions,
    location: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("location", &self.location)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares a store on the one Redis at `url` (`redis://`, `rediss://`,
    /// `redis+unix://`), under keys `{key_prefix}:…`.
    ///
    /// Fails only on a bad URL or prefix: an unreachable Redis is logged and retried on use.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        Self::connect_to(
            &Topology::Standalone {
                url: url.to_owned(),
            },
            key_prefix,
            options,
        )
        .await
    }

    /// Prepares a store on Redis reached through `topology`, under keys `{key_prefix}:…`.
    ///
    /// Fails only on bad settings: an unreachable Redis is logged and retried on use.
    pub async fn connect_to(
        topology: &Topology,
        key_prefix: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        let location = topology.location();
        if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
            return Err(StoreError::Internal(format!(
                "invalid redis key prefix {key_prefix:?}: it must be non-empty, without braces"
            )));
        }
        let store = Self {
            link: Link::new(topology, &options)?,
            feed_conn: tokio::sync::Mutex::new(None),
            keys: Keys::new(key_prefix),
            options,
            location,
        };
        store.probe().await;
        Ok(store)
    }

    /// Logs whether Redis answers now, whether it is recent enough for the change feed, and
    /// whether its settings can lose acknowledged revocations (no AOF, an `allkeys-*`
    /// eviction policy).
    async fn probe(&self) {
        let info = self
            .call("INFO", |mut conn| async move {
                redis::cmd("INFO")
                    .arg("server")
                    .arg("persistence")
                    .arg("memory")
                    .query_async::<redis::Value>(&mut conn)
                    .await
            })
            .await
            .map(info_text);
        let info = match info {
            Ok(info) => info,
            Err(err) => {
                tracing::warn!(location = %self.location, error = %err,
                    "redis not reachable yet; calls will retry and fail with unavailable meanwhile");
                return;
            }
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let version = field("redis_version").unwrap_or("unknown").to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            tracing::error!(location = %self.location, %version,
                "redis 7.0 or later is required: the change feed cannot be followed on this version");
        } else {
            tracing::info!(location = %self.location, %version, "redis store connected");
        }
        for warning in durability_warnings(field("aof_enabled"), field("maxmemory_policy")) {
            tracing::warn!(location = %self.location, "{warning}");
        }
    }

    /// An invocation of a writing script with the keys every one of them takes, in order:
    /// the hash, the expiry index, the key index and the feed.
    fn writing<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.keys.rev)
            .key(&self.keys.exp)
            .key(&self.keys.idx)
            .key(&self.keys.feed);
        invocation
    }

    /// The longest one command may take, reconnection included.
    fn budget(&self) -> Duration {
        self.options.connection_timeout + self.options.response_timeout
    }

    /// Runs one Redis operation within the time budget, mapping its error.
    async fn call<T, F, Fut>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.call_within(op, self.budget(), work).await
    }

    /// Runs `work` on the command connection within `budget`, once more at once if the
    /// connection broke (a reconnected manager, or the master Sentinel names now, gets it),
    /// and maps its error.
    async fn call_within<T, F, Fut>(
        &self,
        op: &'static str,
        budget: Duration,
        mut work: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let attempt = async {
                let conn = self.link.command().await?;
                work(conn).await
            };
            let err = match tokio::time::timeout(budget, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err,
                Err(_) => {
                    self.link.failed(None);
                    return Err(StoreError::Unavailable(format!(
                        "redis {op}: no answer within {budget:?}"
                    )));
                }
            };
            self.link.failed(Some(&err));
            if !retried && is_broken_connection(&err) {
                retried = true;
                tracing::debug!(op, error = %err, "redis connection broke: retrying once");
                continue;
            }
            return Err(map_error(op, err));
        }
    }

    /// Runs a writing script and, with `min_replicas_acked`, `WAIT` in the same pipeline
    /// (`WAIT` counts the writes of its own connection). A new master that lacks the script
    /// (`NOSCRIPT`: scripts are not replicated) is given it and asked again.
    async fn write<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let acked = self.options.min_replicas_acked;
        let wait_ms = u64::try_from(self.options.replication_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation);
        if acked > 0 {
            pipe.cmd("WAIT").arg(acked).arg(wait_ms);
        }
        let pipe = &pipe;
        let budget = self.budget() + self.options.replication_timeout;
        let (value, replicas): (T, i64) = self
            .call_within(op, budget, |mut conn| async move {
                let reply = match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
                    Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        invocation.load_async(&mut conn).await?;
                        pipe.query_async::<Vec<redis::Value>>(&mut conn).await?
                    }
                    other => other?,
                };
                let mut reply = reply.into_iter();
                let value = T::from_redis_value(reply.next().unwrap_or(redis::Value::Nil))?;
                let replicas = match reply.next() {
                    Some(count) => i64::from_redis_value(count)?,
                    None => 0,
                };
                Ok((value, replicas))
            })
            .await?;
        if replicas < i64::from(acked) {
            tracing::warn!(op, replicas, wanted = acked, timeout = ?self.options.replication_timeout,
                "redis write not replicated in time");
            return Err(StoreError::Unavailable(NOT_REPLICATED.to_owned()));
        }
        Ok(value)
    }

    /// The feed's state, as seen by [`scripts::FEED_STATE`] or (`new_epoch`) [`scripts::FEED_HEAD`].
    async fn feed_state(&self, new_epoch: Option<String>) -> Result<FeedState, StoreError> {
        let new_epoch = &new_epoch;
        let (epoch, exists, last, deleted, added, length, replid): (
            String,
            i64,
            String,
            String,
            i64,
            i64,
            String,
        ) = self
            .call("feed state", |mut conn| async move {
                let mut invocation = match &new_epoch {
                    Some(epoch) => {
                        let mut invocation = scripts::FEED_HEAD.prepare_invoke();
                        invocation.arg(epoch);
                        invocation
                    }
                    None => scripts::FEED_STATE.prepare_invoke(),
                };
                invocation
                    .key(&self.keys.epoch)
                    .key(&self.keys.feed)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let id = |text: &str| {
            StreamPos::parse(text).ok_or_else(|| {
                StoreError::Internal(format!("redis returned a bad stream id {text:?}"))
            })
        };
        let (Ok(entries_added), Ok(length)) = (u64::try_from(added), u64::try_from(length)) else {
            return Err(StoreError::Internal(
                "redis does not report stream entries-added: version 7.0 or later is required"
                    .into(),
            ));
        };
        Ok(FeedState {
            // A failover or restart changes the master's replication id: a gap.
            epoch: format!("{epoch}.{replid}"),
            exists: exists == 1,
            last_generated: id(&last)?,
            max_deleted: id(&deleted)?,
            entries_added,
            length,
        })
    }

    /// Reads feed entries after `after`, blocking up to `wait` for the first one.
    async fn read_feed(
        &self,
        after: StreamPos,
        wait: Duration,
    ) -> Result<Vec<StreamId>, StoreError> {
        let budget = self.budget() + wait;
        let mut guard = tokio::time::timeout(budget, self.feed_conn.lock())
            .await
            .map_err(|_| StoreError::Unavailable("redis feed read is busy".into()))?;
        let deadline = tokio::time::Instant::now() + budget;
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => {
                let conn = tokio::time::timeout_at(deadline, self.link.feed())
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable(format!(
                            "redis XREAD: no connection within {budget:?}"
                        ))
                    })?
                    .map_err(|err| map_error("XREAD", err))?;
                guard.insert(conn)
            }
        };
        let mut cmd = redis::cmd("XREAD");
        if !wait.is_zero() {
            // `BLOCK 0` would block forever.
            cmd.arg("BLOCK")
                .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd.arg("COUNT")
            .arg(MAX_CHANGES_PER_BATCH)
            .arg("STREAMS")
            .arg(&self.keys.feed)
            .arg(after.to_string());
        let read = async {
            loop {
                match cmd.query_async::<Option<StreamReadReply>>(conn).await {
                    // A planned Cluster failover unblocks the read: ask the new owner.
                    Err(err) if err.code() == Some("UNBLOCKED") => {
                        tracing::debug!(error = %err, "redis feed read unblocked: re-issued");
                    }
                    other => return other,
                }
            }
        };
        let reply = within("XREAD", deadline - tokio::time::Instant::now(), read).await;
        if reply.is_err() {
            // The connection may still be blocked in Redis: start afresh next time.
            *guard = None;
        }
        Ok(reply?
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .collect())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn insert(&self, revocation: &Revocation, now: u64) -> Result<Inserted, StoreError> {
        let encoded = revocation.key.encode();
        let json = encode(revocation)?;
        // Record if absent; otherwise extend the live one with a compare-and-set, retried if
        // another writer changed it in between.
        for _ in 0..MAX_EXTEND_ATTEMPTS {
            let mut insert = self.writing(&scripts::INSERT);
            insert
                .arg(&encoded)
                .arg(&json)
                .arg(revocation.expires_at)
                .arg(now)
                .arg(self.options.feed_max_len)
                .arg(PURGE_PER_WRITE);
            let (recorded, existing): (i64, Vec<u8>) = self.write("insert", &insert).await?;
            if recorded == 1 {
                tracing::debug!(key = %encoded, expires_at = revocation.expires_at, "revocation stored");
                return Ok(Inserted::New);
            }
            let current = self.parse(&encoded, &existing).ok_or_else(|| {
                StoreError::Internal(format!("the stored revocation {encoded:?} is unreadable"))
            })?;
            let Some(extended) = current.extended_by(revocation) else {
                return Ok(Inserted::Existing(current));
            };
            let extended_json = encode(&extended)?;
            let mut replace = self.writing(&scripts::REPLACE);
            replace
                .arg(&encoded)
                .arg(&existing)
                .arg(&extended_json)
                .arg(extended.expires_at)
                .arg(now)
                .arg(self.options.feed_max_len)
                .arg(PURGE_PER_WRITE);
            let (replaced, _live): (i64, Vec<u8>) = self.write("insert", &replace).await?;
            if replaced == 1 {
                tracing::debug!(key = %encoded, expires_at = extended.expires_at, "revocation extended");
                return Ok(Inserted::Extended(extended));
            }
        }
        Err(StoreError::Internal(format!(
            "the revocation {encoded:?} kept changing under concurrent writers"
        )))
    }

    async fn remove(&self, key: &RevocationKey, now: u64) -> Result<bool, StoreError> {
        let encoded = key.encode();
        let mut remove = self.writing(&scripts::REMOVE);
        remove
            .arg(&encoded)
            .arg(now)
            .arg(self.options.feed_max_len)
            .arg(PURGE_PER_WRITE);
        let removed: i64 = self.write("remove", &remove).await?;
        if removed == 1 {
            tracing::debug!(key = %encoded, "revocation removed");
        }
        Ok(removed == 1)
    }

    async fn get(&self, key: &RevocationKey, now: u64) -> Result<Option<Revocation>, StoreError> {
        let encoded = key.encode();
        let encoded = &encoded;
        let value: Option<Vec<u8>> = self
            .call("HGET", |mut conn| async move {
                redis::cmd("HGET")
                    .arg(&self.keys.rev)
                    .arg(encoded)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(value
            .and_then(|value| self.parse(encoded, &value))
            .filter(|revocation| !revocation.is_expired(now)))
    }

    async fn list(&self, after: Option<&str>, limit: usize, now: u64) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let mut start = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut page: Vec<Revocation> = Vec::new();
        loop {
            // One more than the page, to know whether another page follows.
            let count = (limit - page.len()).saturating_add(1).clamp(64, SCAN_COUNT);
            let from = &start;
            let keys: Vec<String> = self
                .call("ZRANGE", |mut conn| async move {
                    redis::cmd("ZRANGE")
                        .arg(&self.keys.idx)
                        .arg(from)
                        .arg("+")
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(count)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            let Some(last) = keys.last() else { break };
            start = format!("({last}");
            let fields = &keys;
            let values: Vec<Option<Vec<u8>>> = self
                .call("HMGET", |mut conn| async move {
                    redis::cmd("HMGET")
                        .arg(&self.keys.rev)
                        .arg(fields)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for (key, value) in keys.iter().zip(values) {
                let Some(revocation) = value.and_then(|value| self.parse(key, &value)) else {
                    continue;
                };
                if revocation.is_expired(now) {
                    continue;
                }
                if page.len() == limit {
                    let next = page.last().map(|last| last.key.encode());
                    return Ok(Page {
                        revocations: page,
                        next,
                    });
                }
                page.push(revocation);
            }
            if keys.len() < count {
                break;
            }
        }
        Ok(Page {
            revocations: page,
            next: None,
        })
    }

    async fn snapshot(
        &self,
        now: u64,
        pages: mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError> {
        // The position first: changes made while scanning are replayed after it.
        let head = self
            .feed_state(Some(format!("{:016x}", random_u64())))
            .await?;
        let position = Position {
            epoch: head.epoch,
            id: head.last_generated,
            count: head.entries_added,
        }
        .to_feed();
        // One `HSCAN` page at a time, handed over before the next is read. `HSCAN` may
        // return a field twice, which the receiver applies idempotently.
        let mut cursor = "0".to_owned();
        loop {
            let at = &cursor;
            let (next, fields): (String, Vec<Vec<u8>>) = self
                .call("HSCAN", |mut conn| async move {
                    redis::cmd("HSCAN")
                        .arg(&self.keys.rev)
                        .arg(at)
                        .arg("COUNT")
                        .arg(SNAPSHOT_PAGE)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            let mut page = Vec::with_capacity(fields.len() / 2);
            for pair in fields.chunks_exact(2) {
                let Ok(key) = std::str::from_utf8(&pair[0]) else {
                    tracing::warn!(location = %self.location, "skipping entry with a non-UTF-8 key");
                    self.options.skipped_entries.inc();
                    continue;
                };
                if let Some(revocation) = self.parse(key, &pair[1])
                    && !revocation.is_expired(now)
                {
                    page.push(revocation);
                }
            }
            drop(fields); // Not held while waiting for the receiver.
            if !page.is_empty() {
                pages
                    .send(page)
                    .await
                    .map_err(|_| StoreError::snapshot_abandoned())?;
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(position)
    }

    async fn changes(
        &self,
        position: &FeedPosition,
        wait: Duration,
    ) -> Result<ChangeBatch, StoreError> {
        let Some(after) = Position::parse(position) else {
            return Ok(ChangeBatch::Gap);
        };
        // Checked before reading, so a wiped Redis is noticed without waiting.
        if self.feed_state(None).await?.is_gap(&after) {
            return Ok(ChangeBatch::Gap);
        }
        let entries = self.read_feed(after.id, wait.min(MAX_WAIT)).await?;
        let Some(last) = entries.last() else {
            return Ok(ChangeBatch::Changes(Vec::new(), position.clone()));
        };
        let last = StreamPos::parse(&last.id).ok_or_else(|| {
            StoreError::Internal(format!("redis returned a bad stream id {:?}", last.id))
        })?;
        // Checked again, in case entries after `after` were trimmed before the read: if
        // none were, the entries read are the next ones, without holes.
        if self.feed_state(None).await?.is_gap(&after) {
            return Ok(ChangeBatch::Gap);
        }
        let changes = entries
            .iter()
            .filter_map(|entry| self.parse_change(entry))
            .collect();
        let next = Position {
            id: last,
            count: after.count + entries.len() as u64,
            epoch: after.epoch,
        };
        Ok(ChangeBatch::Changes(changes, next.to_feed()))
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let step: usize = self
                .call("purge", |mut conn| async move {
                    scripts::PURGE
                        .key(&self.keys.rev)
                        .key(&self.keys.exp)
                        .key(&self.keys.idx)
                        .arg(now)
                        .arg(PURGE_PER_STEP)
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            purged += step;
            if step < PURGE_PER_STEP {
                break;
            }
        }
        if purged > 0 {
            tracing::debug!(purged, now, "expired revocations purged");
        }
        Ok(purged)
    }

    async fn remember_once(
        &self,
        scope: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let key = format!("{}:{scope}:{id}", self.keys.once);
        let mut remember = scripts::REMEMBER_ONCE.key(&key);
        remember.arg(expires_at).arg(now);
        let recorded: i64 = self.write("remember once", &remember).await?;
        Ok(recorded == 1)
    }

    async fn is_remembered(&self, scope: &str, id: &str, now: u64) -> Result<bool, StoreError> {
        let key = format!("{}:{scope}:{id}", self.keys.once);
        let key = &key;
        let value: Option<String> = self
            .call("is remembered", |mut conn| async move {
                redis::cmd("GET").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(value
            .and_then(|value| value.parse::<u64>().ok())
            .is_some_and(|expires_at| expires_at > now))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

impl RedisStore {
    /// Turns a feed entry into a change, warning (and returning `None`) when unreadable.
    fn parse_change(&self, entry: &StreamId) -> Option<Change> {
        let change = match entry.get::<String>("op").as_deref() {
            Some("put") => entry
                .get::<Vec<u8>>("rev")
                .and_then(|json| serde_json::from_slice(&json).ok())
                .map(Change::Put),
            Some("del") => entry
                .get::<String>("key")
                .and_then(|key| RevocationKey::decode(&key))
                .map(Change::Delete),
            _ => None,
        };
        if change.is_none() {
            tracing::warn!(location = %self.location, id = %entry.id, "skipping unreadable feed entry");
            self.options.skipped_entries.inc();
        }
        change
    }
}

/// What in Redis's settings can lose acknowledged revocations, given its `aof_enabled` and
/// `maxmemory_policy` (from `INFO`).
fn durability_warnings(aof_enabled: Option<&str>, eviction: Option<&str>) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if aof_enabled == Some("0") {
        warnings.push(
            "redis runs without the append-only file: revocations written since its last \
             snapshot are lost if it restarts (set appendonly yes, appendfsync everysec or always)",
        );
    }
    if eviction.is_some_and(|policy| policy.starts_with("allkeys")) {
        warnings.push(
            "redis may evict any key under memory pressure, revocations included \
             (use maxmemory-policy noeviction or volatile-*)",
        );
    }
    warnings
}

/// How often `insert` retries extending a revocation that another writer changed meanwhile.
const MAX_EXTEND_ATTEMPTS: usize = 5;

fn encode(revocation: &Revocation) -> Result<String, StoreError> {
    serde_json::to_string(revocation)
        .map_err(|err| StoreError::Internal(format!("cannot encode revocation: {err}")))
}

impl RedisStore {
    /// Parses a stored value, warning and counting (and returning `None`) when it is
    /// unreadable.
    fn parse(&self, key: &str, value: &[u8]) -> Option<Revocation> {
        let parsed = match serde_json::from_slice::<Revocation>(value) {
            Ok(revocation) if revocation.key.encode() == key => return Some(revocation),
            Ok(_) => {
                tracing::warn!(key, "skipping redis entry stored under another key");
                None
            }
            Err(err) => {
                tracing::warn!(key, error = %err, "skipping unreadable redis entry");
                None
            }
        };
        self.options.skipped_entries.inc();
        parsed
    }
}

/// Runs `work` within `budget`, mapping its error.
async fn within<T>(
    op: &'static str,
    budget: Duration,
    work: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(budget, work).await {
        Ok(result) => result.map_err(|err| map_error(op, err)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "redis {op}: no answer within {budget:?}"
        ))),
    }
}

/// Sorts a Redis error into "retry later" (unreachable, loading, failing over, busy) or not.
fn map_error(op: &'static str, err: RedisError) -> StoreError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
        )
        || matches!(
            err.code(),
            Some("BUSY" | "OOM" | "NOREPLICAS" | "UNBLOCKED")
        );
    if transient {
        StoreError::Unavailable(format!("redis {op}: {err}"))
    } else {
        StoreError::Internal(format!("redis {op}: {err}"))
    }
}

/// The text of an `INFO` answer: one node's, or (Cluster, which asks every node) the first
/// node's.
fn info_text(value: redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::SimpleString(text) => text,
        redis::Value::Map(nodes) => nodes
            .into_iter()
            .next()
            .map(|(_, value)| info_text(value))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Whether `err` says the connection broke (so a retry at once, on a remade connection, may
/// succeed) rather than that Redis answered.
fn is_broken_connection(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

pub use crate::revocation::NOT_REPLICATED;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_can_lose_revocations_are_named() {
        assert!(durability_warnings(Some("1"), Some("noeviction")).is_empty());
        assert!(durability_warnings(Some("1"), Some("volatile-lru")).is_empty());
        assert_eq!(durability_warnings(Some("0"), None).len(), 1);
        assert_eq!(durability_warnings(Some("1"), Some("allkeys-lru")).len(), 1);
        assert_eq!(durability_warnings(Some("0"), Some("allkeys-lfu")).len(), 2);
    }
}
