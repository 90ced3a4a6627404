//! Redis topologies of real `redis-server` processes on free 127.0.0.1 ports, for one test:
//! [`ReplicatedPair`] (a master and a replica), [`SentinelSet`] (a master, two replicas and
//! three sentinels, `down-after-milliseconds 1000`) and [`RedisCluster`] (three masters with one or two replicas each,
//! `cluster-node-timeout 1000`). Every node keeps an append-only file in its own temp dir, is awaited by polling,
//! and is killed (SIGKILL, by pid) and reaped on drop.

#![allow(dead_code)]

use super::redis::command_on;
use super::{kill_and_reap, wait_until};
use jwt_revoker::store::redis::Topology;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How long a topology may take to form (sync, discovery, cluster creation).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// The master's name in Sentinel.
pub const MASTER_NAME: &str = "mymaster";

/// One `redis-server` (data node or sentinel).
#[derive(Debug)]
pub struct RedisNode {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: TempDir,
    /// The arguments it was started with, to restart it the same way.
    argv: Vec<String>,
}

impl RedisNode {
    /// Starts `redis-server` with `args` on a free port, waiting until it answers `PING`.
    /// With `config`, a sentinel with that config file (sentinels rewrite theirs); with
    /// `cluster_bus`, its cluster bus on another free port (the default, port + 10000, may
    /// not exist).
    fn start(args: &[&str], config: Option<&dyn Fn(u16) -> String>, cluster_bus: bool) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = TempDir::new().expect("create a temp dir for redis");
            let port = free_port();
            let mut argv = Vec::new();
            if let Some(config) = config {
                let file = dir.path().join("sentinel.conf");
                std::fs::write(&file, config(port)).expect("write the sentinel config");
                argv.push(file.display().to_string());
                argv.push("--sentinel".to_owned());
            }
            argv.extend(["--port".to_owned(), port.to_string()]);
            argv.extend(["--bind".to_owned(), "127.0.0.1".to_owned()]);
            argv.extend(args.iter().map(|arg| (*arg).to_owned()));
            if cluster_bus {
                argv.extend(["--cluster-port".to_owned(), free_port().to_string()]);
            }
            argv.extend(["--dir".to_owned(), dir.path().display().to_string()]);
            argv.extend([
                "--logfile".to_owned(),
                dir.path().join("redis.log").display().to_string(),
            ]);
            let mut node = Self {
                child: None,
                port,
                dir,
                argv,
            };
            node.spawn();
            match node.wait_ready() {
                Ok(()) => return node,
                Err(err) => last_error = err,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run redis-server: {err}"));
        self.child = Some(child);
    }

