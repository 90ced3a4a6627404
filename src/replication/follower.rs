//! The client side of the feed: [`FeedFollower`], a read-only [`Store`] whose snapshot and
//! change feed come from `Revocations/Watch` on a jwt-revoker server. A
//! [`Replica`](crate::revocation::Replica) follows it exactly as it follows Redis, so the
//! staleness rules (`max_staleness`, `stale_policy`), snapshot loading and expiry are the
//! server's own.
//!
//! One stream at a time: [`Store::snapshot`] opens a stream without a position and reads the
//! snapshot; [`Store::changes`] reads the next event of that stream (a heartbeat counts as
//! "no changes"), and when the stream has broken, first tries to resume it from the position
//! on the next server before reporting the failure (the replica then re-snapshots).

use super::convert::{WireError, change_from_wire, revocation_from_wire};
use super::pb::revocations_client::RevocationsClient;
use super::pb::{self, watch_event::Event};
use crate::revocation::{
    ChangeBatch, FeedPosition, Inserted, Page, Revocation, RevocationKey, Store, StoreError,
};
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Streaming, metadata::MetadataValue};

/// How long a server may stay silent (it sends a heartbeat every second) before the stream
/// counts as broken.
const SILENCE_LIMIT: Duration = Duration::from_secs(5);
/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// TLS towards the feed servers, PEM-encoded.
#[derive(Clone, Default)]
pub struct FollowerTls {
    /// CA certificates that sign the servers' certificates.
    pub ca_pem: Vec<u8>,
    /// A client certificate and key, for servers that require one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where and how to follow the feed.
#[derive(Clone, Default)]
pub struct FollowerOptions {
    /// Server URLs (`http://host:port` or `https://host:port`: their admin ports), tried in
    /// turn.
    pub endpoints: Vec<String>,
    /// The feed bearer token, if the servers require one.
    pub token: Option<String>,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<FollowerTls>,
}

impl std::fmt::Debug for FollowerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowerOptions")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why the follower cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// No endpoint was given.
    #[error("no feed endpoint configured")]
    NoEndpoint,
    /// An endpoint or its TLS settings are unusable.
    #[error("feed endpoint {endpoint:?}: {detail}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// The token cannot be sent as a header.
    #[error("the feed token is not a valid header value")]
    Token,
}

/// A read-only [`Store`] over a jwt-revoker feed.
pub struct FeedFollower {
    endpoints: Vec<Endpoint>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    next: AtomicUsize,
    stream: Mutex<Option<Streaming<pb::WatchEvent>>>,
}

impl std::fmt::Debug for FeedFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedFollower")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("revocation feed: {what}"))
}

fn protocol(error: WireError) -> StoreError {
    StoreError::Internal(format!("revocation feed sent a bad message: {error}"))
}

impl FeedFollower {
    /// A follower of `options.endpoints` (connections are made lazily).
    pub fn new(options: &FollowerOptions) -> Result<Self, FollowerError> {
        if options.endpoints.is_empty() {
            return Err(FollowerError::NoEndpoint);
        }
        let endpoints = options
            .endpoints
            .iter()
            .map(|url| endpoint(url, options.tls.as_ref()))
            .collect::<Result<_, _>>()?;
        let authorization = options
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .map_err(|_| FollowerError::Token)?;
        Ok(Self {
            endpoints,
            authorization,
            next: AtomicUsize::new(0),
            stream: Mutex::new(None),
        })
    }

    /// Opens a stream on the next server, from `resume_from` (empty: with a snapshot).
    async fn open(&self, resume_from: &str) -> Result<Streaming<pb::WatchEvent>, StoreError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = &self.endpoints[index];
        let channel: Channel = endpoint.connect().await.map_err(unavailable)?;
        let mut request = tonic::Request::new(pb::WatchRequest {
            resume_from: resume_from.to_owned(),
        });
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let response = RevocationsClient::new(channel)
            .watch(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                    StoreError::Internal(format!(
                        "revocation feed refused us: {}",
                        status.message()
                    ))
                }
                _ => unavailable(status.message()),
            })?;
        Ok(response.into_inner())
    }
}

fn endpoint(url: &str, tls: Option<&FollowerTls>) -> Result<Endpoint, FollowerError> {
    let fail = |detail: String| FollowerError::Endpoint {
        endpoint: url.to_owned(),
        detail,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10));
    if url.starts_with("https://") {
        let tls = tls.ok_or_else(|| fail("an https:// endpoint needs tls settings".to_owned()))?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(endpoint)
}

