//! The connection to Redis in each topology (one server, Sentinel, Cluster) behind one small
//! interface, so the store's scripts, feed and snapshot are written once.
//!
//! - Standalone: a [`ConnectionManager`] that reconnects to the one address by itself.
//! - Sentinel: a multiplexed connection to the master the sentinels name, forgotten on any
//!   sign that it is no longer the master (connection error, timeout, `READONLY`,
//!   `NOREPLICAS`, `MASTERDOWN`), so the next command asks the sentinels again. redis-rs has
//!   no failover-following manager for Sentinel (redis-rs issue #1438); this is it.
//! - Cluster: redis-rs's cluster connection, which follows slot moves and failovers itself.
//!
//! The blocking feed read gets a connection of its own in every topology: a blocked `XREAD`
//! would hold a multiplexed connection (and every command queued behind it).

use super::RedisOptions;
use crate::revocation::StoreError;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, TlsMode, Value,
};
use std::sync::Mutex;
use std::time::Duration;

/// How Redis is reached.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server at this URL (`redis://`, `rediss://`, `redis+unix://`).
    Standalone {
        /// The URL, password included.
        url: String,
    },
    /// The master that these sentinels name.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The master's name in Sentinel.
        master: String,
        /// The sentinels' password; else the first URL's.
        sentinel_password: Option<String>,
        /// The data nodes' password.
        password: Option<String>,
    },
    /// A Redis Cluster found from these seed nodes.
    Cluster {
        /// Seed nodes' URLs.
        nodes: Vec<String>,
        /// The nodes' password; else the URLs'.
        password: Option<String>,
    },
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

impl Topology {
    /// Where the data is, for logs: URLs with their passwords hidden.
    pub fn location(&self) -> String {
        let list = |urls: &[String]| urls.iter().map(|url| redact(url)).collect::<Vec<_>>();
        match self {
            Self::Standalone { url } => redact(url),
            Self::Sentinel {
                sentinels, master, ..
            } => format!("sentinel {master} via {}", list(sentinels).join(",")),
            Self::Cluster { nodes, .. } => format!("cluster via {}", list(nodes).join(",")),
        }
    }
}

/// One connection of any topology; cheap to clone (clones share the connection).
#[derive(Clone)]
pub(super) enum Conn {
    Manager(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(conn) => conn.req_packed_command(cmd),
            Self::Multiplexed(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(conn) => conn.get_db(),
            Self::Multiplexed(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The connections of one store.
// One per store, never moved around: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Link {
    Standalone {
        client: redis::Client,
        conn: ConnectionManager,
        options: ConnectionOptions,
    },
    Sentinel {
        /// Asked for the master; locked while asking, so one caller asks at a time.
        client: tokio::sync::Mutex<SentinelClient>,
        /// The master's connection while it is trusted.
        master: Mutex<Option<MultiplexedConnection>>,
        options: ConnectionOptions,
    },
    Cluster {
        /// Commands, with the configured response timeout.
        client: ClusterClient,
        /// Blocking feed reads, without a response timeout (each read sets its own bound).
        feed_client: ClusterClient,
        conn: tokio::sync::OnceCell<ClusterConnection>,
    },
}

/// Timeouts of the connections a link makes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionOptions {
    connection_timeout: Duration,
    response_timeout: Duration,
}

/// A cluster command's bound, failovers included (one takes ~2-3 s with
/// `cluster-node-timeout 1000`).
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a cluster feed read may block (the store bounds each read below this).
const CLUSTER_FEED_TIMEOUT: Duration = Duration::from_secs(330);

impl Link {
    /// Prepares the connections; nothing is connected yet, so an unreachable Redis is not an
    /// error here.
    pub(super) fn new(topology: &Topology, options: &RedisOptions) -> Result<Self, StoreError> {
        let location = topology.location();
        let bad = |err: RedisError| {
            StoreError::Internal(format!("invalid redis settings for {location}: {err}"))
        };
        let connection = ConnectionOptions {
            connection_timeout: options.connection_timeout,
            response_timeout: options.response_timeout,
        };
        Ok(match topology {
            Topology::Standalone { url } => {
                let client = redis::Client::open(url.as_str()).map_err(bad)?;
                let conn = client
                    .get_connection_manager_lazy(manager_config(
                        &connection,
                        Some(connection.response_timeout),
                    ))
                    .map_err(bad)?;
                Self::Standalone {
                    client,
                    conn,
                    options: connection,
                }
            }
            Topology::Sentinel {
                sentinels,
                master,
                sentinel_password,
                password,
            } => Self::Sentinel {
                client: tokio::sync::Mutex::new(
                    sentinel_client(sentinels, master, sentinel_password, password).map_err(bad)?,
                ),
                master: Mutex::new(None),
                options: connection,
            },
            Topology::Cluster { nodes, password } => {
                let builder = |response: Duration, overall: Duration| {
                    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                        .connection_timeout(connection.connection_timeout)
                        .response_timeout(response)
                        .overall_response_timeout(Some(overall));
                    if let Some(password) = password {
                        builder = builder.password(password.clone());
                    }
                    builder.build()
                };
                Self::Cluster {
                    client: builder(options.response_timeout, CLUSTER_OVERALL_TIMEOUT)
                        .map_err(bad)?,
                    feed_client: builder(CLUSTER_FEED_TIMEOUT, CLUSTER_FEED_TIMEOUT)
                        .map_err(bad)?,
                    conn: tokio::sync::OnceCell::new(),
                }
            }
        })
    }

    /// The shared connection for every command but the blocking feed read.
    pub(super) async fn command(&self) -> Result<Conn, RedisError> {
        match self {
            Self::Standalone { conn, .. } => Ok(Conn::Manager(conn.clone())),
            Self::Sentinel {
                client,
                master,
                options,
            } => {
                if let Some(conn) = lock(master).clone() {
                    return Ok(Conn::Multiplexed(conn));
                }
                let mut client = client.lock().await;
                // Another caller may have found the master while this one waited.
                if let Some(conn) = lock(master).clone() {
                    return Ok(Conn::Multiplexed(conn));
                }
                let conn =
                    connect_master(&mut client, options, Some(options.response_timeout)).await?;
                *lock(master) = Some(conn.clone());
                Ok(Conn::Multiplexed(conn))
            }
            Self::Cluster { client, conn, .. } => conn
                .get_or_try_init(|| client.get_async_connection())
                .await
                .cloned()
                .map(Conn::Cluster),
        }
    }

    /// A new connection of its own for the blocking feed read, without a response timeout.
    pub(super) async fn feed(&self) -> Result<Conn, RedisError> {
        match self {
            Self::Standalone {
                client, options, ..
            } => client
                .get_connection_manager_lazy(manager_config(options, None))
                .map(Conn::Manager),
            Self::Sentinel {
                client, options, ..
            } => {
                let mut client = client.lock().await;
                connect_master(&mut client, options, None)
                    .await
                    .map(Conn::Multiplexed)
            }
            Self::Cluster { feed_client, .. } => {
                feed_client.get_async_connection().await.map(Conn::Cluster)
            }
        }
    }

    /// After a command failed with `err` (`None`: it timed out): with Sentinel, forgets the
    /// master when the error says it may no longer be the master, so the next command asks
    /// the sentinels.
    pub(super) fn failed(&self, err: Option<&RedisError>) {
        if let Self::Sentinel { master, .. } = self
            && err.is_none_or(may_have_moved)
            && lock(master).take().is_some()
        {
            tracing::info!("redis master connection dropped: asking the sentinels again");
        }
    }
}

/// Connects to the master the sentinels name now (and that confirms it is the master).
async fn connect_master(
    client: &mut SentinelClient,
    options: &ConnectionOptions,
    response_timeout: Option<Duration>,
) -> Result<MultiplexedConnection, RedisError> {
    let master = client.async_get_client().await?;
    tracing::debug!(master = ?master.get_connection_info().addr(), "redis master named by sentinel");
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connection_timeout))
        .set_response_timeout(response_timeout);
    let mut conn = master
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // The sentinels may still name a demoted or restarted old master for a while: only a
    // node that says it is the master is used.
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
    if !matches!(role.first(), Some(Value::BulkString(role)) if role == b"master") {
        return Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "the node sentinel named is not a master (yet)",
        )));
    }
    Ok(conn)
}

