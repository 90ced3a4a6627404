//! Global Token Revocation (draft-parecki-oauth-global-token-revocation, the endpoint Okta
//! Universal Logout and Auth0 call): `{"sub_id": …}` (`iss_sub`, `email` where configured,
//! `opaque` as a `sub`) revokes that user's tokens as of now. The caller authenticates with
//! the admin token or a signed JWT from the configured issuer (its `aud` the configured
//! audience, `exp` required and near, its `jti` used once).

use super::error::SetError;
use super::jws::{CompactJws, PartError};
use super::mapping::{self, Policy};
use super::subject;
use crate::admin::auth::bearer_matches;
use crate::admin::{AdminError, Revoker};
use crate::config::{AdminAuth, IssuerConfig};
use crate::revocation::{RevocationKey, StoreError};
use crate::token::KeyError;
use crate::token::keys::IssuerKeys;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The largest request body or caller JWT accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// The longest a caller JWT may still be valid for, in seconds.
const MAX_CALLER_JWT_LIFETIME: u64 = 3600;
/// The `remember_once` scope of caller JWT `jti`s.
const CALLER_JTI_SCOPE: &str = "gtr-jti";

/// Why a Global Token Revocation request failed, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum GtrError {
    /// 401: no acceptable credentials.
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    /// 400: malformed request or unsupported subject format.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// 403: the caller may not revoke this user.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 422: the subject cannot be mapped onto tokens here.
    #[error("the subject cannot be revoked here: {0}")]
    Unprocessable(&'static str),
    /// 503/500: the store failed; retry.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Verifies caller JWTs of one issuer.
pub struct CallerVerifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    keys: IssuerKeys,
}

impl std::fmt::Debug for CallerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl CallerVerifier {
    /// Loads the keys of `caller` (its issuer, the endpoint's audience as the one entry of
    /// `audiences`, key source, algorithms).
    pub async fn new(caller: &IssuerConfig) -> Result<Self, KeyError> {
        Ok(Self {
            issuer: caller.issuer.clone(),
            audience: caller.audiences.first().cloned().unwrap_or_default(),
            algorithms: caller.algorithms.clone(),
            keys: IssuerKeys::load(0, caller, Arc::new(AtomicU64::new(0))).await?,
        })
    }

    /// Verifies a caller JWT at `now`; returns its `jti` and `exp`.
    async fn verify(
        &self,
        jwt: &str,
        now: u64,
        leeway: u64,
    ) -> Result<(Option<String>, u64), &'static str> {
        let jws = CompactJws::split(jwt).map_err(|_| "not a compact JWS")?;
        let object = |part: Result<Map<String, Value>, PartError>| {
            part.map_err(|error| match error {
                PartError::NotBase64 => "not base64url",
                PartError::DuplicateMember => "a member name appears twice",
                PartError::NotObject => "not a JSON object",
            })
        };
        let header = object(jws.header())?;
        if header.contains_key("crit") || header.contains_key("enc") {
            return Err("crit and enc are not supported");
        }
        if let Some(typ) = header.get("typ").and_then(Value::as_str) {
            let typ = typ.to_ascii_lowercase();
            if typ.contains("secevent") || typ.contains("logout") {
                return Err("a security event or logout token is not a credential");
            }
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .filter(|alg| !alg.eq_ignore_ascii_case("none"))
            .and_then(|alg| Algorithm::from_str(alg).ok())
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or("alg not accepted")?;
        let kid = header.get("kid").and_then(Value::as_str);
        jws.verify_signature(&self.keys, kid, alg)
            .await
            .map_err(|_| "bad signature or unknown key")?;
        let claims = object(jws.payload())?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err("wrong issuer");
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err("wrong audience");
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("exp is required")?;
        if exp.saturating_add(leeway) <= now {
            return Err("expired");
        }
        if exp > now.saturating_add(MAX_CALLER_JWT_LIFETIME + leeway) {
            return Err("valid for too long");
        }
        let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
        Ok((jti, exp))
    }
}

