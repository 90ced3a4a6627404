//! Store metrics: [`MeteredStore`] wraps any [`Store`] and counts its errors in
//! `jwt_revoker_store_errors_total{operation, kind}` (`kind` = `transient` or `internal`);
//! [`skipped_entries`] is the counter the store implementations bump for each corrupt
//! entry they skip (`jwt_revoker_store_entries_skipped_total`).

use crate::revocation::{
    ChangeBatch, FeedPosition, Inserted, Page, Revocation, RevocationKey, Store, StoreError,
};
use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    operation: &'static str,
    kind: &'static str,
}

/// Creates and registers the counter of corrupt store entries skipped; pass it to the
/// store's options.
pub fn skipped_entries(registry: &mut Registry) -> Counter {
    let counter = Counter::default();
    registry.register(
        "jwt_revoker_store_entries_skipped",
        "Store entries skipped because they could not be read (corrupt or foreign data)",
        counter.clone(),
    );
    counter
}

/// A [`Store`] that counts the errors of the store it wraps.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    errors: Family<ErrorLabels, Counter>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("kind", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Wraps `inner`, registering the error counter into `registry`.
    pub fn new(inner: Arc<dyn Store>, registry: &mut Registry) -> Self {
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "jwt_revoker_store_errors",
            "Failed store operations by operation and kind (transient: unreachable or timed \
             out; internal: unexpected answer or local storage failure)",
            errors.clone(),
        );
        Self { inner, errors }
    }

    fn count<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Err(error) = &result {
            let kind = if error.is_transient() {
                "transient"
            } else {
                "internal"
            };
            self.errors
                .get_or_create(&ErrorLabels { operation, kind })
                .inc();
        }
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn insert(&self, revocation: &Revocation, now: u64) -> Result<Inserted, StoreError> {
        self.count("insert", self.inner.insert(revocation, now).await)
    }

    async fn remove(&self, key: &RevocationKey, now: u64) -> Result<bool, StoreError> {
        self.count("remove", self.inner.remove(key, now).await)
    }

    async fn get(&self, key: &RevocationKey, now: u64) -> Result<Option<Revocation>, StoreError> {
        self.count("get", self.inner.get(key, now).await)
    }

    async fn list(&self, after: Option<&str>, limit: usize, now: u64) -> Result<Page, StoreError> {
        self.count("list", self.inner.list(after, limit, now).await)
    }

    async fn snapshot(
        &self,
        now: u64,
        pages: mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError> {
        self.count("snapshot", self.inner.snapshot(now, pages).await)
    }

    async fn changes(
        &self,
        position: &FeedPosition,
        wait: Duration,
    ) -> Result<ChangeBatch, StoreError> {
        self.count("changes", self.inner.changes(position, wait).await)
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.count("purge_expired", self.inner.purge_expired(now).await)
    }

    async fn remember_once(
        &self,
        scope: &str,
        id: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.count(
            "remember_once",
            self.inner.remember_once(scope, id, expires_at, now).await,
        )
    }

    async fn is_remembered(&self, scope: &str, id: &str, now: u64) -> Result<bool, StoreError> {
        self.count(
            "is_remembered",
            self.inner.is_remembered(scope, id, now).await,
        )
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}
