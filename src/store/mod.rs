//! The implementations of [`crate::revocation::Store`]: Redis and the embedded file store.
//!
//! Both follow the same rules, checked by one behaviour suite (`tests/store_suite.rs`):
//! expired revocations are never returned, and purging them does not add to the change
//! feed (every replica expires entries on its own from `expires_at`).

pub mod embedded;
pub mod redis;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use redis::{RedisOptions, RedisStore};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Most revocations in one page of a snapshot (the Redis store's pages hold as many as one
/// `HSCAN` returns, about this many).
const SNAPSHOT_PAGE: usize = 1000;
/// Most changes returned by one call to `changes`.
const MAX_CHANGES_PER_BATCH: usize = 1000;
/// Longest wait of one call to `changes`; a longer one returns an empty batch earlier.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// A random 64-bit value, used to tell apart feed incarnations (no cryptographic use).
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}
