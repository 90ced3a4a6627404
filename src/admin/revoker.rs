//! The revocation operations behind every admin front end (gRPC, the HTTP endpoints, logout
//! routes): validate, write to the store (durably, or not at all), and apply to this server's
//! replica at once.

use super::error::AdminError;
use crate::revocation::{
    Change, Covered, Inserted, Lifetimes, Page, Replica, Revocation, RevocationKey, RevocationKind,
    Store,
};
use crate::token::{TimeRule, VerifiedToken, Verifier};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The longest page a listing returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// What a revoke did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeResult {
    /// Newly recorded.
    Revoked(Revocation),
    /// Already revoked; this revocation stays in force.
    AlreadyRevoked(Revocation),
    /// Already revoked, and now extended: a later expiry and/or, for subjects and clients,
    /// a later revocation time (covering tokens issued since).
    Extended(Revocation),
    /// The token has expired already; nothing stored.
    AlreadyExpired,
}

/// Performs revocations against the store and the local replica.
pub struct Revoker {
    store: Arc<dyn Store>,
    replica: Arc<Replica>,
    verifier: Arc<Verifier>,
    issuers: HashSet<String>,
    /// Each issuer's `revocable_claims`: the only claims a claim revocation may name.
    revocable_claims: HashMap<String, Vec<String>>,
    lifetimes: Lifetimes,
}

impl std::fmt::Debug for Revoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoker")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

impl Revoker {
    /// A revoker writing to `store` and applying to `replica`; `issuers` are the configured
    /// `iss` values, the only ones revocations may name.
    pub fn new(
        store: Arc<dyn Store>,
        replica: Arc<Replica>,
        verifier: Arc<Verifier>,
        issuers: impl IntoIterator<Item = String>,
        max_token_lifetime: Duration,
        leeway: Duration,
    ) -> Self {
        Self {
            store,
            replica,
            verifier,
            issuers: issuers.into_iter().collect(),
            revocable_claims: HashMap::new(),
            lifetimes: Lifetimes::new(max_token_lifetime, leeway),
        }
    }

    /// This revoker, accepting claim revocations for the claims each issuer makes revocable
    /// (`revocable_claims`); without, every claim revocation is refused.
    pub fn with_revocable_claims(
        mut self,
        by_issuer: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        for (issuer, claims) in by_issuer {
            self.revocable_claims
                .entry(issuer)
                .or_default()
                .extend(claims);
        }
        self
    }

    /// Refuses a claim revocation whose claim is not among its issuer's `revocable_claims`:
    /// Check never reads that claim, so the revocation would silently cover nothing.
    fn check_revocable(&self, key: &RevocationKey, prefix: &str) -> Result<(), AdminError> {
        let Some((name, _)) = key.claim() else {
            return Ok(());
        };
        let configured = self
            .revocable_claims
            .get(&key.issuer)
            .is_some_and(|claims| claims.iter().any(|c| c == name));
        if configured {
            return Ok(());
        }
        Err(AdminError::invalid(
            format!("{prefix}id"),
            format!(
                "claim {name:?} is not in revocable_claims of issuer {:?}: Check never reads \
                 it, so this revocation would cover no token",
                key.issuer
            ),
        ))
    }

    /// The store in use.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The local replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// The token verifier.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Revokes, for an already verified token, the token itself or every token of its session
    /// (`sid`), subject (`sub`) or client; when the token lacks that claim (or it is empty or
    /// oversized), the token itself.
    /// Returns the kind actually revoked with the result.
    pub async fn revoke_verified(
        &self,
        token: &VerifiedToken,
        kind: RevocationKind,
        reason: &str,
        now: u64,
    ) -> Result<(RevocationKind, RevokeResult), AdminError> {
        let claims = &token.claims;
        let id = match kind {
            RevocationKind::Token => None,
            RevocationKind::Session => claims.sid.as_deref(),
            RevocationKind::Subject => claims.sub.as_deref(),
            RevocationKind::Client => claims.client_id.as_deref(),
            // A verified token names no single claim to revoke by: the token itself.
            RevocationKind::Claim => None,
        };
        // An absent or unusable (empty, oversized) claim falls back to the token itself.
        if let Some(key) = id.and_then(|id| RevocationKey::new(claims.iss.clone(), kind, id).ok()) {
            return Ok((kind, self.revoke_key(key, None, reason, now).await?));
        }
        let key = RevocationKey::new(
            claims.iss.clone(),
            RevocationKind::Token,
            token.token_id.clone(),
        )
        .map_err(|e| AdminError::from_invalid_revocation("token.", &e))?;
        let result = self
            .revoke_token_key(key, claims.exp, claims.iat, reason, now)
            .await?;
        Ok((RevocationKind::Token, result))
    }

    /// Checks a key from a request: a configured issuer and a well-formed identifier.
    pub fn check_key(&self, key: RevocationKey, prefix: &str) -> Result<RevocationKey, AdminError> {
        let key = RevocationKey::new(key.issuer, key.kind, key.id)
            .map_err(|e| AdminError::from_invalid_revocation(prefix, &e))?;
        if !self.issuers.contains(&key.issuer) {
            return Err(AdminError::invalid(
                format!("{prefix}issuer"),
                "is not a configured issuer",
            ));
        }
        Ok(key)
    }

