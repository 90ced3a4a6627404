//! The in-memory revocation set that Check consults: every live revocation, indexed so that
//! one lookup per kind answers whether a token is covered, with no allocation and no
//! dependence on how many revocations there are.
//!
//! To keep a million revocations in a few tens of megabytes, the set does not hold the
//! issuers and identifiers themselves: each revocation is keyed by a 128-bit fingerprint of
//! its issuer and identifier, in one table per kind. The fingerprint is XXH3-128 of the
//! XXH3-128 digests of the issuer and of the identifier, every hash seeded at random once per
//! process: two fixed-size digests side by side, so no two distinct pairs share an encoding
//! (`"ab"`, `"c"` and `"a"`, `"bc"` differ), and a token's issuer is hashed once for all its
//! lookups: one per kind, plus one per revocable claim the token carries (none for an issuer
//! without `revocable_claims`, and none at all while no claim is revoked). A revoked key
//! always finds its own fingerprint. Two distinct keys with the same fingerprint would share
//! a slot: a token that is not revoked could look revoked, or a change to one key could
//! overwrite or remove the other's entry (until the next resync).
//! With the seed secret and `n` revocations of a kind, the chance is about `n / 2^128`, some
//! 3·10⁻³³ at a million.

use super::model::{Revocation, RevocationKey, RevocationKind};
use super::store::Change;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// What a token presents for the revocation lookup, borrowed from its verified claims.
#[derive(Debug, Clone, Copy)]
pub struct TokenIdentity<'a> {
    /// The token's `iss`.
    pub issuer: &'a str,
    /// Its `jti`, or `sha256:<hex>` of its decoded payload.
    pub token_id: &'a str,
    /// Its `sid`.
    pub session: Option<&'a str>,
    /// Its `sub`.
    pub subject: Option<&'a str>,
    /// Its `client_id` (or `azp`).
    pub client: Option<&'a str>,
    /// Its `iat`.
    pub issued_at: Option<u64>,
    /// The `NAME=VALUE` ids ([`claim_id`](super::model::claim_id)) of its issuer's revocable
    /// claims that it carries.
    pub claims: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    revoked_at: u64,
    expires_at: u64,
}

/// The fingerprints' seed, drawn once per process so that every set agrees on them.
static SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(0_u8));

/// The seeded XXH3-128 digest of an issuer or an identifier.
fn digest(text: &str) -> u128 {
    xxh3_128_with_seed(text.as_bytes(), *SEED)
}

/// The fingerprint of an identifier of the issuer whose [`digest`] is `issuer`.
fn fingerprint(issuer: u128, id: &str) -> u128 {
    let mut pair = [0_u8; 32];
    pair[..16].copy_from_slice(&issuer.to_le_bytes());
    pair[16..].copy_from_slice(&digest(id).to_le_bytes());
    xxh3_128_with_seed(&pair, *SEED)
}

fn key_fingerprint(key: &RevocationKey) -> u128 {
    fingerprint(digest(&key.issuer), &key.id)
}

/// The table's hash of a fingerprint, which is already uniform: its low 64 bits.
fn table_hash(fingerprint: u128) -> u64 {
    fingerprint as u64
}

/// The revocations of one kind: fingerprint and entry.
type Table = HashTable<(u128, Entry)>;

fn find(table: &Table, fingerprint: u128) -> Option<&Entry> {
    table
        .find(table_hash(fingerprint), |(key, _)| *key == fingerprint)
        .map(|(_, entry)| entry)
}

fn slot(kind: RevocationKind) -> usize {
    match kind {
        RevocationKind::Token => 0,
        RevocationKind::Session => 1,
        RevocationKind::Subject => 2,
        RevocationKind::Client => 3,
        RevocationKind::Claim => 4,
    }
}

/// How many kinds, and so tables, there are.
const KINDS: usize = RevocationKind::ALL.len();

/// What a scan for expired revocations found, to pass to
/// [`RevocationSet::remove_expired`].
#[derive(Debug)]
pub struct Expired {
    /// The fingerprints of the expired revocations, by kind.
    keys: [Vec<u128>; KINDS],
    /// When the earliest of the others expires (`u64::MAX` if none).
    pub next_expiry: u64,
}

