//! Wires everything together for `serve`: the store, the key sets, the replica and its
//! follower, the Check service on the authorization port, the admin API on the admin port,
//! gRPC health on both (reflecting the replica's sync state), and graceful shutdown.

use crate::admin::{AdminService, Revoker, pb as admin_pb};
use crate::authz::{AuthzService, Decider};
use crate::config::{AdminAuth, Config, StoreConfig};
use crate::revocation::{Replica, ReplicaHealth, Store, StoreError};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::token::{KeyError, VerifiedCache, Verifier};
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the revocation store: {0}")]
    Store(#[from] StoreError),
    /// An issuer's keys could not be loaded.
    #[error("cannot load issuer keys: {0}")]
    Keys(#[from] KeyError),
    /// A gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// The authorization (ext_authz Check) port.
    pub authz: TcpListener,
    /// The admin API port.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        Ok(Self {
            authz: bind(config.authz_addr).await?,
            admin: bind(config.admin_addr).await?,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Opens the configured store.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Redis { url, key_prefix } => {
            Arc::new(RedisStore::connect(url, key_prefix, RedisOptions::default()).await?)
        }
        StoreConfig::Embedded { data_dir } => Arc::new(EmbeddedStore::open(data_dir)?),
    })
}

const AUTHZ_SERVICE: &str = <AuthorizationServer<AuthzService> as NamedService>::NAME;
const ADMIN_SERVICE: &str =
    <admin_pb::revocation_admin_server::RevocationAdminServer<AdminService> as NamedService>::NAME;

/// Runs the server on `listeners` until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    tracing::info!(store = store.kind(), location = %store.location(), "revocation store");
    let verifier =
        Arc::new(Verifier::new(&config.issuers, config.leeway, config.max_token_bytes).await?);
    let replica = Arc::new(Replica::new(config.replica.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let follower = tokio::spawn(Arc::clone(&replica).follow(Arc::clone(&store), stop_rx.clone()));

    let (reporter, health) = tonic_health::server::health_reporter();
    let health_watch = {
        let reporter = reporter.clone();
        let (status_tx, mut status_rx) = watch::channel(ReplicaHealth::Starting);
        let watcher = tokio::spawn(Arc::clone(&replica).watch_health(
            move |health| {
                status_tx.send_replace(health);
            },
            stop_rx.clone(),
        ));
        let updater = tokio::spawn(async move {
            loop {
                let health = *status_rx.borrow_and_update();
                let status = if health.serving() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", status).await;
                reporter.set_service_status(AUTHZ_SERVICE, status).await;
                if status_rx.changed().await.is_err() {
                    return;
                }
            }
        });
        (watcher, updater)
    };
    reporter
        .set_service_status(ADMIN_SERVICE, ServingStatus::Serving)
        .await;

    let cache = VerifiedCache::new(config.cache_max_entries, config.leeway);
    let decider = Arc::new(Decider::new(
        Arc::clone(&verifier),
        cache,
        Arc::clone(&replica),
        config.token_sources.clone(),
        config.max_token_bytes,
    ));
    let authz = AuthzService::new(decider, config.response.clone());
    let revoker = Arc::new(Revoker::new(
        Arc::clone(&store),
        Arc::clone(&replica),
        verifier,
        config.issuers.iter().map(|i| i.issuer.clone()),
        config.max_token_lifetime,
        config.leeway,
    ));
    if matches!(config.admin, AdminAuth::Open) {
        tracing::warn!(
            "THE ADMIN API IS OPEN: anyone who can reach {} can revoke and unrevoke tokens \
             (admin.allow_unauthenticated = true)",
            config.admin_addr
        );
    }
    let admin = AdminService::new(revoker).svc(config.admin.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(admin_pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let authz_addr = listeners.authz.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    tracing::info!(?authz_addr, ?admin_addr, "listening");

    // With an incoming stream, tonic ignores the builder's `tcp_nodelay`: set it on the
    // stream, or Nagle's algorithm holds a response's last frame until the peer's delayed
    // ACK (40 ms) whenever a connection is not busy.
    let incoming = |listener| TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let authz_server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health.clone())
        .add_service(authz.svc())
        .serve_with_incoming_shutdown(incoming(listeners.authz), signal(stop_rx.clone()));
    let admin_server = Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming(listeners.admin), signal(stop_rx.clone()));

    let servers = async {
        tokio::try_join!(authz_server, admin_server)?;
        Ok::<(), ServerError>(())
    };
    tokio::pin!(servers);
    let result = tokio::select! {
        result = &mut servers => result,
        () = shutdown => {
            tracing::info!("shutting down: draining in-flight requests");
            stop_tx.send_replace(true);
            servers.await
        }
    };
    stop_tx.send_replace(true);
    let _ = follower.await;
    let _ = health_watch.0.await;
    health_watch.1.abort();
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
