//! The verified-token cache: token string → verified claims, bounded in bytes and in entries,
//! each entry ending when its token expires, so a cache hit skips the signature check.
//!
//! Each entry is weighed at insertion by what it holds on the heap: the token string, the
//! verified claims (every claim as parsed, and the copies of the ones Check reads), the
//! token's identifier, the encoded allow response kept in its memo (built before the entry
//! goes in, see [`Decider`](crate::authz::Decider)), and a fixed overhead for the entry's own
//! structures. The cache keeps the sum under `cache.max_bytes`; every entry weighs at least
//! `max_bytes / max_entries`, so the same sum also keeps it under `cache.max_entries`.
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
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde_json::Value;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

/// The most entries room is made for up front; beyond that the cache grows as it fills.
const INITIAL_ENTRIES: u64 = 16_384;
/// A typical entry's weight (an ~800-byte token), to size the cache's tables up front.
const TYPICAL_ENTRY_BYTES: u64 = 4096;
/// The heap an entry takes besides its strings: the entry and the token behind their `Arc`s,
/// the claims' fixed part, the memo, and the cache's own slot and table bookkeeping.
const ENTRY_OVERHEAD_BYTES: u64 = 512;
/// The heap a JSON object member or array element takes besides its own text: its node or
/// slot share of the map or vector, and the allocator's rounding.
const JSON_ITEM_OVERHEAD_BYTES: u64 = 64;
/// The default `cache.max_bytes`: see README, *Memory*.
pub const DEFAULT_MAX_BYTES: u64 = 48 * 1024 * 1024;

struct Entry {
    /// The token string, compared on every hit.
    raw: Box<str>,
    token: Arc<VerifiedToken>,
    /// The verifier's key generation when the token was verified.
    generation: u64,
    /// What the entry counts against the cache's byte budget, fixed at insertion.
    weight: u64,
}

/// Weighs an entry by its precomputed `weight`.
#[derive(Clone, Copy, Debug)]
struct ByWeight;

impl Weighter<u128, Arc<Entry>> for ByWeight {
    fn weight(&self, _: &u128, entry: &Arc<Entry>) -> u64 {
        entry.weight
    }
}

/// The heap bytes `token` (as `raw`, with `verified`) holds once cached: see the module docs.
pub fn entry_bytes(raw: &str, verified: &VerifiedToken) -> u64 {
    let claims = &verified.claims;
    let text = |value: &Option<String>| value.as_ref().map_or(0, |s| s.len() as u64);
    let copies = claims.iss.len() as u64
        + claims
            .aud
            .iter()
            .map(|aud| aud.len() as u64 + 24)
            .sum::<u64>()
        + text(&claims.sub)
        + text(&claims.jti)
        + text(&claims.sid)
        + text(&claims.client_id);
    let all: u64 = claims
        .all
        .iter()
        .map(|(name, value)| name.len() as u64 + JSON_ITEM_OVERHEAD_BYTES + json_bytes(value))
        .sum();
    let response = verified
        .memo
        .allow_response
        .get()
        .map_or(0, |(_, encoded)| encoded.len() as u64);
    ENTRY_OVERHEAD_BYTES
        + raw.len() as u64
        + verified.token_id.len() as u64
        + verified
            .revocable_claims
            .iter()
            .map(|id| id.len() as u64 + 24)
            .sum::<u64>()
        + copies
        + all
        + response
}

/// The heap a parsed JSON value holds beyond its own slot. Parsed claims nest at most 128
/// deep (serde_json's limit), so the recursion is bounded.
fn json_bytes(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => text.len() as u64,
        Value::Array(items) => items
            .iter()
            .map(|item| JSON_ITEM_OVERHEAD_BYTES + json_bytes(item))
            .sum(),
        Value::Object(members) => members
            .iter()
            .map(|(name, item)| name.len() as u64 + JSON_ITEM_OVERHEAD_BYTES + json_bytes(item))
            .sum(),
    }
}

/// A bounded cache of verified tokens, keyed by a fingerprint of the token string. Only
/// verified tokens go in; an entry is never served after its token's `exp` (plus the leeway).
pub struct VerifiedCache {
    /// `None` when disabled (no entries or no bytes allowed).
    cache: Option<Cache<u128, Arc<Entry>, ByWeight>>,
    /// The least an entry weighs: `max_bytes / max_entries`.
    min_weight: u64,
    leeway: u64,
    /// The fingerprints' seed.
    seed: u64,
}

impl VerifiedCache {
    /// A cache of at most `max_entries` tokens holding at most `max_bytes` (as
    /// [`entry_bytes`] counts them; either 0 disables it) that honours `exp` with the same
    /// `leeway` as the verifier.
    pub fn new(max_entries: u64, max_bytes: u64, leeway: Duration) -> Self {
        let min_weight = if max_entries == 0 {
            0
        } else {
            max_bytes.div_ceil(max_entries)
        };
        let cache = (max_entries > 0 && max_bytes > 0).then(|| {
            let expected = max_entries
                .min(max_bytes / TYPICAL_ENTRY_BYTES)
                .clamp(1, INITIAL_ENTRIES);
            let initial = usize::try_from(expected).unwrap_or(1);
            Cache::with_weighter(initial, max_bytes, ByWeight)
        });
        Self {
            cache,
            min_weight,
            leeway: leeway.as_secs(),
            seed: std::hash::RandomState::new().hash_one(0u64),
        }
    }

