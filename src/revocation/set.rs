//! The in-memory revocation set that Check consults: every live revocation, indexed so that
//! one lookup per kind answers whether a token is covered, with no allocation and no
//! dependence on how many revocations there are.

use super::model::{Revocation, RevocationKey, RevocationKind};
use super::store::Change;
use std::collections::HashMap;

/// The maps' hasher: foldhash, several times faster than SipHash on short identifiers,
/// seeded at random per process.
type Hasher = foldhash::fast::RandomState;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    revoked_at: u64,
    expires_at: u64,
}

/// The revocations of one issuer, one map per kind.
#[derive(Debug, Default)]
struct IssuerRevocations {
    by_kind: [HashMap<Box<str>, Entry, Hasher>; 4],
}

fn slot(kind: RevocationKind) -> usize {
    match kind {
        RevocationKind::Token => 0,
        RevocationKind::Session => 1,
        RevocationKind::Subject => 2,
        RevocationKind::Client => 3,
    }
}

/// What a scan for expired revocations found.
#[derive(Debug)]
pub struct Expired {
    /// The expired revocations.
    pub keys: Vec<RevocationKey>,
    /// When the earliest of the others expires (`u64::MAX` if none).
    pub next_expiry: u64,
}

/// Every live revocation, by issuer and kind.
#[derive(Debug)]
pub struct RevocationSet {
    issuers: HashMap<Box<str>, IssuerRevocations, Hasher>,
    len: usize,
    /// No revocation expires before this (Unix seconds), so purging earlier finds nothing.
    next_expiry: u64,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self {
            issuers: HashMap::default(),
            len: 0,
            next_expiry: u64::MAX,
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
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many revocations of each kind it holds, in [`RevocationKind::ALL`] order.
    pub fn len_by_kind(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for issuer in self.issuers.values() {
            for (count, map) in counts.iter_mut().zip(&issuer.by_kind) {
                *count += map.len();
            }
        }
        counts
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
        let map = &mut self
            .issuers
            .entry(key.issuer.as_str().into())
            .or_default()
            .by_kind[slot(key.kind)];
        let entry = Entry {
            revoked_at: revocation.revoked_at,
            expires_at: revocation.expires_at,
        };
        if map.insert(key.id.as_str().into(), entry).is_none() {
            self.len += 1;
        }
        self.next_expiry = self.next_expiry.min(entry.expires_at);
    }

    /// Removes a revocation if present.
    pub fn remove(&mut self, key: &RevocationKey) {
        let Some(issuer) = self.issuers.get_mut(key.issuer.as_str()) else {
            return;
        };
        if issuer.by_kind[slot(key.kind)]
            .remove(key.id.as_str())
            .is_some()
        {
            self.len -= 1;
        }
        if issuer.by_kind.iter().all(HashMap::is_empty) {
            self.issuers.remove(key.issuer.as_str());
        }
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
            keys: Vec::new(),
            next_expiry: u64::MAX,
        };
        for (issuer, revocations) in &self.issuers {
            for (kind, map) in RevocationKind::ALL.into_iter().zip(&revocations.by_kind) {
                for (id, entry) in map {
                    if entry.expires_at > now {
                        expired.next_expiry = expired.next_expiry.min(entry.expires_at);
                        continue;
                    }
                    expired.keys.push(RevocationKey {
                        issuer: issuer.to_string(),
                        kind,
                        id: id.to_string(),
                    });
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
        let keys = &expired.keys;
        let before = self.len;
        for key in keys {
            let expired = self
                .issuers
                .get(key.issuer.as_str())
                .and_then(|issuer| issuer.by_kind[slot(key.kind)].get(key.id.as_str()))
                .is_some_and(|entry| entry.expires_at <= now);
            if expired {
                self.remove(key);
            }
        }
        before - self.len
    }

    /// The kind of the first live revocation that covers the token, if any.
    ///
    /// Token and session revocations cover every matching token; subject and client
    /// revocations cover tokens issued (`iat`) at or before the revocation, and tokens
    /// without `iat`.
    pub fn covering(&self, token: &TokenIdentity<'_>, now: u64) -> Option<RevocationKind> {
        let issuer = self.issuers.get(token.issuer)?;
        let ids = [
            Some(token.token_id),
            token.session,
            token.subject,
            token.client,
        ];
        RevocationKind::ALL
            .into_iter()
            .zip(ids)
            .find(|(kind, id)| {
                let Some(entry) = id.and_then(|id| issuer.by_kind[slot(*kind)].get(id)) else {
                    return false;
                };
                if entry.expires_at <= now {
                    return false;
                }
                !kind.covers_by_issue_time()
                    || token.issued_at.is_none_or(|iat| iat <= entry.revoked_at)
            })
            .map(|(kind, _)| kind)
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
        }
    }

    #[test]
    fn empty_set_covers_nothing() {
        assert_eq!(RevocationSet::new().covering(&alice(Some(NOW)), NOW), None);
    }

    #[test]
    fn token_and_session_revocations_cover_regardless_of_issue_time() {
        for (kind, id) in [
            (RevocationKind::Token, "jti-1"),
            (RevocationKind::Session, "sid-1"),
        ] {
            let set = RevocationSet::from_revocations([revocation(kind, id, NOW - 10)], NOW);
            assert_eq!(set.covering(&alice(Some(NOW)), NOW), Some(kind));
        }
    }

    #[test]
    fn subject_and_client_revocations_cover_only_earlier_tokens() {
        for (kind, id) in [
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
        assert_eq!(expired.keys.len(), 1);
        assert_eq!(expired.next_expiry, u64::MAX);
        assert_eq!(set.remove_expired(&expired, NOW + 3600), 1);
        assert!(set.is_empty());
        assert!(!set.may_have_expired(u64::MAX - 1));
        assert_eq!(set.len_by_kind(), [0; 4]);
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
        assert_eq!(set.len_by_kind(), [0, 1, 0, 0]);
        let key = RevocationKey::new("https://idp", RevocationKind::Session, "sid-1").expect("key");
        set.apply(&Change::Delete(key.clone()));
        set.apply(&Change::Delete(key));
        assert!(set.is_empty());
        assert_eq!(set.covering(&alice(None), NOW), None);
    }
}
