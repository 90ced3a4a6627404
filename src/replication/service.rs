//! The server side of the feed: for each watcher, a snapshot of the store in pages (or a
//! resumed position), then the store's change feed, a heartbeat whenever a poll finds
//! nothing, and the end of the stream when the server shuts down. Guarded by the `[feed]`
//! credential: a bearer feed token (compared in constant time) or the admin port's
//! client-certificate check.

use super::convert::{change_to_wire, revocation_to_wire};
use super::pb::revocations_server::{Revocations, RevocationsServer};
use super::pb::{self, watch_event::Event};
use crate::admin::auth::bearer_matches;
use crate::clock::unix_now;
use crate::config::FeedAuth;
use crate::revocation::{ChangeBatch, FeedPosition, Revocation, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// How long one poll of the store waits for a change before a heartbeat is sent instead.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Events buffered per watcher (a snapshot page is one event).
const EVENTS_QUEUED: usize = 4;
/// Snapshot pages read from the store ahead of the one being sent.
const PAGES_QUEUED: usize = 2;

type Outgoing = Result<pb::WatchEvent, Status>;

/// `jwtrevoker.replication.v1.Revocations`, following `store` for each watcher.
#[derive(Clone)]
pub struct FeedService {
    store: Arc<dyn Store>,
    stop: watch::Receiver<bool>,
    heartbeat: Duration,
}

impl std::fmt::Debug for FeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedService")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// The service wrapped in its access check.
pub type GuardedFeed = InterceptedService<RevocationsServer<FeedService>, FeedAuthInterceptor>;

impl FeedService {
    /// A feed over `store`; every stream ends once `stop` turns true.
    pub fn new(store: Arc<dyn Store>, stop: watch::Receiver<bool>) -> Self {
        Self {
            store,
            stop,
            heartbeat: HEARTBEAT,
        }
    }

    /// The gRPC service, refusing callers without the `auth` credential.
    pub fn svc(self, auth: FeedAuth) -> GuardedFeed {
        RevocationsServer::with_interceptor(
            self,
            FeedAuthInterceptor {
                auth: Arc::new(auth),
            },
        )
    }
}

/// Refuses feed calls without the feed token (unless client certificates guard the feed).
#[derive(Clone, Debug)]
pub struct FeedAuthInterceptor {
    auth: Arc<FeedAuth>,
}

impl tonic::service::Interceptor for FeedAuthInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.auth.as_ref() {
            FeedAuth::ClientCert => Ok(request),
            FeedAuth::Token(expected) => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .map(|v| v.as_bytes());
                if bearer_matches(header, expected) {
                    Ok(request)
                } else {
                    tracing::warn!("feed watch refused: missing or wrong feed token");
                    Err(Status::unauthenticated(
                        "a valid feed bearer token is required",
                    ))
                }
            }
        }
    }
}

fn event(event: Event) -> Outgoing {
    Ok(pb::WatchEvent { event: Some(event) })
}

#[tonic::async_trait]
impl Revocations for FeedService {
    type WatchStream = ReceiverStream<Outgoing>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let resume = request.into_inner().resume_from;
        let (events, received) = mpsc::channel(EVENTS_QUEUED);
        let service = self.clone();
        tokio::spawn(async move {
            let mut stop = service.stop.clone();
            let stopped = tokio::select! {
                () = service.stream(resume, &events) => false,
                _ = stop.wait_for(|stop| *stop) => true,
            };
            if stopped {
                let shutting_down = Status::unavailable("the server is shutting down");
                let _ = events.send(Err(shutting_down)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(received)))
    }
}

impl FeedService {
    /// Streams to `events` until the watcher leaves, the store fails, or the position is lost.
    async fn stream(&self, resume: String, events: &mpsc::Sender<Outgoing>) {
        let mut position = if resume.is_empty() {
            match self.snapshot(events).await {
                Some(position) => position,
                None => return,
            }
        } else {
            FeedPosition(resume)
        };
        loop {
            let batch = tokio::select! {
                () = events.closed() => return,
                batch = self.store.changes(&position, self.heartbeat) => batch,
            };
            let sent = match batch {
                Ok(ChangeBatch::Changes(changes, next)) if changes.is_empty() => {
                    position = next;
                    events
                        .send(event(Event::Heartbeat(pb::Heartbeat {
                            position: position.0.clone(),
                        })))
                        .await
                }
                Ok(ChangeBatch::Changes(changes, next)) => {
                    position = next;
                    events
                        .send(event(Event::Changes(pb::Changes {
                            changes: changes.iter().map(change_to_wire).collect(),
                            position: position.0.clone(),
                        })))
                        .await
                }
                Ok(ChangeBatch::Gap) => {
                    let _ = events.send(event(Event::Reset(pb::Reset {}))).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "feed watch lost the store");
                    let _ = events
                        .send(Err(Status::unavailable(error.to_string())))
                        .await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// Sends a snapshot of the store, page by page, then its end; the position to tail from,
    /// or `None` when the watcher left or the store failed (the error is sent).
    async fn snapshot(&self, events: &mpsc::Sender<Outgoing>) -> Option<FeedPosition> {
        let (pages, mut received) = mpsc::channel::<Vec<Revocation>>(PAGES_QUEUED);
        let forward = {
            let events = events.clone();
            async move {
                while let Some(page) = received.recv().await {
                    let page = Event::SnapshotPage(pb::SnapshotPage {
                        revocations: page.iter().map(revocation_to_wire).collect(),
                    });
                    if events.send(event(page)).await.is_err() {
                        // Dropping `received` makes the snapshot stop.
                        return;
                    }
                }
            }
        };
        let (position, ()) = tokio::join!(self.store.snapshot(unix_now(), pages), forward);
        match position {
            Ok(position) => {
                let end = Event::SnapshotEnd(pb::SnapshotEnd {
                    position: position.0.clone(),
                });
                events.send(event(end)).await.ok()?;
                Some(position)
            }
            Err(error) => {
                tracing::warn!(%error, "feed watch cannot snapshot the store");
                let _ = events
                    .send(Err(Status::unavailable(error.to_string())))
                    .await;
                None
            }
        }
    }
}
