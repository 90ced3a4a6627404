//! Wires everything together for `serve`: the store, the key sets, the replica and its
//! follower, the Check service on the authorization port, the admin API on the admin port,
//! gRPC health and reflection on both (health reflecting the replica's sync state), TLS
//! where configured, the metrics registry and the metrics port (`/metrics`, `/readyz`,
//! `/livez`), and graceful shutdown.

use crate::admin::{AdminService, Revoker, http as admin_http, pb as admin_pb};
use crate::authz::{AuthzService, Decider, LogoutRoutes};
use crate::config::{AdminAuth, Config, PortTls, StoreConfig};
use crate::metrics::replica::ReplicaCollector;
use crate::metrics::{AdminRpcLayer, CheckMetrics, MeteredStore};
use crate::not_found::UnknownPaths;
use crate::replication::FeedService;
use crate::report::error_chain;
use crate::revocation::{Replica, ReplicaHealth, Store, StoreError};
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::redis::{RedisOptions, RedisStore};
use crate::tls;
use crate::token::{KeyError, VerifiedCache, Verifier};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;
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
    /// A port's TLS certificate, key or client CA is unusable.
    #[error("cannot use the TLS files of the {port} port ({files}): {detail}")]
    Tls {
        /// `authz` or `admin`.
        port: &'static str,
        /// The files, as configured.
        files: String,
        /// Why.
        detail: String,
    },
    /// The metrics endpoint failed.
    #[error("metrics endpoint error: {0}")]
    Metrics(std::io::Error),
    /// A Shared Signals stream could not be set up.
    #[error("cannot set up a shared signals stream: {0}")]
    Ssf(#[from] crate::ssf::setup::SetupError),
}

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    /// The authorization (ext_authz Check) port.
    pub authz: TcpListener,
    /// The admin API port.
    pub admin: TcpListener,
    /// The Prometheus `/metrics` port.
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        Ok(Self {
            authz: bind(config.authz_addr).await?,
            admin: bind(config.admin_addr).await?,
            metrics: bind(config.metrics_addr).await?,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Opens the configured store; it counts the unreadable entries it skips in
/// `skipped_entries`.
pub async fn open_store(
    config: &StoreConfig,
    skipped_entries: Counter,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Redis(redis) => {
            let options = RedisOptions {
                skipped_entries,
                min_replicas_acked: redis.min_replicas_acked,
                replication_timeout: redis.replication_timeout,
                ..RedisOptions::default()
            };
            Arc::new(RedisStore::connect_to(&redis.topology, &redis.key_prefix, options).await?)
        }
        StoreConfig::Embedded { data_dir } => {
            let options = EmbeddedOptions {
                skipped_entries,
                ..EmbeddedOptions::default()
            };
            Arc::new(EmbeddedStore::open_with(data_dir, options)?)
        }
    })
}

/// The rustls settings of a port with TLS, offering `alpn`; `None` without TLS.
fn port_tls(
    port: &'static str,
    tls: Option<&PortTls>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    tls::server_config(tls, alpn).map(Some).map_err(|error| {
        let mut files = format!(
            "cert_file {}, key_file {}",
            tls.identity.cert.path.display(),
            tls.identity.key.path.display()
        );
        if let Some(ca) = &tls.client_ca {
            files.push_str(&format!(", client_ca_file {}", ca.path.display()));
        }
        ServerError::Tls {
            port,
            files,
            detail: error_chain(&error),
        }
    })
}

/// A gRPC server running until its shutdown signal.
type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves `router` on `listener` until `$signal`: over TLS, terminated by [`tls::incoming`]
/// (ALPN and handshake deadline ours, not tonic's), when `$tls` is set; else plaintext.
macro_rules! serve {
    ($router:expr, $listener:expr, $port:literal, $tls:expr, $signal:expr) => {{
        let serving: Serving = match $tls {
            Some(config) => Box::pin($router.serve_with_incoming_shutdown(
                tls::incoming($listener, config, $port, tls::HANDSHAKE_TIMEOUT),
                $signal,
            )),
            // With an incoming stream tonic ignores the builder's `tcp_nodelay`: set it here,
            // or Nagle's algorithm holds a response's last frame until the peer's delayed ACK
            // (40 ms) whenever a connection is not busy.
            None => Box::pin($router.serve_with_incoming_shutdown(
                TcpIncoming::from($listener).with_nodelay(Some(true)),
                $signal,
            )),
        };
        serving
    }};
}

