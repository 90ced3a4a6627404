//! A watcher relays the replica's batches in order and once: a batch that does not start at
//! the watcher's position (one it already read from the store while catching up) is never
//! relayed; the watcher reads what follows its own position from the store instead. Driven
//! step by step through a real embedded store and the replica's broadcast, without timing.

use super::*;
use crate::clock::unix_now;
use crate::config::{ReplicaConfig, StalePolicy};
use crate::replication::convert::change_from_wire;
use crate::revocation::{RevocationKey, RevocationKind};
use crate::store::EmbeddedStore;
use std::collections::BTreeSet;

/// The bound on waiting for an event the watcher sends (it never needs nearly as long).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn key(id: &str) -> RevocationKey {
    RevocationKey::new("https://idp", RevocationKind::Token, id).expect("key")
}

fn revocation(id: &str) -> Revocation {
    let now = unix_now();
    Revocation::new(key(id), now, now + 3600, "test").expect("revocation")
}

/// The next event the watcher sent.
async fn next_event(events: &mut mpsc::Receiver<Outgoing>) -> Event {
    tokio::time::timeout(EVENT_TIMEOUT, events.recv())
        .await
        .expect("the watcher sends an event")
        .expect("the stream is open")
        .expect("not an error")
        .event
        .expect("an event")
}

/// What a follower of the stream holds: the revoked ids, and the position it stands at.
#[derive(Default)]
struct View {
    revoked: BTreeSet<String>,
    position: String,
}

impl View {
    /// Applies one event; returns the changes it carried (`+id` revoked, `-id` removed).
    fn apply(&mut self, event: Event) -> Vec<String> {
        match event {
            Event::Changes(batch) => {
                self.position = batch.position;
                let changes = batch
                    .changes
                    .into_iter()
                    .map(|change| change_from_wire(change).expect("a valid change"));
                changes
                    .map(|change| match change {
                        Change::Put(revocation) => {
                            self.revoked.insert(revocation.key.id.clone());
                            format!("+{}", revocation.key.id)
                        }
                        Change::Delete(key) => {
                            self.revoked.remove(&key.id);
                            format!("-{}", key.id)
                        }
                    })
                    .collect()
            }
            Event::Heartbeat(beat) => {
                self.position = beat.position;
                Vec::new()
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// The batch the store holds after `from`, read as the replica's follower reads it.
async fn batch_after(store: &EmbeddedStore, from: &FeedPosition) -> (Vec<Change>, FeedPosition) {
    match store.changes(from, Duration::ZERO).await.expect("changes") {
        ChangeBatch::Changes(changes, next) => (changes, next),
        ChangeBatch::Gap => panic!("a gap"),
    }
}

#[tokio::test]
async fn a_batch_the_watcher_already_read_is_neither_relayed_again_nor_after_a_newer_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open the store"));
    let (pages, _pages) = mpsc::channel(16);
    let start = store.snapshot(unix_now(), pages).await.expect("snapshot");

    // x revoked, unrevoked, revoked again: three batches, as the replica's follower reads them.
    store
        .insert(&revocation("x"), unix_now())
        .await
        .expect("revoke x");
    let (put, p1) = batch_after(&store, &start).await;
    store
        .remove(&key("x"), unix_now())
        .await
        .expect("unrevoke x");
    let (delete, p2) = batch_after(&store, &p1).await;
    store
        .insert(&revocation("x"), unix_now())
        .await
        .expect("revoke x again");
    let (put_again, p3) = batch_after(&store, &p2).await;
    assert_eq!(
        (put.len(), delete.len(), put_again.len()),
        (1, 1, 1),
        "one change per batch"
    );

    let replica = Arc::new(Replica::new(ReplicaConfig {
        max_staleness: Duration::from_secs(30),
        stale_policy: StalePolicy::Deny,
        resync_interval: Duration::from_secs(600),
    }));
    let (_stop, stop) = watch::channel(false);
    let service = FeedService::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&replica),
        stop,
    );
    let (sender, mut events) = mpsc::channel(EVENTS_QUEUED);
    let resume = start.0.clone();
    let watcher = tokio::spawn(async move { service.stream(resume, &sender).await });

    // The watcher catches up from the store to x revoked (a heartbeat says it is done).
    let mut view = View::default();
    let mut caught_up = Vec::new();
    loop {
        let event = next_event(&mut events).await;
        let heartbeat = matches!(event, Event::Heartbeat(_));
        caught_up.extend(view.apply(event));
        if heartbeat {
            break;
        }
    }
    assert_eq!(caught_up, ["+x", "-x", "+x"]);
    assert_eq!(view.position, p3.0);
    assert!(view.revoked.contains("x"));

    // The replica, behind the watcher, now relays the batches the watcher has read: the
    // delete must not undo the newer revocation, and nothing is sent twice. (The watcher
    // subscribed before catching up, so it receives these in this order.)
    for (changes, from, next) in [
        (put, start.clone(), p1.clone()),
        (delete, p1.clone(), p2.clone()),
        (put_again, p2.clone(), p3.clone()),
    ] {
        replica.publish_followed(Followed::Changes(changes.into(), from, next));
        let relayed = view.apply(next_event(&mut events).await);
        assert_eq!(
            relayed,
            Vec::<String>::new(),
            "a batch already read was relayed again"
        );
        assert!(
            view.revoked.contains("x"),
            "an older batch undid x's revocation"
        );
        assert_eq!(view.position, p3.0);
    }

    // A batch that starts where the watcher stands is relayed as it is, once.
    store
        .insert(&revocation("y"), unix_now())
        .await
        .expect("revoke y");
    let (put_y, p4) = batch_after(&store, &p3).await;
    let fresh = Followed::Changes(put_y.into(), p3.clone(), p4.clone());
    replica.publish_followed(fresh.clone());
    assert_eq!(view.apply(next_event(&mut events).await), ["+y"]);
    assert_eq!(view.position, p4.0);
    replica.publish_followed(fresh);
    assert_eq!(
        view.apply(next_event(&mut events).await),
        Vec::<String>::new()
    );
    assert_eq!(
        view.revoked,
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );

    drop(events);
    tokio::time::timeout(EVENT_TIMEOUT, watcher)
        .await
        .expect("the watcher ends once its stream is dropped")
        .expect("the watcher does not panic");
}