    /// The key that names a raw token: its issuer and `jti` (or payload digest). The token
    /// must verify (signature, issuer, audience); its `exp` and `iat` are returned, not
    /// enforced.
    pub async fn token_key(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(RevocationKey, u64, Option<u64>), AdminError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AdminError::invalid("token", "must not be empty"));
        }
        let verified = self.verifier.verify(token, now, TimeRule::Ignore).await?;
        let key = RevocationKey::new(
            verified.claims.iss.clone(),
            RevocationKind::Token,
            verified.token_id.clone(),
        )
        .map_err(|e| AdminError::from_invalid_revocation("token.", &e))?;
        Ok((key, verified.claims.exp, verified.claims.iat))
    }

    /// Revokes a raw token until its `exp` plus leeway (as long as Check could accept it).
    pub async fn revoke_token(
        &self,
        token: &str,
        reason: &str,
        now: u64,
    ) -> Result<RevokeResult, AdminError> {
        let (key, exp, iat) = self.token_key(token, now).await?;
        self.revoke_token_key(key, exp, iat, reason, now).await
    }

    /// Revokes the token named by `key`, whose `exp` and `iat` are given, for as long as
    /// Check could accept it ([`Lifetimes::revocation_expiry`]).
    async fn revoke_token_key(
        &self,
        key: RevocationKey,
        exp: u64,
        iat: Option<u64>,
        reason: &str,
        now: u64,
    ) -> Result<RevokeResult, AdminError> {
        let expires_at = self
            .lifetimes
            .revocation_expiry(Covered::Token { exp, iat });
        if expires_at <= now {
            // Check can no longer accept it: nothing to revoke.
            return Ok(RevokeResult::AlreadyExpired);
        }
        self.insert(key, now, expires_at, reason, now).await
    }

    /// Revokes by key as of `revoked_at` (not `now`), until the longest a token issued by
    /// then can live. Deterministic in its inputs, so repeating it changes nothing: for a
    /// back-channel logout, whose token's `iat` says when the identity provider ended the
    /// session.
    pub async fn revoke_key_as_of(
        &self,
        key: RevocationKey,
        revoked_at: u64,
        reason: &str,
        now: u64,
    ) -> Result<RevokeResult, AdminError> {
        let key = self.check_key(key, "key.")?;
        self.check_revocable(&key, "key.")?;
        let at = revoked_at.min(now);
        let expires_at = self.lifetimes.revocation_expiry(Covered::IssuedBy { at });
        self.insert(key, at, expires_at, reason, now).await
    }

    /// Revokes by key, until `expires_at` or, by default, until no token it covers can be
    /// accepted any more ([`Lifetimes::revocation_expiry`]).
    pub async fn revoke_key(
        &self,
        key: RevocationKey,
        expires_at: Option<u64>,
        reason: &str,
        now: u64,
    ) -> Result<RevokeResult, AdminError> {
        let key = self.check_key(key, "key.")?;
        self.check_revocable(&key, "key.")?;
        let longest = self
            .lifetimes
            .revocation_expiry(Covered::IssuedBy { at: now });
        let expires_at = match expires_at {
            None => longest,
            Some(at) if at <= now => {
                return Err(AdminError::invalid("expires_at", "must be in the future"));
            }
            Some(at) if at > longest => {
                return Err(AdminError::invalid(
                    "expires_at",
                    "must be within max_token_lifetime (plus twice the leeway) from now",
                ));
            }
            Some(at) => at,
        };
        self.insert(key, now, expires_at, reason, now).await
    }

    async fn insert(
        &self,
        key: RevocationKey,
        revoked_at: u64,
        expires_at: u64,
        reason: &str,
        now: u64,
    ) -> Result<RevokeResult, AdminError> {
        let revocation = Revocation::new(key, revoked_at, expires_at, reason)
            .map_err(|e| AdminError::from_invalid_revocation("", &e))?;
        let (result, written) = match self.store.insert(&revocation, now).await? {
            Inserted::Existing(existing) => return Ok(RevokeResult::AlreadyRevoked(existing)),
            Inserted::New => (RevokeResult::Revoked(revocation.clone()), revocation),
            Inserted::Extended(extended) => (RevokeResult::Extended(extended.clone()), extended),
        };
        tracing::info!(
            kind = %written.key.kind,
            issuer = %written.key.issuer,
            expires_at = written.expires_at,
            extended = matches!(result, RevokeResult::Extended(_)),
            "revoked"
        );
        self.replica.apply_local(&Change::Put(written));
        Ok(result)
    }

    /// Removes a revocation; false if there was none. Replicas, this one included, apply it
    /// when the change feed delivers it.
    pub async fn unrevoke(&self, key: &RevocationKey, now: u64) -> Result<bool, AdminError> {
        // The replica learns of the removal from the feed, not here: applying it locally
        // could race a newer revocation of the same key arriving through the feed and drop
        // it (fail open). An unrevoke may take a feed round trip to take effect.
        let removed = self.store.remove(key, now).await?;
        if removed {
            tracing::info!(kind = %key.kind, issuer = %key.issuer, "unrevoked");
        }
        Ok(removed)
    }

    /// The live revocation with this key.
    pub async fn get(&self, key: &RevocationKey, now: u64) -> Result<Revocation, AdminError> {
        self.store
            .get(key, now)
            .await?
            .ok_or_else(|| AdminError::NotFound(key.to_string()))
    }

    /// A page of live revocations after `cursor` (an encoded key from a previous page).
    pub async fn list(
        &self,
        cursor: Option<&str>,
        page_size: usize,
        now: u64,
    ) -> Result<Page, AdminError> {
        if let Some(cursor) = cursor
            && RevocationKey::decode(cursor).is_none()
        {
            return Err(AdminError::invalid(
                "page_token",
                "is not a valid page token",
            ));
        }
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(AdminError::invalid(
                    "page_size",
                    format!("must be at most {MAX_PAGE_SIZE}"),
                ));
            }
            n => n,
        };
        Ok(self.store.list(cursor, size, now).await?)
    }
}