    /// Starts it again after [`kill`](Self::kill), same port, same data (its append-only
    /// file), waiting until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready()
            .unwrap_or_else(|err| panic!("redis-server restart: {err}"));
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        for _ in 0..500 {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            if command_on(self.port, &[b"PING"]).is_ok_and(|reply| reply == b"+PONG\r\n") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_and_reap(&mut self.child);
        Err(format!(
            "no PONG on port {}; log:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Runs a command; its reply as text (RESP, lossy UTF-8), or the I/O error's text.
    pub fn command(&self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        match command_on(self.port, &args) {
            Ok(reply) => String::from_utf8_lossy(&reply).into_owned(),
            Err(err) => format!("-IOERR {err}"),
        }
    }

    /// One field of `INFO <section>`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.command(&["INFO", section]);
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Settings every data node gets: durable, fast first sync.
const DATA_NODE: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--repl-diskless-sync-delay",
    "0",
];

/// A master and one replica, no Sentinel (plain replication, e.g. a managed primary with a
/// replica behind one endpoint).
#[derive(Debug)]
pub struct ReplicatedPair {
    /// The master.
    pub master: RedisNode,
    /// Its replica; [`RedisNode::restart`] brings it back as the master's replica.
    pub replica: RedisNode,
}

impl ReplicatedPair {
    /// Starts both and waits until the replica is in sync.
    pub fn start() -> Self {
        let master = RedisNode::start(DATA_NODE, None, false);
        let replicaof = master.port.to_string();
        let mut replica_args = DATA_NODE.to_vec();
        replica_args.extend(["--replicaof", "127.0.0.1", &replicaof]);
        let replica = RedisNode::start(&replica_args, None, false);
        let pair = Self { master, replica };
        pair.wait_in_sync();
        pair
    }

    /// Waits until the replica's link to the master is up and the master counts it.
    pub fn wait_in_sync(&self) {
        wait_until("the replica to sync", FORM_TIMEOUT, |last| {
            let link = self.replica.info_field("replication", "master_link_status");
            let connected = self.master.info_field("replication", "connected_slaves");
            *last = format!("link {link:?}, master counts {connected:?}");
            (link.as_deref() == Some("up") && connected.as_deref() == Some("1")).then_some(())
        });
    }
}

/// A master, two replicas and three sentinels.
#[derive(Debug)]
pub struct SentinelSet {
    /// The data nodes; `data[0]` was the first master.
    pub data: Vec<RedisNode>,
    /// The sentinels.
    pub sentinels: Vec<RedisNode>,
}

impl SentinelSet {
    /// Starts the set and waits until both replicas are in sync and every sentinel knows the
    /// master, both replicas and the other two sentinels (so a failover can happen).
    pub fn start() -> Self {
        let master = RedisNode::start(DATA_NODE, None, false);
        let replicaof = master.port.to_string();
        let mut replica_args = DATA_NODE.to_vec();
        replica_args.extend(["--replicaof", "127.0.0.1", &replicaof]);
        let data = vec![
            master,
            RedisNode::start(&replica_args, None, false),
            RedisNode::start(&replica_args, None, false),
        ];
        let master_port = data[0].port;
        let config = move |port: u16| {
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 2000\n"
            )
        };
        let sentinels = (0..3)
            .map(|_| RedisNode::start(&[], Some(&config), false))
            .collect();
        let set = Self { data, sentinels };
        set.wait_formed();
        set
    }

    fn wait_formed(&self) {
        wait_until("the sentinel set to form", FORM_TIMEOUT, |last| {
            for replica in self.replicas() {
                let link = replica.info_field("replication", "master_link_status");
                if link.as_deref() != Some("up") {
                    *last = format!("replica {} link {link:?}", replica.port);
                    return None;
                }
            }
            for sentinel in &self.sentinels {
                let info = sentinel.command(&["INFO", "sentinel"]);
                let line = info
                    .lines()
                    .find(|line| line.starts_with("master0:"))
                    .unwrap_or("");
                if !(line.contains("status=ok")
                    && line.contains("slaves=2")
                    && line.contains("sentinels=3"))
                {
                    *last = format!("sentinel {}: {line}", sentinel.port);
                    return None;
                }
            }
            Some(())
        });
    }

    /// The data nodes that are replicas now.
    pub fn replicas(&self) -> impl Iterator<Item = &RedisNode> {
        self.data.iter().filter(|node| {
            node.is_running() && node.info_field("replication", "role").as_deref() == Some("slave")
        })
    }

    /// The sentinels' URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisNode::url).collect()
    }

    /// The store's topology.
    pub fn topology(&self) -> Topology {
        Topology::Sentinel {
            sentinels: self.sentinel_urls(),
            master: MASTER_NAME.to_owned(),
            sentinel_password: None,
            password: None,
        }
    }

    /// The index in `data` of the node the sentinels name as master now.
    pub fn master_index(&self) -> Option<usize> {
        let reply = self.sentinels.iter().find(|s| s.is_running())?.command(&[
            "SENTINEL",
            "get-master-addr-by-name",
            MASTER_NAME,
        ]);
        let port: u16 = reply.lines().nth(4)?.trim().parse().ok()?;
        self.data.iter().position(|node| node.port == port)
    }

    /// The master, as the sentinels name it.
    pub fn master(&self) -> &RedisNode {
        &self.data[self.master_index().expect("sentinels name a master")]
    }

    /// Waits until the sentinels name a running master other than `data[old]` that has
    /// `replicas` replicas in sync.
    pub fn wait_failed_over(&self, old: usize, replicas: usize) -> usize {
        wait_until("the failover", FORM_TIMEOUT, |last| {
            let index = self.master_index()?;
            let master = &self.data[index];
            let connected = master.info_field("replication", "connected_slaves");
            *last = format!("master {index}, connected replicas {connected:?}");
            (index != old
                && master.info_field("replication", "role").as_deref() == Some("master")
                && connected.and_then(|n| n.parse::<usize>().ok()) >= Some(replicas))
            .then_some(index)
        })
    }
}

/// Three masters, each with one or two replicas.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, in the order given to `redis-cli --cluster create`.
    pub nodes: Vec<RedisNode>,
}

