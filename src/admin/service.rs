//! The tonic implementation of `jwtrevoker.admin.v1.RevocationAdmin`.

use super::auth::AdminAuthInterceptor;
use super::convert::{key_from_pb, key_to_pb, revocation_to_pb, seconds_from_pb};
use super::error::AdminError;
use super::pb::{
    self, GetRevocationRequest, GetStatusRequest, ListRevocationsRequest, ListRevocationsResponse,
    RevokeOutcome, RevokeRequest, RevokeResponse, StatusResponse, UnrevokeRequest,
    UnrevokeResponse, revocation_admin_server::RevocationAdmin,
    revocation_admin_server::RevocationAdminServer, revoke_request, unrevoke_request,
};
use super::revoker::{RevokeResult, Revoker};
use crate::clock::unix_now;
use crate::config::AdminAuth;
use crate::revocation::ReplicaHealth;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// The admin gRPC service.
#[derive(Debug, Clone)]
pub struct AdminService {
    revoker: Arc<Revoker>,
    streams: Option<Arc<crate::ssf::Receiver>>,
}

impl AdminService {
    /// An admin service over `revoker`.
    pub fn new(revoker: Arc<Revoker>) -> Self {
        Self {
            revoker,
            streams: None,
        }
    }

    /// Reports these Shared Signals streams in `GetStatus`.
    #[must_use]
    pub fn with_streams(mut self, receiver: Arc<crate::ssf::Receiver>) -> Self {
        self.streams = Some(receiver);
        self
    }

    /// The tonic service to mount on the admin port, guarded by `auth`.
    pub fn svc(
        self,
        auth: AdminAuth,
    ) -> InterceptedService<RevocationAdminServer<Self>, AdminAuthInterceptor> {
        RevocationAdminServer::with_interceptor(self, AdminAuthInterceptor::new(auth))
    }
}

#[tonic::async_trait]
impl RevocationAdmin for AdminService {
    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let request = request.into_inner();
        let now = unix_now();
        let result = match request.target {
            Some(revoke_request::Target::Token(token)) => {
                if request.expires_at.is_some() {
                    return Err(AdminError::invalid(
                        "expires_at",
                        "only applies with key (a token's revocation lasts until its exp)",
                    )
                    .into());
                }
                self.revoker
                    .revoke_token(&token, &request.reason, now)
                    .await?
            }
            Some(revoke_request::Target::Key(key)) => {
                let key = key_from_pb(Some(key), "key")?;
                let expires_at = request
                    .expires_at
                    .as_ref()
                    .map(|ts| seconds_from_pb(ts, "expires_at"))
                    .transpose()?;
                self.revoker
                    .revoke_key(key, expires_at, &request.reason, now)
                    .await?
            }
            None => return Err(AdminError::invalid("target", "give token or key").into()),
        };
        let (outcome, revocation) = match &result {
            RevokeResult::Revoked(r) => (RevokeOutcome::Revoked, Some(revocation_to_pb(r))),
            RevokeResult::AlreadyRevoked(r) => {
                (RevokeOutcome::AlreadyRevoked, Some(revocation_to_pb(r)))
            }
            RevokeResult::Extended(r) => (RevokeOutcome::Extended, Some(revocation_to_pb(r))),
            RevokeResult::AlreadyExpired => (RevokeOutcome::AlreadyExpired, None),
        };
        Ok(Response::new(RevokeResponse {
            outcome: outcome.into(),
            revocation,
        }))
    }

    async fn unrevoke(
        &self,
        request: Request<UnrevokeRequest>,
    ) -> Result<Response<UnrevokeResponse>, Status> {
        let now = unix_now();
        let key = match request.into_inner().target {
            Some(unrevoke_request::Target::Token(token)) => {
                self.revoker.token_key(&token, now).await?.0
            }
            Some(unrevoke_request::Target::Key(key)) => self
                .revoker
                .check_key(key_from_pb(Some(key), "key")?, "key.")?,
            None => return Err(AdminError::invalid("target", "give token or key").into()),
        };
        let removed = self.revoker.unrevoke(&key, now).await?;
        Ok(Response::new(UnrevokeResponse {
            removed,
            key: Some(key_to_pb(&key)),
        }))
    }

    async fn get_revocation(
        &self,
        request: Request<GetRevocationRequest>,
    ) -> Result<Response<pb::Revocation>, Status> {
        let key = key_from_pb(request.into_inner().key, "key")?;
        let revocation = self.revoker.get(&key, unix_now()).await?;
        Ok(Response::new(revocation_to_pb(&revocation)))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let request = request.into_inner();
        let cursor = Some(request.page_token.as_str()).filter(|t| !t.is_empty());
        let page_size = usize::try_from(request.page_size).unwrap_or(usize::MAX);
        let page = self.revoker.list(cursor, page_size, unix_now()).await?;
        Ok(Response::new(ListRevocationsResponse {
            revocations: page.revocations.iter().map(revocation_to_pb).collect(),
            next_page_token: page.next.unwrap_or_default(),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let status = self.revoker.replica().status();
        let store = self.revoker.store();
        Ok(Response::new(StatusResponse {
            store: store.kind().to_owned(),
            store_location: store.location(),
            synced: status.health == ReplicaHealth::Current,
            staleness_seconds: status.staleness.map_or(-1.0, |s| s.as_secs_f64()),
            revocations: u64::try_from(status.revocations).unwrap_or(u64::MAX),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ssf_streams: self
                .streams
                .iter()
                .flat_map(|receiver| receiver.streams())
                .map(|stream| super::ssf_status::stream_to_pb(stream))
                .collect(),
        }))
    }
}
