//! The replica: this server's in-memory copy of the revocation set, kept current by following
//! the store's change feed (snapshot, then tail; any error or gap means a fresh snapshot).
//! Check consults it with no network call; it knows how stale it is and applies the
//! configured policy once it is too stale.

use super::set::{RevocationSet, TokenIdentity};
use super::store::{ChangeBatch, Store};
use super::{Change, RevocationKind};
use crate::clock::unix_now;
use crate::config::{ReplicaConfig, StalePolicy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
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
    pub by_kind: [usize; 4],
}

const NEVER: u64 = u64::MAX;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STORE_PURGE_EVERY: Duration = Duration::from_secs(60);

/// The in-memory revocation set and its sync state.
#[derive(Debug)]
pub struct Replica {
    set: RwLock<RevocationSet>,
    config: ReplicaConfig,
    epoch: Instant,
    last_heard_ms: AtomicU64,
}

impl Replica {
    /// An empty replica that has not synced yet.
    pub fn new(config: ReplicaConfig) -> Self {
        Self {
            set: RwLock::new(RevocationSet::new()),
            config,
            epoch: Instant::now(),
            last_heard_ms: AtomicU64::new(NEVER),
        }
    }

    /// Whether a revocation covers the token, under the staleness policy.
    pub fn lookup(&self, token: &TokenIdentity<'_>, now: u64) -> Lookup {
        if !self.health().serving() {
            return Lookup::Unavailable;
        }
        let set = self
            .set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match set.covering(token, now) {
            Some(kind) => Lookup::Revoked(kind),
            None => Lookup::Clear,
        }
    }

    /// Applies a change this server just made durable, so it takes effect here at once
    /// (the feed will deliver it again; applying is idempotent).
    pub fn apply_local(&self, change: &Change) {
        self.write_set().apply(change);
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
        let set = self
            .set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
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

    fn write_set(&self) -> std::sync::RwLockWriteGuard<'_, RevocationSet> {
        self.set
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut last_store_purge = Instant::now();
        loop {
            let snapshot = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                snapshot = store.snapshot(unix_now()) => snapshot,
            };
            let snapshot_taken = Instant::now();
            let mut position = match snapshot {
                Ok(snapshot) => {
                    let set = RevocationSet::from_revocations(snapshot.revocations, unix_now());
                    tracing::info!(revocations = set.len(), "replica loaded a snapshot");
                    *self.write_set() = set;
                    self.heard();
                    backoff = Duration::from_millis(100);
                    snapshot.position
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
                if snapshot_taken.elapsed() >= self.config.resync_interval {
                    tracing::debug!("replica reloads its periodic snapshot");
                    break;
                }
                let purged = self.write_set().purge_expired(unix_now());
                if purged > 0 {
                    tracing::debug!(purged, "replica dropped expired revocations");
                }
                if last_store_purge.elapsed() >= STORE_PURGE_EVERY {
                    last_store_purge = Instant::now();
                    if let Err(error) = store.purge_expired(unix_now()).await {
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

/// Sleeps for `duration`; returns true if shutdown was requested meanwhile.
async fn sleep_or_stop(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => true,
        () = tokio::time::sleep(duration) => false,
    }
}