/// Whether an error means the node may no longer be the master, or the connection is gone.
pub(super) fn may_have_moved(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
        || err.code() == Some("NOREPLICAS")
}

/// A Sentinel client for `master`, its sentinels' password from `sentinel_password` or their
/// URLs, the data nodes' from `password`; TLS to the data nodes when the sentinels use it.
fn sentinel_client(
    sentinels: &[String],
    master: &str,
    sentinel_password: &Option<String>,
    password: &Option<String>,
) -> Result<SentinelClient, RedisError> {
    let mut addrs = Vec::with_capacity(sentinels.len());
    let mut url_password = None;
    for url in sentinels {
        let info = url.as_str().into_connection_info()?;
        if url_password.is_none() {
            url_password = info.redis_settings().password().map(str::to_owned);
        }
        addrs.push(info.addr().clone());
    }
    let tls = addrs
        .iter()
        .any(|addr| matches!(addr, redis::ConnectionAddr::TcpTls { .. }));
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
    if let Some(password) = sentinel_password.as_ref().or(url_password.as_ref()) {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(password) = password {
        builder = builder.set_client_to_redis_password(password);
    }
    if tls {
        builder = builder
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_redis_tls_mode(TlsMode::Secure);
    }
    builder.build()
}

/// Reconnection settings: few quick retries, since every call has its own time budget.
fn manager_config(
    options: &ConnectionOptions,
    response_timeout: Option<Duration>,
) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connection_timeout))
        .set_response_timeout(response_timeout)
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The URL with any password replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "<redis url>".to_owned();
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable redis url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_hides_passwords() {
        assert_eq!(
            redact("redis://user:secret@127.0.0.1:6379/0"),
            "redis://user:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "<unparseable redis url>");
        let sentinel = Topology::Sentinel {
            sentinels: vec![
                "redis://:pw@127.0.0.1:1".into(),
                "redis://127.0.0.1:2".into(),
            ],
            master: "mymaster".into(),
            sentinel_password: Some("s".into()),
            password: Some("d".into()),
        };
        let shown = format!("{sentinel:?}");
        assert_eq!(
            shown,
            "sentinel mymaster via redis://:***@127.0.0.1:1,redis://127.0.0.1:2"
        );
        assert!(!shown.contains("pw") && !shown.contains("\"d\""));
    }

    #[test]
    fn errors_that_send_sentinel_users_back_to_the_sentinels() {
        let server = |kind, detail: &'static str| RedisError::from((kind, "x", detail.to_owned()));
        assert!(may_have_moved(&server(
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica."
        )));
        assert!(may_have_moved(&RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!may_have_moved(&server(
            ErrorKind::Server(ServerErrorKind::NoScript),
            "No matching script"
        )));
    }
}