/// The next event of `stream`, or an error when it breaks, ends or stays silent too long.
async fn next_event(stream: &mut Streaming<pb::WatchEvent>) -> Result<Event, StoreError> {
    match tokio::time::timeout(SILENCE_LIMIT, stream.message()).await {
        Err(_) => Err(unavailable("the server went silent")),
        Ok(Err(status)) => Err(unavailable(status.message())),
        Ok(Ok(None)) => Err(unavailable("the server ended the stream")),
        Ok(Ok(Some(pb::WatchEvent { event: None }))) => Err(unavailable("an empty event")),
        Ok(Ok(Some(pb::WatchEvent { event: Some(event) }))) => Ok(event),
    }
}

fn read_only() -> StoreError {
    StoreError::Internal("the revocation feed is read-only".to_owned())
}

#[async_trait]
impl Store for FeedFollower {
    async fn insert(&self, _: &Revocation, _: u64) -> Result<Inserted, StoreError> {
        Err(read_only())
    }

    async fn remove(&self, _: &RevocationKey, _: u64) -> Result<bool, StoreError> {
        Err(read_only())
    }

    async fn get(&self, _: &RevocationKey, _: u64) -> Result<Option<Revocation>, StoreError> {
        Err(read_only())
    }

    async fn list(&self, _: Option<&str>, _: usize, _: u64) -> Result<Page, StoreError> {
        Err(read_only())
    }

    async fn snapshot(
        &self,
        _now: u64,
        pages: mpsc::Sender<Vec<Revocation>>,
    ) -> Result<FeedPosition, StoreError> {
        let mut current = self.stream.lock().await;
        *current = None;
        let mut stream = self.open("").await?;
        loop {
            match next_event(&mut stream).await? {
                Event::SnapshotPage(page) => {
                    let page = page
                        .revocations
                        .into_iter()
                        .map(revocation_from_wire)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(protocol)?;
                    pages
                        .send(page)
                        .await
                        .map_err(|_| StoreError::snapshot_abandoned())?;
                }
                Event::SnapshotEnd(end) => {
                    *current = Some(stream);
                    return Ok(FeedPosition(end.position));
                }
                Event::Reset(_) | Event::Changes(_) | Event::Heartbeat(_) => {
                    return Err(StoreError::Internal(
                        "revocation feed: a change before the snapshot ended".to_owned(),
                    ));
                }
            }
        }
    }

    async fn changes(
        &self,
        position: &FeedPosition,
        _wait: Duration,
    ) -> Result<ChangeBatch, StoreError> {
        let mut current = self.stream.lock().await;
        let event = match current.as_mut() {
            Some(stream) => match next_event(stream).await {
                Ok(event) => Ok(event),
                Err(error) => {
                    tracing::info!(%error, "revocation feed broke; resuming");
                    *current = None;
                    Err(error)
                }
            },
            None => Err(unavailable("no stream")),
        };
        // A broken stream is resumed once, from the position, on the next server.
        let event = match event {
            Ok(event) => event,
            Err(_) => {
                let mut stream = self.open(&position.0).await?;
                let event = next_event(&mut stream).await?;
                *current = Some(stream);
                event
            }
        };
        match event {
            Event::Changes(changes) => {
                let applied = changes
                    .changes
                    .into_iter()
                    .map(change_from_wire)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(protocol)?;
                Ok(ChangeBatch::Changes(
                    applied,
                    FeedPosition(changes.position),
                ))
            }
            Event::Heartbeat(beat) => Ok(ChangeBatch::Changes(
                Vec::new(),
                FeedPosition(beat.position),
            )),
            Event::Reset(_) => {
                *current = None;
                Ok(ChangeBatch::Gap)
            }
            Event::SnapshotPage(_) | Event::SnapshotEnd(_) => {
                *current = None;
                Err(StoreError::Internal(
                    "revocation feed: a snapshot without being asked".to_owned(),
                ))
            }
        }
    }

    async fn purge_expired(&self, _: u64) -> Result<usize, StoreError> {
        // The server's store purges; the replica drops expired entries from memory itself.
        Ok(0)
    }

    async fn remember_once(&self, _: &str, _: &str, _: u64, _: u64) -> Result<bool, StoreError> {
        Err(read_only())
    }

    async fn is_remembered(&self, _: &str, _: &str, _: u64) -> Result<bool, StoreError> {
        Err(read_only())
    }

    fn kind(&self) -> &'static str {
        "feed"
    }

    fn location(&self) -> String {
        self.endpoints
            .iter()
            .map(|e| e.uri().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