/// The claim names of the claim revocations held, so that a reader that only looks some
/// claims up (the Envoy module) can tell when a revocation names another: a few names, and
/// one entry per claim revocation.
#[derive(Debug, Default)]
struct ClaimNames {
    /// Each name, with how many claim revocations in the set name it.
    names: Vec<(Box<str>, usize)>,
    /// Each claim revocation's fingerprint, with the index of its name.
    of: std::collections::HashMap<u128, usize>,
}

impl ClaimNames {
    fn added(&mut self, fingerprint: u128, key: &RevocationKey) {
        let Some((name, _)) = key.claim() else {
            return;
        };
        let index = match self.names.iter().position(|(n, _)| &**n == name) {
            Some(index) => index,
            None => {
                self.names.push((name.into(), 0));
                self.names.len() - 1
            }
        };
        if let Some(slot) = self.names.get_mut(index) {
            slot.1 += 1;
        }
        self.of.insert(fingerprint, index);
    }

    fn removed(&mut self, fingerprint: u128) {
        if let Some(index) = self.of.remove(&fingerprint)
            && let Some(slot) = self.names.get_mut(index)
        {
            slot.1 = slot.1.saturating_sub(1);
        }
    }
}

/// Every live revocation, by kind and fingerprint of issuer and identifier.
#[derive(Debug)]
pub struct RevocationSet {
    by_kind: [Table; KINDS],
    /// No revocation expires before this (Unix seconds), so purging earlier finds nothing.
    next_expiry: u64,
    /// The claim names of the claim revocations.
    claim_names: ClaimNames,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self {
            by_kind: Default::default(),
            next_expiry: u64::MAX,
            claim_names: ClaimNames::default(),
        }
    }
}