/// The Global Token Revocation endpoint's logic.
#[derive(Debug)]
pub struct GlobalRevocation {
    admin: AdminAuth,
    caller: Option<CallerVerifier>,
    policy: Policy,
    revoker: Arc<Revoker>,
    leeway: u64,
}

impl GlobalRevocation {
    /// Accepts the admin token (`admin`) or JWTs verified by `caller`; revokes for the token
    /// issuers of `policy`.
    pub fn new(
        admin: AdminAuth,
        caller: Option<CallerVerifier>,
        policy: Policy,
        revoker: Arc<Revoker>,
        leeway: u64,
    ) -> Self {
        Self {
            admin,
            caller,
            policy,
            revoker,
            leeway,
        }
    }

    /// Authenticates the caller (the `authorization` header), reads the request body and
    /// revokes the user as of `now`; returns how many revocations were recorded.
    pub async fn revoke(
        &self,
        authorization: Option<&[u8]>,
        body: &[u8],
        now: u64,
    ) -> Result<usize, GtrError> {
        self.authenticate(authorization, now).await?;
        let request: Value = serde_json::from_slice(body)
            .map_err(|_| GtrError::BadRequest("the body is not JSON".to_owned()))?;
        let sub_id = request
            .get("sub_id")
            .ok_or_else(|| GtrError::BadRequest("sub_id is required".to_owned()))?;
        let subject = subject::parse(sub_id).map_err(|e| GtrError::BadRequest(e.to_string()))?;
        let planned = match mapping::user_revocations(&subject, &self.policy) {
            Ok(Some(planned)) if !planned.is_empty() => planned,
            Ok(_) => return Err(GtrError::Unprocessable("unsupported subject identifier")),
            Err(SetError::AccessDenied(why)) => return Err(GtrError::Forbidden(why)),
            Err(error) => return Err(GtrError::BadRequest(error.to_string())),
        };
        for planned in &planned {
            let key = RevocationKey::new(planned.issuer.clone(), planned.kind, planned.id.clone())
                .map_err(|e| GtrError::BadRequest(e.to_string()))?;
            match self
                .revoker
                .revoke_key_as_of(key, now, "global token revocation", now)
                .await
            {
                Ok(_) => {}
                Err(AdminError::Store(error)) => return Err(error.into()),
                Err(error) => return Err(GtrError::BadRequest(error.to_string())),
            }
        }
        Ok(planned.len())
    }

    async fn authenticate(&self, authorization: Option<&[u8]>, now: u64) -> Result<(), GtrError> {
        if let AdminAuth::Token(expected) = &self.admin
            && bearer_matches(authorization, expected)
        {
            return Ok(());
        }
        let Some(caller) = &self.caller else {
            return match self.admin {
                AdminAuth::Open => Ok(()),
                AdminAuth::Token(_) => Err(GtrError::Unauthorized("the admin token is required")),
            };
        };
        let jwt = authorization
            .and_then(|header| header.split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .and_then(|(_, jwt)| std::str::from_utf8(jwt).ok())
            .map(str::trim)
            .filter(|jwt| !jwt.is_empty() && jwt.len() <= MAX_REQUEST_BYTES)
            .ok_or(GtrError::Unauthorized("a bearer JWT is required"))?;
        let (jti, exp) = caller
            .verify(jwt, now, self.leeway)
            .await
            .map_err(GtrError::Unauthorized)?;
        if let Some(jti) = jti {
            let mark = format!("{}:{}{}", caller.issuer.len(), caller.issuer, jti);
            let fresh = self
                .revoker
                .store()
                .remember_once(
                    CALLER_JTI_SCOPE,
                    &mark,
                    exp.saturating_add(self.leeway + 1),
                    now,
                )
                .await?;
            if !fresh {
                return Err(GtrError::Unauthorized("the JWT was already used"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