    /// The bytes its entries are counted for (see [`entry_bytes`]; at least
    /// `max_bytes / max_entries` each).
    pub fn accounted_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, Cache::weight)
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let weight = entry_bytes(token, &verified).max(self.min_weight);
        let entry = Entry {
            raw: token.into(),
            token: verified,
            generation,
            weight,
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
        let cache = VerifiedCache::new(10, 1 << 20, Duration::from_secs(30));
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
        let cache = VerifiedCache::new(10, 1 << 20, Duration::ZERO);
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
        let cache = VerifiedCache::new(10, 1 << 20, Duration::ZERO);
        cache.insert("t", verified(1000), 1000, 0);
        assert!(cache.get("t", 999, 0).is_none());
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let cache = VerifiedCache::new(0, 1 << 20, Duration::ZERO);
        cache.insert("t", verified(1000), 900, 0);
        assert!(cache.get("t", 900, 0).is_none());
    }

    #[test]
    fn an_entry_under_the_same_fingerprint_for_another_token_is_a_miss() {
        let cache = VerifiedCache::new(10, 1 << 20, Duration::ZERO);
        let Some(inner) = &cache.cache else {
            panic!("enabled");
        };
        // As if "other" and "t" had the same fingerprint.
        let entry = Entry {
            raw: "other".into(),
            token: verified(1000),
            generation: 0,
            weight: 1,
        };
        inner.insert(cache.fingerprint("t"), Arc::new(entry));
        assert!(cache.get("t", 900, 0).is_none());
        cache.insert("t", verified(1000), 900, 0);
        assert!(cache.get("t", 900, 0).is_some());
    }

    /// A verified token with `pad` bytes of extra claims and an allow response of
    /// `response` bytes in its memo.
    fn padded(id: usize, pad: usize, response: usize) -> Arc<VerifiedToken> {
        let serde_json::Value::Object(all) = json!({
            "iss": "https://issuer.test", "aud": ["api", "other"], "exp": 2000,
            "sub": format!("user-{id}"), "jti": format!("jti-{id}"),
            "roles": ["a", "b", "c"], "pad": "x".repeat(pad),
        }) else {
            panic!("object");
        };
        let claims = Claims::from_map(all).expect("claims");
        let token = VerifiedToken::new(claims, b"payload");
        let _ = token
            .memo
            .allow_response
            .set((1, bytes::Bytes::from(vec![0; response])));
        Arc::new(token)
    }

    #[test]
    fn an_entry_counts_the_token_the_claims_and_the_allow_response() {
        let small = padded(1, 0, 0);
        let raw = "t".repeat(800);
        let base = entry_bytes(&raw, &small);
        assert!(base >= ENTRY_OVERHEAD_BYTES + 800, "{base}");
        assert_eq!(entry_bytes(&"t".repeat(1800), &small), base + 1000);
        // Claims: their text and per-member overhead.
        let padded_claims = padded(1, 5000, 0);
        assert!(entry_bytes(&raw, &padded_claims) >= base + 5000);
        // The encoded allow response kept in the memo.
        let with_response = padded(1, 0, 3000);
        assert_eq!(entry_bytes(&raw, &with_response), base + 3000);
    }

    #[test]
    fn many_distinct_tokens_stay_within_the_byte_budget() {
        const BUDGET: u64 = 512 * 1024;
        let cache = VerifiedCache::new(100_000, BUDGET, Duration::ZERO);
        let mut inserted_bytes = 0;
        for i in 0..20_000 {
            // Tokens of 300 B to ~8 KiB, claims and responses of varying size.
            let raw = format!("{i:08}{}", "t".repeat(300 + (i * 37) % 7800));
            let token = padded(i, (i * 13) % 2000, 200 + (i * 7) % 3000);
            inserted_bytes += entry_bytes(&raw, &token);
            cache.insert(&raw, token, 900, 0);
            assert!(
                cache.accounted_bytes() <= BUDGET,
                "{} > {BUDGET} after {i} tokens",
                cache.accounted_bytes()
            );
        }
        assert!(
            inserted_bytes > 50 * BUDGET,
            "the test drove far more than the budget"
        );
        assert!(cache.accounted_bytes() > BUDGET / 2, "the cache is in use");
        assert!(cache.len() < 20_000);
    }

    #[test]
    fn the_entry_bound_holds_too() {
        let cache = VerifiedCache::new(50, 64 * 1024 * 1024, Duration::ZERO);
        for i in 0..1000 {
            cache.insert(&format!("t{i}"), padded(i, 0, 0), 900, 0);
        }
        assert!(cache.len() <= 50, "{}", cache.len());
        assert!(!cache.is_empty());
        // No bytes allowed: disabled.
        let none = VerifiedCache::new(50, 0, Duration::ZERO);
        none.insert("t", verified(1000), 900, 0);
        assert!(none.get("t", 900, 0).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = VerifiedCache::new(5, 1 << 20, Duration::ZERO);
        for i in 0..100 {
            cache.insert(&format!("t{i}"), verified(1000), 900, 0);
        }
        let Some(inner) = &cache.cache else {
            panic!("enabled");
        };
        assert!(inner.len() <= 5, "{}", inner.len());
    }
}
