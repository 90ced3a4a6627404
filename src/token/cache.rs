//! The verified-token cache: token string → verified claims, bounded in entries, each entry
//! ending when its token expires, so a cache hit skips the signature check.
//!
//! The cache is `quick_cache` (sharded, S3-FIFO eviction): a read takes one shard's read
//! lock and bumps one counter. (`moka`, tried first, records every read in a shared queue
//! and replays it in housekeeping: ~1.5 µs of each cached Check under load, a tenth of the
//! whole gRPC hop.) An entry is never served past its token's `exp` plus the leeway: a read
//! that finds it expired removes it; one never read again is evicted in time by newer
//! entries, within the same bound on entries.
//!
//! Entries are keyed by a 128-bit fingerprint of the token (xxh3, seeded at random per
//! process), not by the token itself: a token is ~800 bytes, and the cache hashes its key
//! on every read and again in its housekeeping. The entry keeps the token, and a hit counts
//! only if it is byte for byte the presented one, so a fingerprint collision is a miss,
//! never another token's claims.

use super::VerifiedToken;
use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

/// The most entries room is made for up front; beyond that the cache grows as it fills.
const INITIAL_ENTRIES: u64 = 16_384;

struct Entry {
    /// The token string, compared on every hit.
    raw: Box<str>,
    token: Arc<VerifiedToken>,
    /// The verifier's key generation when the token was verified.
    generation: u64,
}

/// A bounded cache of verified tokens, keyed by a fingerprint of the token string. Only
/// verified tokens go in; an entry is never served after its token's `exp` (plus the leeway).
pub struct VerifiedCache {
    /// `None` when disabled (capacity 0).
    cache: Option<Cache<u128, Arc<Entry>, UnitWeighter>>,
    leeway: u64,
    /// The fingerprints' seed.
    seed: u64,
}

impl VerifiedCache {
    /// A cache of at most `max_entries` tokens (0 disables it) that honours `exp` with the
    /// same `leeway` as the verifier.
    pub fn new(max_entries: u64, leeway: Duration) -> Self {
        let cache = (max_entries > 0).then(|| {
            let initial = usize::try_from(max_entries.min(INITIAL_ENTRIES)).unwrap_or(1);
            Cache::with_weighter(initial, max_entries, UnitWeighter)
        });
        Self {
            cache,
            leeway: leeway.as_secs(),
            seed: std::hash::RandomState::new().hash_one(0u64),
        }
    }

    fn fingerprint(&self, token: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128_with_seed(token.as_bytes(), self.seed)
    }

    /// The cached verification of `token`, if any, still unexpired at `now` (seconds since
    /// the Unix epoch) and made under the verifier's current key `generation` (a changed key
    /// set may have withdrawn the key it rested on).
    pub fn get(&self, token: &str, now: u64, generation: u64) -> Option<Arc<VerifiedToken>> {
        let cache = self.cache.as_ref()?;
        let key = self.fingerprint(token);
        let entry = cache.get(&key)?;
        if *entry.raw != *token {
            return None;
        }
        if self.expires_at(&entry.token) <= now || entry.generation != generation {
            // Only this entry: another Check may have put a fresh one there meanwhile.
            cache.remove_if(&key, |current| Arc::ptr_eq(current, &entry));
            return None;
        }
        Some(Arc::clone(&entry.token))
    }

    /// Remembers that `token` verified as `verified` at `now` under key `generation`; does
    /// nothing for a token that is already expired.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, now: u64, generation: u64) {
        let Some(cache) = &self.cache else {
            return;
        };
        if self.expires_at(&verified) <= now {
            return;
        }
        let entry = Entry {
            raw: token.into(),
            token: verified,
            generation,
        };
        cache.insert(self.fingerprint(token), Arc::new(entry));
    }

    fn expires_at(&self, token: &VerifiedToken) -> u64 {
        token.claims.exp.saturating_add(self.leeway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Claims;
    use serde_json::json;

    fn verified(exp: u64) -> Arc<VerifiedToken> {
        let serde_json::Value::Object(all) = json!({"iss": "i", "aud": "a", "exp": exp}) else {
            panic!("object");
        };
        let claims = Claims::from_map(all).expect("claims");
        Arc::new(VerifiedToken::new(claims, b"payload"))
    }

    #[test]
    fn serves_an_entry_until_exp_plus_leeway() {
        let cache = VerifiedCache::new(10, Duration::from_secs(30));
        cache.insert("t", verified(1000), 900, 0);
        assert!(cache.get("t", 900, 0).is_some());
        assert!(cache.get("t", 1029, 0).is_some());
        assert!(cache.get("t", 1030, 0).is_none());
        // The stale entry was dropped: even an earlier clock no longer finds it.
        assert!(cache.get("t", 900, 0).is_none());
        assert!(cache.get("other", 900, 0).is_none());
    }

    #[test]
    fn a_changed_key_generation_is_a_miss() {
        let cache = VerifiedCache::new(10, Duration::ZERO);
        cache.insert("t", verified(1000), 900, 3);
        assert!(cache.get("t", 900, 3).is_some());
        assert!(cache.get("t", 900, 4).is_none());
        assert!(
            cache.get("t", 900, 3).is_none(),
            "the stale entry was dropped"
        );
    }

    #[test]
    fn expired_tokens_are_not_inserted() {
        let cache = VerifiedCache::new(10, Duration::ZERO);
        cache.insert("t", verified(1000), 1000, 0);
        assert!(cache.get("t", 999, 0).is_none());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = VerifiedCache::new(0, Duration::ZERO);
        cache.insert("t", verified(1000), 900, 0);
        assert!(cache.get("t", 900, 0).is_none());
    }

    #[test]
    fn an_entry_under_the_same_fingerprint_for_another_token_is_a_miss() {
        let cache = VerifiedCache::new(10, Duration::ZERO);
        let Some(inner) = &cache.cache else {
            panic!("enabled");
        };
        // As if "other" and "t" had the same fingerprint.
        let entry = Entry {
            raw: "other".into(),
            token: verified(1000),
            generation: 0,
        };
        inner.insert(cache.fingerprint("t"), Arc::new(entry));
        assert!(cache.get("t", 900, 0).is_none());
        cache.insert("t", verified(1000), 900, 0);
        assert!(cache.get("t", 900, 0).is_some());
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = VerifiedCache::new(5, Duration::ZERO);
        for i in 0..100 {
            cache.insert(&format!("t{i}"), verified(1000), 900, 0);
        }
        let Some(inner) = &cache.cache else {
            panic!("enabled");
        };
        assert!(inner.len() <= 5, "{}", inner.len());
    }
}
