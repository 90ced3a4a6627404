//! The server side of the feed: for each watcher, a snapshot of the store in pages (or a
//! resumed position), then the changes this server's replica reads from the store (the
//! store is tailed once per server, however many watchers), a heartbeat whenever a poll
//! finds nothing, and the end of the stream when the server shuts down. Guarded by the `[feed]`
//! credential: a bearer feed token (compared in constant time) or the admin port's
//! client-certificate check.

use super::convert::{change_to_wire, revocation_to_wire};
use super::pb::revocations_server::{Revocations, RevocationsServer};
use super::pb::{self, watch_event::Event};
use crate::admin::auth::bearer_matches;
use crate::clock::unix_now;
use crate::config::FeedAuth;
use crate::revocation::{Change, ChangeBatch, FeedPosition, Followed, Replica, Revocation, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// Events buffered per watcher (a snapshot page is one event).
const EVENTS_QUEUED: usize = 4;
/// Snapshot pages read from the store ahead of the one being sent.
const PAGES_QUEUED: usize = 2;

type Outgoing = Result<pb::WatchEvent, Status>;

/// `jwtrevoker.replication.v1.Revocations`, following `store` for each watcher.
#[derive(Clone)]
pub struct FeedService {
    store: Arc<dyn Store>,
    replica: Arc<Replica>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for FeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedService").finish_non_exhaustive()
    }
}

/// The service wrapped in its access check.
pub type GuardedFeed = InterceptedService<RevocationsServer<FeedService>, FeedAuthInterceptor>;

impl FeedService {
    /// A feed of `store` as this server's `replica` follows it (its polls, at least once a
    /// second, are the watchers' heartbeats); every stream ends once `stop` turns true.
    pub fn new(store: Arc<dyn Store>, replica: Arc<Replica>, stop: watch::Receiver<bool>) -> Self {
        Self {
            store,
            replica,
            stop,
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

/// Changes as sent; none is a heartbeat.
fn changes_event(changes: &[Change], position: &FeedPosition) -> Outgoing {
    let position = position.0.clone();
    if changes.is_empty() {
        return event(Event::Heartbeat(pb::Heartbeat { position }));
    }
    event(Event::Changes(pb::Changes {
        changes: changes.iter().map(change_to_wire).collect(),
        position,
    }))
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
    /// Streams to `events` until the watcher leaves, the store fails, or the position is
    /// lost: a snapshot (or the resumed position), the store's changes since then, then what
    /// this server's replica reads from the store as it reads it. Subscribed to the replica
    /// first, so nothing falls between; a change may come twice, and applying is idempotent.
    async fn stream(&self, resume: String, events: &mpsc::Sender<Outgoing>) {
        let mut followed = self.replica.followed();
        let position = if resume.is_empty() {
            match self.snapshot(events).await {
                Some(position) => position,
                None => return,
            }
        } else {
            FeedPosition(resume)
        };
        let Some(mut position) = self.catch_up(position, events).await else {
            return;
        };
        loop {
            let next = tokio::select! {
                () = events.closed() => return,
                next = followed.recv() => next,
            };
            let sent = match next {
                Ok(Followed::Changes(changes, from, next)) if from == position => {
                    position = next;
                    events.send(changes_event(&changes, &position)).await
                }
                // A batch that does not start where this watcher stands (one it already read
                // while catching up, or one after a skipped batch), a reload of the replica
                // (after a gap, or its periodic resync), or a watcher that fell behind:
                // read from the store what follows this watcher's position, so that nothing
                // is sent twice or out of order (a repeated older delete could undo a newer
                // revocation) and nothing is skipped.
                Ok(Followed::Changes(..) | Followed::Reloaded(_))
                | Err(broadcast::error::RecvError::Lagged(_)) => {
                    match self.catch_up(position, events).await {
                        Some(caught_up) => {
                            position = caught_up;
                            Ok(())
                        }
                        None => return,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// Sends the store's changes after `position` until there are none; the position
    /// reached, or `None` when the stream ended (a reset or an error was sent).
    async fn catch_up(
        &self,
        mut position: FeedPosition,
        events: &mpsc::Sender<Outgoing>,
    ) -> Option<FeedPosition> {
        loop {
            match self.store.changes(&position, Duration::ZERO).await {
                Ok(ChangeBatch::Changes(changes, next)) => {
                    position = next;
                    events.send(changes_event(&changes, &position)).await.ok()?;
                    if changes.is_empty() {
                        return Some(position);
                    }
                }
                Ok(ChangeBatch::Gap) => {
                    let _ = events.send(event(Event::Reset(pb::Reset {}))).await;
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, "feed watch cannot read the store's changes");
                    let _ = events
                        .send(Err(Status::unavailable(error.to_string())))
                        .await;
                    return None;
                }
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

#[cfg(test)]
mod tests;