impl RevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `revocations`, less those expired at `now`.
    pub fn from_revocations(revocations: impl IntoIterator<Item = Revocation>, now: u64) -> Self {
        let mut set = Self::new();
        for revocation in revocations {
            if !revocation.is_expired(now) {
                set.insert(&revocation);
            }
        }
        set
    }

    /// How many revocations it holds.
    pub fn len(&self) -> usize {
        self.by_kind.iter().map(Table::len).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_kind.iter().all(Table::is_empty)
    }

    /// How many revocations of each kind it holds, in [`RevocationKind::ALL`] order.
    pub fn len_by_kind(&self) -> [usize; KINDS] {
        self.by_kind.each_ref().map(Table::len)
    }

    /// Applies one change from the feed (idempotent).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(revocation) => self.insert(revocation),
            Change::Delete(key) => self.remove(key),
        }
    }

    /// Adds or replaces a revocation.
    pub fn insert(&mut self, revocation: &Revocation) {
        let key = &revocation.key;
        let fingerprint = key_fingerprint(key);
        let entry = Entry {
            revoked_at: revocation.revoked_at,
            expires_at: revocation.expires_at,
        };
        let table = &mut self.by_kind[slot(key.kind)];
        match table.entry(
            table_hash(fingerprint),
            |(key, _)| *key == fingerprint,
            |(key, _)| table_hash(*key),
        ) {
            Slot::Occupied(mut occupied) => occupied.get_mut().1 = entry,
            Slot::Vacant(vacant) => {
                vacant.insert((fingerprint, entry));
                self.claim_names.added(fingerprint, key);
            }
        }
        self.next_expiry = self.next_expiry.min(entry.expires_at);
    }

    /// Removes a revocation if present.
    pub fn remove(&mut self, key: &RevocationKey) {
        let fingerprint = key_fingerprint(key);
        if let Ok(occupied) = self.by_kind[slot(key.kind)]
            .find_entry(table_hash(fingerprint), |(key, _)| *key == fingerprint)
        {
            occupied.remove();
            if key.kind == RevocationKind::Claim {
                self.claim_names.removed(fingerprint);
            }
        }
    }

    /// A claim name that some claim revocation in the set names and `known` does not accept,
    /// if any (its revocations would go unenforced by a reader that only reads the known
    /// claims).
    pub fn unknown_claim(&self, known: impl Fn(&str) -> bool) -> Option<&str> {
        self.claim_names
            .names
            .iter()
            .find(|(name, count)| *count > 0 && !known(name))
            .map(|(name, _)| &**name)
    }

    /// Whether a revocation may have expired at `now`: when not, [`expired`](Self::expired)
    /// would find nothing, and the scan can be skipped.
    pub fn may_have_expired(&self, now: u64) -> bool {
        self.next_expiry <= now
    }

    /// The revocations expired at `now`, found without changing the set, so that the scan
    /// (of every entry) can run under a shared lock while Check keeps reading.
    pub fn expired(&self, now: u64) -> Expired {
        let mut expired = Expired {
            keys: Default::default(),
            next_expiry: u64::MAX,
        };
        for (keys, table) in expired.keys.iter_mut().zip(&self.by_kind) {
            for (fingerprint, entry) in table {
                if entry.expires_at > now {
                    expired.next_expiry = expired.next_expiry.min(entry.expires_at);
                } else {
                    keys.push(*fingerprint);
                }
            }
        }
        expired
    }

    /// Removes the revocations [`expired`](Self::expired) found that are still expired at
    /// `now` (one put again since is kept); returns how many.
    ///
    /// The next purge is due when the earliest revocation the scan saw expires; one inserted
    /// between the scan and this call, expiring earlier, stays in memory until then (Check
    /// ignores it once expired).
    pub fn remove_expired(&mut self, expired: &Expired, now: u64) -> usize {
        self.next_expiry = expired.next_expiry;
        let mut removed = 0;
        for ((kind, table), keys) in RevocationKind::ALL
            .into_iter()
            .zip(self.by_kind.iter_mut())
            .zip(&expired.keys)
        {
            for &fingerprint in keys {
                if let Ok(occupied) =
                    table.find_entry(table_hash(fingerprint), |(key, _)| *key == fingerprint)
                    && occupied.get().1.expires_at <= now
                {
                    occupied.remove();
                    if kind == RevocationKind::Claim {
                        self.claim_names.removed(fingerprint);
                    }
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The kind of the first live revocation that covers the token, if any.
    ///
    /// Token revocations cover the matching token; session, subject, client and claim
    /// revocations cover tokens issued (`iat`) at or before the revocation, and tokens
    /// without `iat`.
    pub fn covering(&self, token: &TokenIdentity<'_>, now: u64) -> Option<RevocationKind> {
        if self.is_empty() {
            return None;
        }
        let issuer = digest(token.issuer);
        let covers = |kind: RevocationKind, id: &str| {
            let Some(entry) = find(&self.by_kind[slot(kind)], fingerprint(issuer, id)) else {
                return false;
            };
            entry.expires_at > now
                && (!kind.covers_by_issue_time()
                    || token.issued_at.is_none_or(|iat| iat <= entry.revoked_at))
        };
        let ids = [
            Some(token.token_id),
            token.session,
            token.subject,
            token.client,
        ];
        let by_id = RevocationKind::ALL
            .into_iter()
            .zip(ids)
            .find(|(kind, id)| {
                id.is_some_and(|id| !self.by_kind[slot(*kind)].is_empty() && covers(*kind, id))
            })
            .map(|(kind, _)| kind);
        if by_id.is_some() || self.by_kind[slot(RevocationKind::Claim)].is_empty() {
            return by_id;
        }
        token
            .claims
            .iter()
            .any(|id| covers(RevocationKind::Claim, id))
            .then_some(RevocationKind::Claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn revocation(kind: RevocationKind, id: &str, revoked_at: u64) -> Revocation {
        let key = RevocationKey::new("https://idp", kind, id).expect("key");
        Revocation::new(key, revoked_at, NOW + 3600, "test").expect("revocation")
    }

    fn alice(iat: Option<u64>) -> TokenIdentity<'static> {
        TokenIdentity {
            issuer: "https://idp",
            token_id: "jti-1",
            session: Some("sid-1"),
            subject: Some("alice"),
            client: Some("web"),
            issued_at: iat,
            claims: &[],
        }
    }

    #[test]
    fn empty_set_covers_nothing() {
        assert_eq!(RevocationSet::new().covering(&alice(Some(NOW)), NOW), None);
    }

    #[test]
    fn token_revocations_cover_regardless_of_issue_time() {
        let set = RevocationSet::from_revocations(
            [revocation(RevocationKind::Token, "jti-1", NOW - 10)],
            NOW,
        );
        assert_eq!(
            set.covering(&alice(Some(NOW)), NOW),
            Some(RevocationKind::Token)
        );
    }

    #[test]
    fn session_subject_and_client_revocations_cover_only_earlier_tokens() {
        for (kind, id) in [
            (RevocationKind::Session, "sid-1"),
            (RevocationKind::Subject, "alice"),
            (RevocationKind::Client, "web"),
        ] {
            let set = RevocationSet::from_revocations([revocation(kind, id, NOW)], NOW);
            assert_eq!(set.covering(&alice(Some(NOW - 1)), NOW), Some(kind));
            assert_eq!(
                set.covering(&alice(Some(NOW)), NOW),
                Some(kind),
                "same second"
            );
            assert_eq!(set.covering(&alice(None), NOW), Some(kind), "no iat");
            assert_eq!(
                set.covering(&alice(Some(NOW + 1)), NOW),
                None,
                "issued after"
            );
        }
    }

    #[test]
    fn revocations_are_scoped_to_their_issuer_and_id() {
        let set = RevocationSet::from_revocations(
            [revocation(RevocationKind::Subject, "alice", NOW)],
            NOW,
        );
        let mut other_issuer = alice(None);
        other_issuer.issuer = "https://other";
        assert_eq!(set.covering(&other_issuer, NOW), None);
        let mut bob = alice(None);
        bob.subject = Some("bob");
        assert_eq!(set.covering(&bob, NOW), None);
    }

    #[test]
    fn expired_revocations_cover_nothing_and_are_purged() {
        let mut set =
            RevocationSet::from_revocations([revocation(RevocationKind::Token, "jti-1", NOW)], NOW);
        assert_eq!(set.covering(&alice(None), NOW + 3600), None);
        assert!(!set.may_have_expired(NOW + 3599));
        assert!(set.may_have_expired(NOW + 3600));
        let expired = set.expired(NOW + 3600);
        assert_eq!(expired.keys.iter().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(expired.next_expiry, u64::MAX);
        assert_eq!(set.remove_expired(&expired, NOW + 3600), 1);
        assert!(set.is_empty());
        assert!(!set.may_have_expired(u64::MAX - 1));
        assert_eq!(set.len_by_kind(), [0; KINDS]);
    }

    #[test]
    fn a_revocation_put_again_after_the_expiry_scan_is_kept() {
        let mut set =
            RevocationSet::from_revocations([revocation(RevocationKind::Token, "jti-1", NOW)], NOW);
        let expired = set.expired(NOW + 3600);
        let key = RevocationKey::new("https://idp", RevocationKind::Token, "jti-1").expect("key");
        let renewed = Revocation::new(key, NOW + 3600, NOW + 7200, "again").expect("revocation");
        set.insert(&renewed);
        assert_eq!(set.remove_expired(&expired, NOW + 3600), 0);
        assert_eq!(
            set.covering(&alice(None), NOW + 3600),
            Some(RevocationKind::Token)
        );
    }

    #[test]
    fn changes_apply_idempotently() {
        let mut set = RevocationSet::new();
        let put = Change::Put(revocation(RevocationKind::Session, "sid-1", NOW));
        set.apply(&put);
        set.apply(&put);
        assert_eq!(set.len(), 1);
        assert_eq!(set.len_by_kind(), [0, 1, 0, 0, 0]);
        let key = RevocationKey::new("https://idp", RevocationKind::Session, "sid-1").expect("key");
        set.apply(&Change::Delete(key.clone()));
        set.apply(&Change::Delete(key));
        assert!(set.is_empty());
        assert_eq!(set.covering(&alice(None), NOW), None);
    }

    #[test]
    fn issuer_and_id_boundaries_cannot_collide() {
        assert_ne!(
            fingerprint(digest("ab"), "c"),
            fingerprint(digest("a"), "bc")
        );
        let key = RevocationKey::new("ab", RevocationKind::Token, "c").expect("key");
        let set = RevocationSet::from_revocations(
            [Revocation::new(key, NOW, NOW + 3600, "").expect("revocation")],
            NOW,
        );
        let mut shifted = alice(None);
        (shifted.issuer, shifted.token_id) = ("a", "bc");
        assert_eq!(set.covering(&shifted, NOW), None);
        (shifted.issuer, shifted.token_id) = ("ab", "c");
        assert_eq!(set.covering(&shifted, NOW), Some(RevocationKind::Token));
    }

    #[test]
    fn claim_revocations_cover_tokens_carrying_the_claim_issued_by_then() {
        let key = RevocationKey::new("https://idp", RevocationKind::Claim, "email=Alice@X.org")
            .expect("key");
        let set = RevocationSet::from_revocations(
            [Revocation::new(key, NOW, NOW + 3600, "").expect("revocation")],
            NOW,
        );
        assert_eq!(set.len_by_kind(), [0, 0, 0, 0, 1]);
        let alice_claims = [
            "phone_number=+1".to_owned(),
            crate::revocation::model::claim_id("email", "ALICE@x.org").expect("id"),
        ];
        let bob_claims = ["email=bob@x.org".to_owned()];
        let with = |claims: &'static [String], iat| TokenIdentity {
            claims,
            ..alice(iat)
        };
        let alice_claims: &'static [String] = Box::leak(Box::new(alice_claims));
        let bob_claims: &'static [String] = Box::leak(Box::new(bob_claims));
        assert_eq!(
            set.covering(&with(alice_claims, Some(NOW)), NOW),
            Some(RevocationKind::Claim)
        );
        assert_eq!(
            set.covering(&with(alice_claims, None), NOW),
            Some(RevocationKind::Claim)
        );
        assert_eq!(
            set.covering(&with(alice_claims, Some(NOW + 1)), NOW),
            None,
            "issued after"
        );
        assert_eq!(set.covering(&with(bob_claims, Some(NOW)), NOW), None);
        assert_eq!(
            set.covering(&alice(Some(NOW)), NOW),
            None,
            "no claims presented"
        );
        let mut other_issuer = with(alice_claims, Some(NOW));
        other_issuer.issuer = "https://other";
        assert_eq!(set.covering(&other_issuer, NOW), None);
        // The subject table is separate: a `sub` equal to the id is not a claim.
        let mut sub_only = alice(Some(NOW));
        sub_only.subject = Some("email=alice@x.org");
        assert_eq!(set.covering(&sub_only, NOW), None);
        assert_eq!(
            set.covering(&with(alice_claims, Some(NOW)), NOW + 3600),
            None,
            "expired"
        );
    }

    #[test]
    fn the_set_knows_which_claim_names_it_revokes_by() {
        let claim = |id: &str, expires_at| {
            let key = RevocationKey::new("https://idp", RevocationKind::Claim, id).expect("key");
            Revocation::new(key, NOW, expires_at, "").expect("revocation")
        };
        let mut set = RevocationSet::new();
        let email = |name: &str| name == "email";
        assert_eq!(set.unknown_claim(email), None);
        set.insert(&claim("email=a@x", NOW + 10));
        set.insert(&claim("email=a@x", NOW + 20));
        assert_eq!(set.unknown_claim(email), None);
        set.insert(&claim("phone=+1", NOW + 10));
        assert_eq!(set.unknown_claim(email), Some("phone"));
        assert_eq!(set.unknown_claim(|_| true), None);
        // Expiry and removal forget the name once no revocation names it.
        let expired = set.expired(NOW + 10);
        assert_eq!(set.remove_expired(&expired, NOW + 10), 1);
        assert_eq!(set.unknown_claim(email), None);
        set.insert(&claim("phone=+1", NOW + 30));
        assert_eq!(set.unknown_claim(email), Some("phone"));
        set.remove(&claim("phone=+1", NOW + 30).key);
        set.remove(&claim("phone=+1", NOW + 30).key);
        assert_eq!(set.unknown_claim(email), None);
        assert_eq!(set.unknown_claim(|_| false), Some("email"));
    }
}
