//! The `Store` trait that the revocation model needs from durable storage, and its error type.
//!
//! Implementations live in `crate::store`; this module owns the contract they meet.

use super::model::{Revocation, RevocationKey};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::mpsc;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something unexpected, or local storage failed.
    #[error("store error: {0}")]
    Internal(String),
}

/// The detail of the [`StoreError::Unavailable`] a write gets when fewer replicas than
/// required confirmed it in time (the write may still be there, whole; a retry is safe).
pub const NOT_REPLICATED: &str = "not replicated in time; retry";

impl StoreError {
    /// The receiver of a [`Store::snapshot`] went away before the last page was sent.
    pub(crate) fn snapshot_abandoned() -> Self {
        Self::Internal("the receiver of the snapshot went away".to_owned())
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What [`Store::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The revocation was newly recorded.
    New,
    /// A live revocation with that key already existed and covers at least as much; it is
    /// returned and was left unchanged.
    Existing(Revocation),
    /// A live revocation with that key existed and was extended (see
    /// [`Revocation::extended_by`]); the extended revocation is returned and was written to
    /// the feed.
    Extended(Revocation),
}

/// One change in the store's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A revocation was recorded.
    Put(Revocation),
    /// A revocation was removed.
    Delete(RevocationKey),
}

/// A position in the change feed, opaque outside the store that issued it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedPosition(pub String);

/// The answer to [`Store::changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeBatch {
    /// Changes after the given position (possibly none), in order, and the new position.
    Changes(Vec<Change>, FeedPosition),
    /// The feed no longer holds the given position (trimmed or reset): take a fresh snapshot.
    Gap,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// Live revocations in key order.
    pub revocations: Vec<Revocation>,
    /// The cursor for the next page, or `None` at the end.
    pub next: Option<String>,
}

/// Durable storage of revocations, with a change feed that replicas follow.
///
/// Every method that writes returns only once the write is durable in the store; on error
/// nothing was written, except that a network store cannot take back a write that it sent
/// before timing out (`Unavailable`): that write may still be applied, whole, later. Retrying
/// is safe: `insert` then answers `Existing`, `remove` answers `false`. Expired revocations
/// (`expires_at <= now`) are never returned and are removed by the store in time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records `revocation`, or extends a live one with the same key when the new one covers
    /// more ([`Revocation::extended_by`]), appending the change to the feed in the same atomic
    /// step.
    async fn insert(&self, revocation: &Revocation, now: u64) -> Result<Inserted, StoreError>;

    /// Removes the revocation with this key; `false` if there was none.
    async fn remove(&self, key: &RevocationKey, now: u64) -> Result<bool, StoreError>;

    /// The live revocation with this key, if any.
    async fn get(&self, key: &RevocationKey, now: u64) -> Result<Option<Revocation>, StoreError>;

    /// Live revocations in key order, starting after the cursor `after`, at most `limit`.
    async fn list(&self, after: Option<&str>, limit: usize, now: u64) -> Result<Page, StoreError>;

    /// Sends every live revocation into `pages`, a page (of about a thousand) at a time,
    /// waiting while the channel is full, so that a snapshot of any size holds only a few
    /// pages in memory; returns the feed position to tail from so that nothing is missed.
    ///
    /// The position is taken *before* the revocations are read, so replaying changes after
    /// it may repeat some already in the snapshot, and a revocation may also be sent twice;
    /// applying a change is idempotent. Fails if `pages` closes before the last page is sent.
    async fn snapshot(
        &self,
        now: u64,
        pages: mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError>;

    /// Changes after `position`, waiting up to `wait` for the first one to arrive.
    async fn changes(
        &self,
        position: &FeedPosition,
        wait: Duration,
    ) -> Result<ChangeBatch, StoreError>;

    /// Deletes expired revocations (and expired [`Store::remember_once`] marks) from storage;
    /// returns how many revocations.
    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError>;

    /// Records `id` under `scope` until `expires_at`, unless it is already recorded and live
    /// at `now`: `true` when newly recorded, `false` when seen before. Atomic: of concurrent
    /// calls with the same `scope` and `id`, across replicas, exactly one gets `true`. For
    /// replay protection (a back-channel logout token's `jti`); `scope` is a fixed name
    /// without `:`. The mark is not part of the change feed and expires by itself.
    async fn remember_once(
        &self,
        scope: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Whether `id` is recorded under `scope` (by [`Store::remember_once`]) and live at `now`.
    async fn is_remembered(&self, scope: &str, id: &str, now: u64) -> Result<bool, StoreError>;

    /// `"redis"` or `"embedded"`.
    fn kind(&self) -> &'static str;

    /// Where the data lives, with any password redacted.
    fn location(&self) -> String;
}
