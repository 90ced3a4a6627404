//! The revocation feed (`jwtrevoker.replication.v1.Revocations/Watch`) against a real
//! jwt-revoker: never served without `[feed]`, refused without the feed token, a snapshot
//! then changes as they happen, resumable from a position, a reset for a lost position.

mod support;

use jwt_revoker::replication::{FeedFollower, FollowerOptions};
use jwt_revoker::revocation::{Change, ChangeBatch, FeedPosition, RevocationKind, Store};
use std::time::{Duration, Instant};
use support::server::ServerProcess;
use support::tokens;
use tokio::sync::mpsc;

const FEED_TOKEN: &str = "feed-token-0123456789abcdef";

fn feed_server() -> (ServerProcess, tempfile::TempDir) {
    feed_server_on(ServerProcess::builder())
}

fn feed_server_on(builder: support::server::ServerBuilder) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("feed-token");
    std::fs::write(&token_file, FEED_TOKEN).expect("write the feed token");
    let server = builder
        .extra_toml(&format!(
            "[feed]\ntoken_file = {}",
            toml::Value::String(token_file.display().to_string())
        ))
        .start();
    (server, dir)
}

fn follower(server: &ServerProcess, token: Option<&str>) -> FeedFollower {
    FeedFollower::new(&FollowerOptions {
        endpoints: vec![server.admin_url()],
        token: token.map(str::to_owned),
        tls: None,
    })
    .expect("follower")
}

/// Takes a snapshot; returns how many revocations it held and the position.
async fn snapshot(follower: &FeedFollower) -> Result<(usize, FeedPosition), String> {
    let (pages, mut received) = mpsc::channel(4);
    let counting = tokio::spawn(async move {
        let mut count = 0;
        while let Some(page) = received.recv().await {
            count += Vec::len(&page);
        }
        count
    });
    let position = follower
        .snapshot(tokens::now(), pages)
        .await
        .map_err(|e| e.to_string())?;
    Ok((counting.await.expect("count"), position))
}

/// Reads batches until one holds a change; returns it, the new position and how long it took.
async fn next_change(
    follower: &FeedFollower,
    mut position: FeedPosition,
) -> (Vec<Change>, FeedPosition, Duration) {
    let started = Instant::now();
    loop {
        match follower.changes(&position, Duration::from_secs(1)).await {
            Ok(ChangeBatch::Changes(changes, next)) if !changes.is_empty() => {
                return (changes, next, started.elapsed());
            }
            Ok(ChangeBatch::Changes(_, next)) => position = next,
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no change arrived"
        );
    }
}

async fn cli(server: &ServerProcess, args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let admin = server.admin_url();
    let token = support::server::admin_token();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_jwt-revoker"))
            .args(&args)
            .args(["--admin-addr", &admin])
            .env("JWT_REVOKER_ADMIN_TOKEN", token)
            .output()
            .expect("run the CLI");
        assert!(output.status.success(), "{output:?}");
    })
    .await
    .expect("cli");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_every_change_as_it_happens_then_resume_and_reset() {
    let (server, _dir) = feed_server();
    cli(
        &server,
        &["revoke", "--subject", "ann", "--issuer", tokens::ISSUER],
    )
    .await;
    let feed = follower(&server, Some(FEED_TOKEN));
    let (count, position) = snapshot(&feed).await.expect("snapshot");
    assert_eq!(count, 1);

    cli(
        &server,
        &["revoke", "--session", "s-1", "--issuer", tokens::ISSUER],
    )
    .await;
    let (changes, after_put, took) = next_change(&feed, position.clone()).await;
    eprintln!("a change reached the follower {took:?} after the CLI returned");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let [Change::Put(put)] = changes.as_slice() else {
        panic!("expected one put: {changes:?}");
    };
    assert_eq!(
        (put.key.kind, put.key.id.as_str()),
        (RevocationKind::Session, "s-1")
    );

    // A new follower resumes from the position after the put: it gets the delete only.
    cli(
        &server,
        &["unrevoke", "--session", "s-1", "--issuer", tokens::ISSUER],
    )
    .await;
    let resumed = follower(&server, Some(FEED_TOKEN));
    let (changes, _, _) = next_change(&resumed, after_put).await;
    assert!(
        matches!(changes.as_slice(), [Change::Delete(key)] if key.id == "s-1"),
        "{changes:?}"
    );

    // A position the server does not hold: a reset, so the follower re-snapshots.
    let lost = follower(&server, Some(FEED_TOKEN));
    let answer = lost
        .changes(&FeedPosition("nonsense".to_owned()), Duration::from_secs(1))
        .await;
    assert!(matches!(answer, Ok(ChangeBatch::Gap)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_needs_its_token_and_is_not_served_without_a_feed_section() {
    let (server, _dir) = feed_server();
    for token in [None, Some("wrong-token-0123456789abcdef")] {
        let refused = snapshot(&follower(&server, token))
            .await
            .expect_err("refused");
        assert!(refused.contains("refused us"), "{refused}");
    }
    let plain = ServerProcess::start();
    let missing = snapshot(&follower(&plain, Some(FEED_TOKEN)))
        .await
        .expect_err("no feed");
    assert!(missing.contains("revocation feed"), "{missing}");
}

/// On Redis, where the store has one feed connection: many watchers still get each change
/// at once, because the server tails the store once and relays what its replica reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_on_redis_each_get_a_change_at_once() {
    let redis = support::redis::RedisProcess::start();
    let (server, _dir) = feed_server_on(ServerProcess::builder().redis(&redis.url()));
    let mut watchers = Vec::new();
    for _ in 0..4 {
        let feed = follower(&server, Some(FEED_TOKEN));
        let (_, position) = snapshot(&feed).await.expect("snapshot");
        watchers.push((feed, position));
    }
    for round in 0..3 {
        let session = format!("redis-s-{round}");
        cli(
            &server,
            &["revoke", "--session", &session, "--issuer", tokens::ISSUER],
        )
        .await;
        for (feed, position) in &mut watchers {
            let (changes, next, took) = next_change(feed, position.clone()).await;
            assert!(took < Duration::from_millis(500), "took {took:?}");
            assert!(
                matches!(changes.as_slice(), [Change::Put(put)] if put.key.id == session),
                "{changes:?}"
            );
            *position = next;
        }
    }
}
