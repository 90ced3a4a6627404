//! The `[store]` section: the embedded store, or Redis as one server (`url`), behind Sentinel
//! (`sentinels`) or as a Cluster (`cluster_nodes`), with how many replicas must hold a write
//! before it is acknowledged. Passwords may come from files (`password_file`,
//! `sentinel_password_file`, e.g. a mounted Kubernetes Secret), read at start-up.

use super::{ConfigError, invalid, resolve};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[store]` section, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    url: Option<String>,
    data_dir: Option<PathBuf>,
    key_prefix: Option<String>,
    sentinels: Option<Vec<String>>,
    sentinel_master: Option<String>,
    sentinel_password: Option<String>,
    sentinel_password_file: Option<PathBuf>,
    cluster_nodes: Option<Vec<String>>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    min_replicas_acked: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    replication_timeout: Option<Duration>,
}

/// Where revocations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Redis, in one of its topologies.
    Redis(RedisConfig),
    /// The embedded durable file store in this directory.
    Embedded {
        /// The data directory.
        data_dir: PathBuf,
    },
}

/// The Redis store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// How Redis is reached.
    pub topology: RedisTopology,
    /// Key prefix (`store.key_prefix`).
    pub key_prefix: String,
    /// Replicas that must hold a write before it is acknowledged (`store.min_replicas_acked`).
    pub min_replicas_acked: u32,
    /// How long a write waits for them (`store.replication_timeout`).
    pub replication_timeout: Duration,
}

/// How Redis is reached: the store's own type (its `Debug` hides passwords), so that the
/// configuration is handed to the store as parsed.
pub use crate::store::redis::Topology as RedisTopology;

/// How long a write waits for its replicas unless `store.replication_timeout` says otherwise.
pub const DEFAULT_REPLICATION_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest `store.replication_timeout` accepted (a Revoke must still answer in time).
const MAX_REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Validates `[store]`; `url_override` is `--store-url` / `JWT_REVOKER_STORE_URL` (empty
/// means the embedded store).
pub(super) fn validate_store(
    raw: RawStore,
    base: &Path,
    url_override: Option<String>,
) -> Result<StoreConfig, ConfigError> {
    let url = url_override.or(raw.url).filter(|u| !u.is_empty());
    let password = secret(
        base,
        ("store.password", raw.password),
        ("store.password_file", raw.password_file),
    )?;
    let sentinel_password = secret(
        base,
        ("store.sentinel_password", raw.sentinel_password),
        ("store.sentinel_password_file", raw.sentinel_password_file),
    )?;
    let sentinels = raw.sentinels;
    let cluster = raw.cluster_nodes;
    let chosen: Vec<&str> = [
        url.as_ref().map(|_| "store.url"),
        sentinels.as_ref().map(|_| "store.sentinels"),
        cluster.as_ref().map(|_| "store.cluster_nodes"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if chosen.len() > 1 {
        return Err(invalid(
            chosen[1],
            format!(
                "cannot be combined with {}: set exactly one of store.url, store.sentinels, \
                 store.cluster_nodes",
                chosen[0]
            ),
        ));
    }
    let topology = match (url, sentinels, cluster) {
        (Some(url), None, None) => {
            check_url("store.url", &url)?;
            if let Some((_, key)) = &password {
                return Err(invalid(
                    *key,
                    "applies to store.sentinels and store.cluster_nodes; put the password in store.url",
                ));
            }
            Some(RedisTopology::Standalone { url })
        }
        (None, Some(sentinels), None) => {
            if sentinels.is_empty() {
                return Err(invalid(
                    "store.sentinels",
                    "must list at least one sentinel",
                ));
            }
            for (index, url) in sentinels.iter().enumerate() {
                check_url(&format!("store.sentinels[{index}]"), url)?;
            }
            let master = raw
                .sentinel_master
                .clone()
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "store.sentinel_master",
                        "is required with store.sentinels: the name Sentinel monitors the master under",
                    )
                })?;
            Some(RedisTopology::Sentinel {
                sentinels,
                master,
                sentinel_password: sentinel_password.clone().map(|(password, _)| password),
                password: password.clone().map(|(password, _)| password),
            })
        }
        (None, None, Some(nodes)) => {
            if nodes.is_empty() {
                return Err(invalid(
                    "store.cluster_nodes",
                    "must list at least one node",
                ));
            }
            for (index, url) in nodes.iter().enumerate() {
                check_url(&format!("store.cluster_nodes[{index}]"), url)?;
            }
            Some(RedisTopology::Cluster {
                nodes,
                password: password.clone().map(|(password, _)| password),
            })
        }
        _ => None,
    };
    if !matches!(topology, Some(RedisTopology::Sentinel { .. })) {
        if raw.sentinel_master.is_some() {
            return Err(invalid(
                "store.sentinel_master",
                "only applies with store.sentinels",
            ));
        }
        if let Some((_, key)) = &sentinel_password {
            return Err(invalid(*key, "only applies with store.sentinels"));
        }
    }
    let Some(topology) = topology else {
        for (set, key) in [
            (raw.key_prefix.is_some(), "store.key_prefix"),
            (
                password.is_some(),
                password.as_ref().map_or("store.password", |(_, key)| *key),
            ),
            (raw.min_replicas_acked.is_some(), "store.min_replicas_acked"),
            (
                raw.replication_timeout.is_some(),
                "store.replication_timeout",
            ),
        ] {
            if set {
                return Err(invalid(
                    key,
                    "only applies to Redis (store.url, store.sentinels or store.cluster_nodes)",
                ));
            }
        }
        let data_dir = resolve(base, raw.data_dir.unwrap_or_else(|| PathBuf::from("data")));
        return Ok(StoreConfig::Embedded { data_dir });
    };
    if raw.data_dir.is_some() {
        return Err(invalid(
            "store.data_dir",
            "only applies to the embedded store",
        ));
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "jwt-revoker".to_owned());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
        return Err(invalid(
            "store.key_prefix",
            "must be non-empty and contain no braces",
        ));
    }
    let min_replicas_acked = raw.min_replicas_acked.unwrap_or(match topology {
        RedisTopology::Standalone { .. } => 0,
        RedisTopology::Sentinel { .. } | RedisTopology::Cluster { .. } => 1,
    });
    let replication_timeout = raw
        .replication_timeout
        .unwrap_or(DEFAULT_REPLICATION_TIMEOUT);
    // `WAIT n 0` would wait forever: whole milliseconds only.
    if replication_timeout.as_millis() == 0 || replication_timeout > MAX_REPLICATION_TIMEOUT {
        return Err(invalid(
            "store.replication_timeout",
            format!("must be at least 1ms and at most {MAX_REPLICATION_TIMEOUT:?}"),
        ));
    }
    Ok(StoreConfig::Redis(RedisConfig {
        topology,
        key_prefix,
        min_replicas_acked,
        replication_timeout,
    }))
}

/// A password given inline or in a file (read now, surrounding whitespace dropped), with the
/// key it came from; both at once, an unreadable file or an empty password is an error
/// naming the key.
fn secret(
    base: &Path,
    (key, inline): (&'static str, Option<String>),
    (file_key, file): (&'static str, Option<PathBuf>),
) -> Result<Option<(String, &'static str)>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(
            file_key,
            format!("cannot be combined with {key}: set one of them"),
        )),
        (Some(password), None) => Ok(Some((password, key))),
        (None, Some(file)) => {
            let file = resolve(base, file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", file.display())))?;
            let password = text.trim();
            if password.is_empty() {
                return Err(invalid(file_key, format!("{} is empty", file.display())));
            }
            Ok(Some((password.to_owned(), file_key)))
        }
        (None, None) => Ok(None),
    }
}

/// Checks a Redis URL's scheme and syntax.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(invalid(
            key,
            "must start with redis:// or rediss:// (or be absent for the embedded store)",
        ));
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| invalid(key, format!("not a valid Redis URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> Result<StoreConfig, ConfigError> {
        let raw: RawStore = toml::from_str(text).expect("toml");
        validate_store(raw, Path::new("/etc/jr"), None)
    }

    fn redis(text: &str) -> RedisConfig {
        match store(text).expect("valid") {
            StoreConfig::Redis(redis) => redis,
            other => panic!("not redis: {other:?}"),
        }
    }

    fn refused_key(text: &str) -> String {
        match store(text).expect_err("refused") {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("not an invalid key: {other}"),
        }
    }

    #[test]
    fn each_topology_is_read_with_its_defaults() {
        let standalone = redis("url = \"redis://127.0.0.1:6379\"");
        assert_eq!(standalone.min_replicas_acked, 0);
        assert_eq!(standalone.replication_timeout, DEFAULT_REPLICATION_TIMEOUT);
        let sentinel = redis(
            "sentinels = [\"redis://127.0.0.1:26379\", \"redis://:pw@127.0.0.1:26380\"]\n\
             sentinel_master = \"mymaster\"\nsentinel_password = \"s\"\npassword = \"d\"\n\
             replication_timeout = \"250ms\"",
        );
        assert_eq!(sentinel.min_replicas_acked, 1);
        assert_eq!(sentinel.replication_timeout, Duration::from_millis(250));
        assert_eq!(
            sentinel.topology,
            RedisTopology::Sentinel {
                sentinels: vec![
                    "redis://127.0.0.1:26379".into(),
                    "redis://:pw@127.0.0.1:26380".into()
                ],
                master: "mymaster".into(),
                sentinel_password: Some("s".into()),
                password: Some("d".into()),
            }
        );
        let cluster = redis("cluster_nodes = [\"redis://127.0.0.1:7000\"]\nmin_replicas_acked = 2");
        assert_eq!(cluster.min_replicas_acked, 2);
        assert!(matches!(cluster.topology, RedisTopology::Cluster { .. }));
        let standalone_acked = redis("url = \"redis://127.0.0.1:6379\"\nmin_replicas_acked = 1");
        assert_eq!(standalone_acked.min_replicas_acked, 1);
    }

    #[test]
    fn bad_combinations_name_the_key() {
        let cases = [
            (
                "url = \"redis://a:1\"\nsentinels = [\"redis://b:2\"]\nsentinel_master = \"m\"",
                "store.sentinels",
            ),
            (
                "url = \"redis://a:1\"\ncluster_nodes = [\"redis://b:2\"]",
                "store.cluster_nodes",
            ),
            (
                "sentinels = [\"redis://b:2\"]\ncluster_nodes = [\"redis://b:2\"]",
                "store.cluster_nodes",
            ),
            ("sentinels = [\"redis://b:2\"]", "store.sentinel_master"),
            ("sentinels = []\nsentinel_master = \"m\"", "store.sentinels"),
            ("sentinel_master = \"m\"", "store.sentinel_master"),
            (
                "cluster_nodes = [\"redis://b:2\"]\nsentinel_password = \"x\"",
                "store.sentinel_password",
            ),
            (
                "sentinels = [\"http://b:2\"]\nsentinel_master = \"m\"",
                "store.sentinels[0]",
            ),
            (
                "cluster_nodes = [\"redis://b:2\", \"tcp://c\"]",
                "store.cluster_nodes[1]",
            ),
            ("url = \"redis://a:1\"\npassword = \"x\"", "store.password"),
            ("min_replicas_acked = 1", "store.min_replicas_acked"),
            ("replication_timeout = \"1s\"", "store.replication_timeout"),
            (
                "url = \"redis://a:1\"\nreplication_timeout = \"0s\"",
                "store.replication_timeout",
            ),
            (
                "url = \"redis://a:1\"\nreplication_timeout = \"1h\"",
                "store.replication_timeout",
            ),
            ("url = \"redis://a:1\"\ndata_dir = \"x\"", "store.data_dir"),
            (
                "cluster_nodes = [\"redis://b:2\"]\nkey_prefix = \"{x}\"",
                "store.key_prefix",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(refused_key(text), key, "{text}");
        }
    }

    #[test]
    fn passwords_can_come_from_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("data"), "d-secret\n").expect("write");
        std::fs::write(dir.path().join("sentinel"), "s-secret").expect("write");
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        let parse = |text: &str| {
            let raw: RawStore = toml::from_str(text).expect("toml");
            validate_store(raw, dir.path(), None)
        };
        let sentinels = "sentinels = [\"redis://s:26379\"]\nsentinel_master = \"m\"\n";
        let config = parse(&format!(
            "{sentinels}password_file = \"data\"\nsentinel_password_file = \"sentinel\""
        ));
        assert!(
            matches!(
                config,
                Ok(StoreConfig::Redis(RedisConfig {
                    topology: RedisTopology::Sentinel { ref password, ref sentinel_password, .. },
                    ..
                })) if password.as_deref() == Some("d-secret")
                    && sentinel_password.as_deref() == Some("s-secret")
            ),
            "{config:?}"
        );
        let cluster = parse("cluster_nodes = [\"redis://c:1\"]\npassword_file = \"data\"");
        assert!(
            matches!(
                cluster,
                Ok(StoreConfig::Redis(RedisConfig {
                    topology: RedisTopology::Cluster { ref password, .. },
                    ..
                })) if password.as_deref() == Some("d-secret")
            ),
            "{cluster:?}"
        );
        for (text, key) in [
            (
                format!("{sentinels}password = \"x\"\npassword_file = \"data\""),
                "store.password_file",
            ),
            (
                format!("{sentinels}sentinel_password_file = \"missing\""),
                "store.sentinel_password_file",
            ),
            (
                format!("{sentinels}password_file = \"empty\""),
                "store.password_file",
            ),
            (
                "url = \"redis://a:1\"\npassword_file = \"data\"".to_owned(),
                "store.password_file",
            ),
            (
                "cluster_nodes = [\"redis://c:1\"]\nsentinel_password_file = \"data\"".to_owned(),
                "store.sentinel_password_file",
            ),
            ("password_file = \"data\"".to_owned(), "store.password_file"),
        ] {
            match parse(&text) {
                Err(ConfigError::Invalid { key: refused, .. }) => {
                    assert_eq!(refused, key, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_url_override_replaces_the_file_and_may_not_meet_another_topology() {
        let raw: RawStore = toml::from_str("url = \"redis://a:1\"").expect("toml");
        let config = validate_store(raw, Path::new("/"), Some("redis://b:2".into())).expect("ok");
        assert!(
            matches!(config, StoreConfig::Redis(RedisConfig { topology: RedisTopology::Standalone { ref url }, .. }) if url == "redis://b:2")
        );
        let raw: RawStore = toml::from_str("cluster_nodes = [\"redis://a:1\"]").expect("toml");
        let err =
            validate_store(raw, Path::new("/"), Some("redis://b:2".into())).expect_err("refused");
        assert!(err.to_string().contains("store.cluster_nodes"), "{err}");
    }
}
