//! The feed thread: one per filter config (one per Envoy process and filter), with its own
//! single-threaded tokio runtime, keeping a [`Replica`] current by following a jwt-revoker
//! feed exactly as a jwt-revoker server follows its store. Stopped and joined on drop.

use jwt_revoker::config::ReplicaConfig;
use jwt_revoker::replication::follower::FollowerError;
use jwt_revoker::replication::{FeedFollower, FollowerOptions};
use jwt_revoker::revocation::Replica;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// Why the feed thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The feed settings are unusable.
    #[error(transparent)]
    Follower(#[from] FollowerError),
    /// The thread or its runtime could not be created.
    #[error("cannot start the feed thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A replica and the thread that keeps it current.
#[derive(Debug)]
pub struct Feed {
    replica: Arc<Replica>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// Starts following `options` with the staleness rules of `replica`.
    pub fn start(options: &FollowerOptions, replica: ReplicaConfig) -> Result<Self, FeedError> {
        log_to_stderr();
        let follower = Arc::new(FeedFollower::new(options)?);
        let replica = Arc::new(Replica::new(replica));
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("jwt-revoker-feed")
            .build()?;
        let following = Arc::clone(&replica);
        let thread = std::thread::Builder::new()
            .name("jwt-revoker-feed".to_owned())
            .spawn(move || {
                runtime.block_on(following.follow(follower, stopped));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self {
            replica,
            stop,
            thread: Some(thread),
        })
    }

    /// The replica the thread keeps current.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends the feed's logs (snapshot loads, a refused token, going stale and back) to Envoy's
/// stderr, filtered by `JWT_REVOKER_ENVOY_LOG` (default `info`); once per process, and not
/// at all if the process already has a `tracing` subscriber.
fn log_to_stderr() {
    let filter = std::env::var("JWT_REVOKER_ENVOY_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