impl RedisCluster {
    /// Starts six nodes (three masters, one replica each), creates the cluster and waits
    /// until every node says `cluster_state:ok` and every replica is in sync.
    pub fn start() -> Self {
        Self::start_with_replicas(1)
    }

    /// Starts three masters with `replicas` replicas each, creates the cluster and waits
    /// until every node says `cluster_state:ok` and every replica is in sync. With two, a
    /// promoted replica still has one of its own (the other one follows it).
    pub fn start_with_replicas(replicas: usize) -> Self {
        let mut args = DATA_NODE.to_vec();
        args.extend([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
        ]);
        let nodes: Vec<RedisNode> = (0..3 * (1 + replicas))
            .map(|_| RedisNode::start(&args, None, true))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_formed();
        cluster
    }

    fn wait_formed(&self) {
        wait_until("the cluster to form", FORM_TIMEOUT, |last| {
            for node in self.nodes.iter().filter(|node| node.is_running()) {
                let state = node.info_field("cluster", "cluster_state");
                let cluster_info = node.command(&["CLUSTER", "INFO"]);
                if !cluster_info.contains("cluster_state:ok") {
                    *last = format!("node {}: {state:?}", node.port);
                    return None;
                }
                if node.info_field("replication", "role").as_deref() == Some("slave")
                    && node
                        .info_field("replication", "master_link_status")
                        .as_deref()
                        != Some("up")
                {
                    *last = format!("replica {} not in sync", node.port);
                    return None;
                }
            }
            Some(())
        });
    }

    /// The seed nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }

    /// The store's topology.
    pub fn topology(&self) -> Topology {
        Topology::Cluster {
            nodes: self.urls(),
            password: None,
        }
    }

    /// The index in `nodes` of the master that owns `key`'s slot now (asked of a running
    /// node).
    pub fn owner_of(&self, key: &str) -> Option<usize> {
        let asked = self.nodes.iter().find(|node| node.is_running())?;
        let slot: u16 = asked
            .command(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .trim_start_matches(':')
            .parse()
            .ok()?;
        let listing = asked.command(&["CLUSTER", "NODES"]);
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let owns = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-').filter_map(|n| n.parse::<u16>().ok());
                match (bounds.next(), bounds.next()) {
                    (Some(low), Some(high)) => (low..=high).contains(&slot),
                    (Some(only), None) => only == slot,
                    _ => false,
                }
            });
            if owns {
                return self.nodes.iter().position(|node| node.port == port);
            }
        }
        None
    }

    /// Waits until another running node owns `key`'s slot than `nodes[old]`, every running
    /// node says `cluster_state:ok`; returns the new owner.
    pub fn wait_failed_over(&self, key: &str, old: usize) -> usize {
        wait_until("the cluster failover", FORM_TIMEOUT, |last| {
            let owner = self.owner_of(key);
            *last = format!("owner {owner:?}");
            let owner = owner.filter(|&owner| owner != old && self.nodes[owner].is_running())?;
            let ok = self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .all(|node| {
                    node.command(&["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                });
            ok.then_some(owner)
        })
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port on 127.0.0.1")
}