const AUTHZ_SERVICE: &str = crate::authz::grpc::SERVICE_NAME;
const ADMIN_SERVICE: &str =
    <admin_pb::revocation_admin_server::RevocationAdminServer<AdminService> as NamedService>::NAME;

/// Runs the server on `listeners` until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    // Unusable TLS files stop start-up before anything else is opened.
    let authz_tls = port_tls("authz", config.tls.authz.as_ref(), tls::ALPN_H2)?;
    let admin_tls = port_tls("admin", config.tls.admin.as_ref(), tls::ALPN_H2_HTTP1)?;
    let verifier = Arc::new(
        Verifier::new(
            &config.issuers,
            config.leeway,
            config.max_token_bytes,
            config.max_token_lifetime,
        )
        .await?,
    );
    let mut registry = Registry::default();
    let skipped_entries = crate::metrics::store::skipped_entries(&mut registry);
    let store = open_store(&config.store, skipped_entries).await?;
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store, &mut registry));
    tracing::info!(store = store.kind(), location = %store.location(), "revocation store");
    let replica = Arc::new(Replica::new(config.replica.clone()));
    ReplicaCollector::register(Arc::clone(&replica), &mut registry);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Set on SIGTERM: readiness and gRPC health say NOT_SERVING while requests are still
    // served for `shutdown_grace`, so load balancers move away before the ports close.
    let (draining_tx, draining_rx) = watch::channel(false);

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
        let mut draining = draining_rx.clone();
        let updater = tokio::spawn(async move {
            loop {
                let health = *status_rx.borrow_and_update();
                let status = if health.serving() && !*draining.borrow_and_update() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", status).await;
                reporter.set_service_status(AUTHZ_SERVICE, status).await;
                let changed = tokio::select! {
                    changed = status_rx.changed() => changed,
                    changed = draining.changed() => changed,
                };
                if changed.is_err() {
                    return;
                }
            }
        });
        (watcher, updater)
    };
    reporter
        .set_service_status(ADMIN_SERVICE, ServingStatus::Serving)
        .await;

    let cache = VerifiedCache::new(
        config.cache_max_entries,
        config.cache_max_bytes,
        config.leeway,
    );
    let decider = Arc::new(Decider::new(
        Arc::clone(&verifier),
        cache,
        Arc::clone(&replica),
        config.token_sources.clone(),
        config.max_token_bytes,
    ));
    crate::metrics::cache::CacheCollector::register(Arc::clone(&decider), &mut registry);
    let authz = AuthzService::new(decider, config.response.clone())
        .with_metrics(CheckMetrics::register(&mut registry));
    let revoker = Arc::new(
        Revoker::new(
            Arc::clone(&store),
            Arc::clone(&replica),
            verifier,
            config.issuers.iter().map(|i| i.issuer.clone()),
            config.max_token_lifetime,
            config.leeway,
        )
        .with_revocable_claims(
            config
                .issuers
                .iter()
                .map(|i| (i.issuer.clone(), i.revocable_claims.clone())),
        ),
    );
    let admin_mtls = config
        .tls
        .admin
        .as_ref()
        .is_some_and(|tls| tls.client_ca.is_some());
    if matches!(config.admin, AdminAuth::Open) && !admin_mtls {
        tracing::warn!(
            "THE ADMIN API IS OPEN: anyone who can reach {} can revoke and unrevoke tokens \
             (admin.allow_unauthenticated = true)",
            config.admin_addr
        );
    }
    let authz = if config.logout_routes.is_empty() {
        authz
    } else {
        authz.with_logout_routes(LogoutRoutes::new(
            config.logout_routes.clone(),
            Arc::clone(&revoker),
        ))
    };
    let ssf_metrics = crate::ssf::metrics::SsfMetrics::register(&mut registry);
    let receiver =
        Arc::new(crate::ssf::setup::build(&config.ssf, Arc::clone(&revoker), ssf_metrics).await?);
    crate::ssf::metrics::StreamCollector::register(Arc::clone(&receiver), &mut registry);
    let mut pollers = crate::ssf::setup::spawn_pollers(&config.ssf, &receiver, &stop_rx);
    pollers.extend(crate::ssf::setup::spawn_management(
        &config.ssf,
        &receiver,
        &stop_rx,
    ));
    // A health service per stream (`jwtrevoker.ssf.<stream>`); "" and Check ignore streams.
    pollers.extend(crate::ssf::health::spawn(&receiver, &reporter, &stop_rx).await);
    let admin_http = admin_http::router(
        Arc::clone(&revoker),
        config.admin.clone(),
        config.backchannel_audiences.clone(),
    )
    .merge(crate::admin::ssf_push::router(Arc::clone(&receiver)));
    let admin_http = match crate::ssf::setup::build_gtr(
        &config.ssf,
        config.admin.clone(),
        Arc::clone(&revoker),
        config.leeway,
    )
    .await?
    {
        Some(gtr) => admin_http.merge(crate::admin::gtr::router(Arc::new(gtr))),
        None => admin_http,
    };
    let admin = AdminService::new(revoker)
        .with_streams(Arc::clone(&receiver))
        .svc(config.admin.clone());
    let admin_rpcs = AdminRpcLayer::register(&mut registry);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(admin_pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // envoy-types ships no descriptor set for Envoy's protos, so the authorization port's
    // reflection lists grpc.health.v1.Health and the reflection service itself.
    let authz_reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let authz_addr = listeners.authz.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    let metrics_addr = listeners.metrics.local_addr().ok();
    tracing::info!(
        ?authz_addr,
        ?admin_addr,
        ?metrics_addr,
        authz_tls = config.tls.authz.is_some(),
        admin_tls = config.tls.admin.is_some(),
        admin_mtls,
        "listening"
    );

    let signal = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    // Both ports answer 404 to a request that is not gRPC, on a path no service serves; the
    // authorization port also accepts HTTP/1.1, so that such a request gets that answer.
    let unknown_paths = UnknownPaths::register(&mut registry);
    let authz_router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .accept_http1(true)
        .layer(unknown_paths.port("authz"))
        .add_service(health.clone())
        .add_service(authz_reflection)
        .add_service(authz.svc());
    let authz_server = serve!(
        authz_router,
        listeners.authz,
        "authz",
        authz_tls,
        signal(stop_rx.clone())
    );
    // The admin port also speaks HTTP/1.1, for the RFC 7009 and back-channel logout endpoints.
    let admin_routes = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(admin);
    // The revocation feed for in-process enforcers, only with a `[feed]` credential.
    let admin_routes = match config.feed.clone() {
        Some(auth) => admin_routes.add_service(
            FeedService::new(Arc::clone(&store), Arc::clone(&replica), stop_rx.clone()).svc(auth),
        ),
        None => admin_routes,
    };
    let admin_routes = admin_routes.into_axum_router().merge(admin_http);
    let admin_router = Server::builder()
        .accept_http1(true)
        .layer(admin_rpcs)
        .layer(unknown_paths.port("admin"))
        .add_routes(admin_routes.into());
    let admin_server = serve!(
        admin_router,
        listeners.admin,
        "admin",
        admin_tls,
        signal(stop_rx.clone())
    );

    let metrics_server = crate::metrics::http::serve(
        listeners.metrics,
        Arc::new(registry),
        Arc::clone(&replica),
        draining_rx,
        signal(stop_rx.clone()),
    );

    let servers = async {
        tokio::try_join!(
            async { authz_server.await.map_err(ServerError::from) },
            async { admin_server.await.map_err(ServerError::from) },
            async { metrics_server.await.map_err(ServerError::Metrics) },
        )?;
        Ok::<(), ServerError>(())
    };
    tokio::pin!(servers);
    let result = tokio::select! {
        result = &mut servers => result,
        () = shutdown => {
            draining_tx.send_replace(true);
            tracing::info!(grace = ?config.shutdown_grace,
                "shutting down: not ready any more, still serving for the grace period");
            tokio::select! {
                result = &mut servers => result,
                () = tokio::time::sleep(config.shutdown_grace) => {
                    tracing::info!("shutting down: draining in-flight requests");
                    stop_tx.send_replace(true);
                    servers.await
                }
            }
        }
    };
    stop_tx.send_replace(true);
    let _ = follower.await;
    for poller in pollers {
        let _ = poller.await;
    }
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
