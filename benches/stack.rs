//! The whole-stack benchmarks, run by `benches/run.sh` after the release build and the
//! criterion benchmark: every process is real and on 127.0.0.1, every load is bounded in
//! count and time, and the results are printed as Markdown tables (and written to
//! `target/bench-results.md`).
//!
//! 1. Memory per revocation: the in-memory `RevocationSet` at 1,000,000 entries (RSS of
//!    this process before and after), and the RSS of a `jwt-revoker serve` holding them.
//! 2. Snapshot load time of 1,000,000 revocations from the embedded store and from Redis.
//!    Then the verified-token cache: RSS of a server with the default `[cache]` limits after
//!    100,000 distinct valid tokens, each checked twice (section `cache`).
//! 3. gRPC load (`examples/check_load.rs`) on the always-allow server
//!    (`examples/allow_all.rs`), on jwt-revoker with no revocations and with 1,000,000:
//!    checks/s, p50/p99, server CPU per Check; Redis commands issued during it.
//! 4. Through Envoy with `wrk`: direct response, `jwt_authn`, ext_authz → always-allow,
//!    ext_authz → jwt-revoker (with and without the claims in dynamic metadata), all with
//!    the same token.
//! 5. Propagation: three replicas on one Redis; time from `Revoke` returning OK until all
//!    three deny the token, over 1,000 revocations; then the same on Sentinel (a master,
//!    two replicas, three sentinels) and on Cluster (3 + 3) with `min_replicas_acked = 1`,
//!    with the `Revoke` call's own latency, whose difference from one Redis is what `WAIT`
//!    costs (sections `propagation-sentinel`, `propagation-cluster`).
//! 6. The Envoy dynamic module (`benches/stack/envoy_module.rs`): `jwt_authn` + module with 0
//!    and 1,000,000 revocations against `jwt_authn` alone and ext_authz, Envoy memory per
//!    revocation, propagation to Envoy.
//! 7. Event-to-deny: the same, from an SSF push (a CAEP session-revoked SET posted to
//!    `/ssf/push/{stream}`) being sent until all three deny the session's token.
//!
//! Run: `benches/run.sh` (it builds what this needs). Alone: `cargo bench --bench stack`
//! after `cargo build --release --bin jwt-revoker --examples` and
//! `cargo build --release -p jwt-revoker-envoy`.

#[path = "stack/envoy_module.rs"]
mod envoy_module;
mod support;

/// The Sentinel and Cluster topologies of the tests (`tests/support/redis_ha.rs`).
#[path = "../tests/support"]
mod test_support {
    pub mod redis;
    pub mod redis_ha;

    /// Kills (SIGKILL) and reaps `child`, if it is still held.
    pub fn kill_and_reap(child: &mut Option<std::process::Child>) {
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to `child` with kill(1).
    pub fn send_signal(child: &std::process::Child, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
    }

    /// Polls `probe` until it returns `Some`, panicking after `timeout`.
    pub fn wait_until<T>(
        what: &str,
        timeout: std::time::Duration,
        mut probe: impl FnMut(&mut String) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            if let Some(value) = probe(&mut last_error) {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last error: {last_error}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

use anyhow::{Context, Result, bail, ensure};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jsonwebtoken::Algorithm;
use jwt_revoker::admin::pb::revocation_admin_client::RevocationAdminClient;
use jwt_revoker::admin::pb::{RevokeRequest, revoke_request};
use jwt_revoker::revocation::RevocationSet;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

const MILLION: usize = 1_000_000;
/// Rounds of each load measurement, interleaved between the targets; medians are reported.
const ROUNDS: usize = 3;
/// Length of one gRPC load round and of one wrk round.
const ROUND: Duration = Duration::from_secs(5);
/// Most checks in one gRPC load round.
const ROUND_REQUESTS: u64 = 1_000_000;
const PROPAGATIONS: usize = 1000;
/// Longest the propagation measurement may take in all.
const PROPAGATION_BUDGET: Duration = Duration::from_secs(150);
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// One section of the benchmark: its Markdown output.
type Section = fn(&Bins) -> Result<String>;

/// The sections, each run unless arguments name some of them
/// (`cargo bench --bench stack -- grpc envoy`).
const SECTIONS: [(&str, Section); 9] = [
    ("memory", memory_and_load),
    ("cache", cache_memory),
    ("grpc", grpc_load),
    ("envoy", through_envoy),
    ("propagation", propagation),
    ("module", envoy_module::module),
    ("propagation-sentinel", propagation_sentinel),
    ("propagation-cluster", propagation_cluster),
    ("signals", push_propagation),
];

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; other arguments select sections.
    let selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let started = Instant::now();
    let bins = Bins::find()?;
    let mut report = String::new();
    let mut out = |text: &str| {
        print!("{text}");
        report.push_str(text);
    };
    out(&machine()?);
    out(&decide_table()?);
    for (name, section) in SECTIONS {
        if selected.is_empty() || selected.iter().any(|s| s == name) {
            out(&section(&bins)?);
        }
    }
    out(&format!(
        "\nWhole run (after the build): {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    let path = support::repo_root().join("target/bench-results.md");
    std::fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// The release binaries this needs.
struct Bins {
    server: PathBuf,
    allow_all: PathBuf,
    check_load: PathBuf,
    envoy: PathBuf,
}

impl Bins {
    fn find() -> Result<Self> {
        // This runs as target/release/deps/stack-<hash>.
        let exe = std::env::current_exe()?;
        let release = exe
            .parent()
            .and_then(Path::parent)
            .context("cannot find target/release")?;
        let envoy = std::env::var_os("ENVOY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| support::repo_root().join(".venv/bin/envoy"));
        let bins = Self {
            server: release.join("jwt-revoker"),
            allow_all: release.join("examples/allow_all"),
            check_load: release.join("examples/check_load"),
            envoy,
        };
        for bin in [&bins.server, &bins.allow_all, &bins.check_load, &bins.envoy] {
            ensure!(
                bin.is_file(),
                "{} is missing: run benches/run.sh, which builds everything",
                bin.display()
            );
        }
        Ok(bins)
    }
}

/// A child process, killed and reaped on drop.
struct Process {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Result<Self> {
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails (with its log) if the process has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}:\n{}", self.name, self.log());
        }
        Ok(())
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> Result<u64> {
        rss_of(&format!("/proc/{}/status", self.pid()))
    }

    /// CPU time used so far (user + system, all threads).
    fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name, which is in parentheses: utime is field 14.
        let after = stat.rsplit_once(") ").context("bad /proc stat")?.1;
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_millis(ticks * 1000 / clock_ticks()?))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> Result<u64> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

fn rss_of(status_file: &str) -> Result<u64> {
    let status = std::fs::read_to_string(status_file)?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Polls `ready` every 20 ms until it returns true, for at most `timeout`.
fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A `redis-server` on a free port, without persistence.
struct Redis {
    /// Killed on drop.
    _process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        let mut process = Process::spawn("redis-server", &mut command, dir.path().join("log"))?;
        wait_for("redis-server", Duration::from_secs(10), || {
            process.alive()?;
            Ok(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok())
        })?;
        Ok(Self {
            _process: process,
            port,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }

    /// Writes `count` revocations the way the Redis store does (hash, expiry and key index).
    fn fill(&self, count: usize, now: u64) -> Result<()> {
        let mut conn = self.connection()?;
        let prefix = "{jwt-revoker}";
        for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                let revocation = support::revocation(i, now);
                let key = revocation.key.encode();
                pipe.cmd("HSET")
                    .arg(format!("{prefix}:rev"))
                    .arg(&key)
                    .arg(serde_json::to_string(&revocation)?)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(format!("{prefix}:exp"))
                    .arg(revocation.expires_at)
                    .arg(&key)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(format!("{prefix}:idx"))
                    .arg(0)
                    .arg(&key)
                    .ignore();
            }
            pipe.query::<()>(&mut conn)?;
        }
        Ok(())
    }

    /// Calls so far per command, from `INFO commandstats`.
    fn command_calls(&self) -> Result<BTreeMap<String, u64>> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection()?)?;
        Ok(info
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect())
    }
}

/// A `jwt-revoker serve` on free ports, trusting the fixture issuer.
struct Server {
    process: Process,
    authz: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server whose `[store]` table holds the TOML `store` (which may open further
    /// tables after it).
    fn start(bins: &Bins, store: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (authz, admin, metrics) = (free_port()?, free_port()?, free_port()?);
        let config = support::config_toml(&format!(
            "authz_addr = \"127.0.0.1:{authz}\"\nadmin_addr = \"127.0.0.1:{admin}\"\n\
             metrics_addr = \"127.0.0.1:{metrics}\"\nlog_level = \"info\"\n[store]\n{store}\n"
        ));
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config)?;
        let mut command = Command::new(&bins.server);
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("JWT_REVOKER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("RUST_LOG");
        let process = Process::spawn("jwt-revoker", &mut command, dir.path().join("log"))?;
        let mut server = Self {
            process,
            authz,
            admin,
            _dir: dir,
        };
        let runtime = runtime()?;
        wait_for("jwt-revoker SERVING", Duration::from_secs(300), || {
            server.process.alive()?;
            Ok(runtime.block_on(serving(server.authz)))
        })?;
        Ok(server)
    }

    fn redis(bins: &Bins, redis: &Redis) -> Result<Self> {
        Self::start(bins, &format!("url = \"{}\"", redis.url()))
    }

    /// A server on Redis that puts every claim into the allow's dynamic metadata (the
    /// default before `response.dynamic_metadata` took a list).
    fn redis_with_every_claim(bins: &Bins, redis: &Redis) -> Result<Self> {
        Self::start(
            bins,
            &format!(
                "url = \"{}\"\n[response]\ndynamic_metadata = true",
                redis.url()
            ),
        )
    }

    /// The snapshot load time it logged for `revocations` revocations.
    fn snapshot_load(&self, revocations: usize) -> Result<Duration> {
        let log = strip_ansi(&self.process.log());
        let line = log
            .lines()
            .find(|line| {
                line.contains("replica loaded a snapshot")
                    && line.contains(&format!("revocations={revocations} "))
            })
            .with_context(|| format!("no snapshot line in the log:\n{log}"))?;
        let ms: u64 = line
            .split("elapsed_ms=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("no elapsed_ms")?
            .parse()?;
        Ok(Duration::from_millis(ms))
    }
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Whether gRPC health on `port` says SERVING.
async fn serving(port: u16) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let check = async {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()?;
        Some(response.into_inner().status == ServingStatus::Serving as i32)
    };
    tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn machine() -> Result<String> {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")?;
    let model = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    Ok(format!(
        "Machine: {cpus} CPUs ({model}); load average at start: {}\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

/// The criterion results of `benches/decide.rs` (run just before), as a table.
fn decide_table() -> Result<String> {
    let root = support::repo_root().join("target/criterion/check");
    let median = |id: &str| -> Result<f64> {
        let path = root.join(id.replace('/', "_")).join("new/estimates.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: run `cargo bench --bench decide` first", path.display())
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        json["median"]["point_estimate"]
            .as_f64()
            .context("no median in estimates.json")
    };
    let mut table = String::from(
        "\n### Check decision (criterion, `Decider::decide`, median)\n\n\
         | token | cache | 0 revocations | 1M revocations | 1M / 0 |\n\
         |---|---|---|---|---|\n",
    );
    for alg in ["RS256", "ES256", "EdDSA"] {
        for cache in ["cached", "changed", "uncached"] {
            let none = median(&format!("{cache}/{alg}/0"))?;
            let million = median(&format!("{cache}/{alg}/1M"))?;
            writeln!(
                table,
                "| {alg} | {cache} | {} | {} | {:.2}× |",
                nanos(none),
                nanos(million),
                million / none
            )?;
        }
    }
    Ok(table)
}

fn nanos(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn memory_and_load(bins: &Bins) -> Result<String> {
    let now = support::unix_now();
    // The set alone, built from revocations made one at a time (as a snapshot is applied).
    let before = rss_of("/proc/self/status")?;
    let set =
        RevocationSet::from_revocations((0..MILLION).map(|i| support::revocation(i, now)), now);
    let after = rss_of("/proc/self/status")?;
    ensure!(set.len() == MILLION, "the set lost revocations");
    let set_bytes = after.saturating_sub(before) as f64 / MILLION as f64;
    drop(set);

    let empty_dir = tempfile::tempdir()?;
    let empty = Server::start(
        bins,
        &format!("data_dir = \"{}\"", empty_dir.path().display()),
    )?;
    let baseline = empty.process.rss()?;
    drop(empty);

    let embedded_dir = tempfile::tempdir()?;
    support::write_embedded(embedded_dir.path(), MILLION, now);
    let embedded = Server::start(
        bins,
        &format!("data_dir = \"{}\"", embedded_dir.path().display()),
    )?;
    let embedded_load = embedded.snapshot_load(MILLION)?;
    let embedded_rss = embedded.process.rss()?;
    drop(embedded);

    let redis = Redis::start()?;
    redis.fill(MILLION, now)?;
    let server = Server::redis(bins, &redis)?;
    let redis_load = server.snapshot_load(MILLION)?;
    let redis_rss = server.process.rss()?;
    drop(server);

    let per = |rss: u64| rss.saturating_sub(baseline) as f64 / MILLION as f64;
    Ok(format!(
        "\n### Memory and snapshot load, 1,000,000 revocations \
         (70% token, 10% each session, subject, client)\n\n\
         | measure | value |\n|---|---|\n\
         | `RevocationSet` alone: RSS growth per revocation | {set_bytes:.0} B |\n\
         | `jwt-revoker serve`, embedded store: RSS over an empty server, per revocation | {:.0} B |\n\
         | `jwt-revoker serve`, Redis store: RSS over an empty server, per revocation | {:.0} B |\n\
         | snapshot load, embedded store (read + build the set) | {:.2} s |\n\
         | snapshot load, Redis store (HSCAN + build the set) | {:.2} s |\n",
        per(embedded_rss),
        per(redis_rss),
        embedded_load.as_secs_f64(),
        redis_load.as_secs_f64(),
    ))
}

/// Distinct tokens driven through the verified-token cache.
const CACHE_TOKENS: usize = 100_000;

/// RSS of a server with the default cache limits before and after [`CACHE_TOKENS`] distinct
/// valid tokens (EdDSA: cheap to sign), each checked twice.
fn cache_memory(bins: &Bins) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(bins, &format!("data_dir = \"{}\"", dir.path().display()))?;
    let baseline = server.process.rss()?;
    let tokens = CACHE_TOKENS.to_string();
    // The warm-up sends every token once, the timed run each again.
    let output = Command::new(&bins.check_load)
        .args(["--addr", &format!("http://127.0.0.1:{}", server.authz)])
        .args(["--alg", "EdDSA", "--tokens", &tokens, "--requests", &tokens])
        .args([
            "--connections",
            "2",
            "--concurrency",
            "32",
            "--duration",
            "900s",
        ])
        .output()?;
    ensure!(
        output.status.success(),
        "check_load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    ensure!(
        json["allowed"].as_u64() == Some(CACHE_TOKENS as u64),
        "not every check was allowed: {json}"
    );
    let after = server.process.rss()?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    Ok(format!(
        "\n### Verified-token cache, {CACHE_TOKENS} distinct EdDSA tokens each checked twice \
         (defaults: `cache.max_entries = 100000`, `cache.max_bytes = {} MiB`)\n\n\
         | measure | value |\n|---|---|\n\
         | RSS of an empty server | {:.1} MiB |\n\
         | RSS after the tokens | {:.1} MiB |\n\
         | growth | {:.1} MiB |\n",
        jwt_revoker::token::cache::DEFAULT_MAX_BYTES / (1024 * 1024),
        mib(baseline),
        mib(after),
        mib(after.saturating_sub(baseline)),
    ))
}

/// One gRPC load round's results.
#[derive(Debug, Default, Clone)]
struct Load {
    checks: f64,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
}

fn check_load(bins: &Bins, target: &Process, port: u16) -> Result<Load> {
    let cpu_before = target.cpu()?;
    let output = Command::new(&bins.check_load)
        .args(["--addr", &format!("http://127.0.0.1:{port}")])
        .args([
            "--connections",
            "2",
            "--concurrency",
            "32",
            "--tokens",
            "1000",
        ])
        .args(["--requests", &ROUND_REQUESTS.to_string()])
        .args(["--duration", &format!("{}s", ROUND.as_secs())])
        .output()?;
    let cpu = target.cpu()? - cpu_before;
    ensure!(
        output.status.success(),
        "check_load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let number = |key: &str| json[key].as_f64().unwrap_or(0.0);
    ensure!(
        number("denied") == 0.0 && number("errors") == 0.0,
        "not every check was allowed: {json}"
    );
    Ok(Load {
        checks: number("checks"),
        rate: number("checks_per_sec"),
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        cpu_us: cpu.as_secs_f64() * 1e6 / number("checks").max(1.0),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn medians(rounds: &[Load]) -> Load {
    let pick = |f: fn(&Load) -> f64| median(rounds.iter().map(f).collect());
    Load {
        checks: pick(|l| l.checks),
        rate: pick(|l| l.rate),
        p50_us: pick(|l| l.p50_us),
        p99_us: pick(|l| l.p99_us),
        cpu_us: pick(|l| l.cpu_us),
    }
}

/// Starts the always-allow server on a free port (logging to `<log>-<pid>.log` in the
/// temporary directory); the process and its port once it listens.
fn start_allow_all(bins: &Bins, log: &str) -> Result<(Process, u16)> {
    let mut allow_all = Process::spawn(
        "allow_all",
        Command::new(&bins.allow_all).args(["--addr", "127.0.0.1:0"]),
        std::env::temp_dir().join(format!("{log}-{}.log", std::process::id())),
    )?;
    let mut port = 0;
    wait_for("allow_all", Duration::from_secs(10), || {
        allow_all.alive()?;
        port = allow_all
            .log()
            .lines()
            .find_map(|l| l.strip_prefix("listening on 127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        Ok(port != 0)
    })?;
    Ok((allow_all, port))
}

fn grpc_load(bins: &Bins) -> Result<String> {
    let (allow_all, allow_port) = start_allow_all(bins, "allow-all")?;
    let empty_redis = Redis::start()?;
    let empty = Server::redis(bins, &empty_redis)?;
    let full_redis = Redis::start()?;
    full_redis.fill(MILLION, support::unix_now())?;
    let full = Server::redis(bins, &full_redis)?;
    let every_claim = Server::redis_with_every_claim(bins, &empty_redis)?;

    let targets: [(&str, &Process, u16); 4] = [
        ("always-allow server", &allow_all, allow_port),
        ("jwt-revoker, 0 revocations", &empty.process, empty.authz),
        ("jwt-revoker, 1M revocations", &full.process, full.authz),
        (
            "jwt-revoker, 0 revocations, every claim in dynamic metadata",
            &every_claim.process,
            every_claim.authz,
        ),
    ];
    // Redis commands while nothing is checked (the replicas' feed polls), then under load.
    let redises = [&empty_redis, &full_redis];
    let idle_start = (calls(&redises)?, Instant::now());
    std::thread::sleep(ROUND);
    let idle = (calls(&redises)? - idle_start.0) as f64 / idle_start.1.elapsed().as_secs_f64();
    let load_start = (calls(&redises)?, Instant::now());
    let mut rounds: Vec<Vec<Load>> = vec![Vec::new(); targets.len()];
    let mut checks = 0.0;
    for round in 0..ROUNDS {
        for step in 0..targets.len() {
            // Alternate the order, so that no target always runs first.
            let i = if round % 2 == 0 {
                step
            } else {
                targets.len() - 1 - step
            };
            let (_, process, port) = targets[i];
            let load = check_load(bins, process, port)?;
            if i > 0 {
                checks += load.checks;
            }
            rounds[i].push(load);
        }
    }
    let load_seconds = load_start.1.elapsed().as_secs_f64();
    let under_load = (calls(&redises)? - load_start.0) as f64 / load_seconds;
    let per_check = (under_load - idle).max(0.0) * load_seconds / checks.max(1.0);

    let base = medians(&rounds[0]);
    let mut table = format!(
        "\n### gRPC Check load (`check_load`: 2 connections, 32 in flight, 1,000 RS256 tokens; \
         {ROUNDS} rounds of {} s, medians)\n\n\
         | server | checks/s | p50 | p99 | server CPU per Check | throughput ratio | p99 ratio | CPU ratio |\n\
         |---|---|---|---|---|---|---|---|\n",
        ROUND.as_secs()
    );
    for ((name, _, _), rounds) in targets.iter().zip(&rounds) {
        let load = medians(rounds);
        writeln!(
            table,
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {:.2}× | {:.2}× | {:.2}× |",
            load.rate,
            load.p50_us,
            load.p99_us,
            load.cpu_us,
            load.rate / base.rate,
            load.p99_us / base.p99_us,
            load.cpu_us / base.cpu_us,
        )?;
    }
    writeln!(
        table,
        "\nRedis commands (both stores, `INFO commandstats`, Lua-internal calls included): \
         {idle:.1}/s idle, {under_load:.1}/s while {checks:.0} Checks were served: \
         **{per_check:.5} per Check** (the rest are the replicas' feed polls, one round \
         trip a second each, whatever the traffic)."
    )?;
    Ok(table)
}

/// Redis commands processed so far by all of `redises` (our own `INFO` calls left out).
fn calls(redises: &[&Redis]) -> Result<u64> {
    let mut total = 0;
    for redis in redises {
        total += redis
            .command_calls()?
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .map(|(_, calls)| calls)
            .sum::<u64>();
    }
    Ok(total)
}

/// One wrk round's results.
#[derive(Debug, Default, Clone)]
struct Http {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn parse_latency(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn wrk(port: u16, token: &str) -> Result<Http> {
    let output = Command::new("wrk")
        .args(["-t1", "-c32", "--latency", "--timeout", "2s"])
        .args(["-d", &format!("{}s", ROUND.as_secs())])
        .args(["-H", &format!("authorization: Bearer {token}")])
        .arg(format!("http://127.0.0.1:{port}/api/items"))
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx"),
        "some requests were not answered 200:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::to_owned))
    };
    Ok(Http {
        rps: field("Requests/sec:")
            .and_then(|v| v.trim().parse().ok())
            .context("no Requests/sec")?,
        p50_us: field("50%")
            .and_then(|v| parse_latency(&v))
            .context("no p50")?,
        p99_us: field("99%")
            .and_then(|v| parse_latency(&v))
            .context("no p99")?,
    })
}

/// An Envoy with `benches/envoy/{name}.yaml` and `--concurrency 1`, ready: its listen port.
fn envoy(bins: &Bins, name: &str, authz: u16) -> Result<(Process, u16, tempfile::TempDir)> {
    envoy_from(bins, name, &[("authz_port", authz.to_string())], &[])
}

/// An Envoy with `benches/envoy/{name}.yaml`, its `{{listen_port}}`, `{{admin_port}}` and
/// `{{jwks_path}}` filled in, the other placeholders from `vars`, environment `env`, and
/// `--concurrency 1`, once `/ready` answers: the process, its listen port, its directory.
fn envoy_from(
    bins: &Bins,
    name: &str,
    vars: &[(&str, String)],
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<(Process, u16, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let (listen, admin) = (free_port()?, free_port()?);
    let mut config =
        std::fs::read_to_string(support::repo_root().join(format!("benches/envoy/{name}.yaml")))?
            .replace("{{listen_port}}", &listen.to_string())
            .replace("{{admin_port}}", &admin.to_string())
            .replace(
                "{{jwks_path}}",
                &support::fixture("jwks.json").display().to_string(),
            );
    for (key, value) in vars {
        config = config.replace(&format!("{{{{{key}}}}}"), value);
    }
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config)?;
    let mut command = Command::new(&bins.envoy);
    command
        .arg("-c")
        .arg(&path)
        .args(["--disable-hot-restart", "--concurrency", "1"])
        .args(["--log-level", "warn"])
        .envs(env.iter().copied());
    let mut process = Process::spawn(
        &format!("envoy ({name})"),
        &mut command,
        dir.path().join("log"),
    )?;
    wait_for("envoy /ready", Duration::from_secs(60), || {
        process.alive()?;
        Ok(http_status(admin, "/ready", "").is_ok_and(|status| status == 200))
    })?;
    Ok((process, listen, dir))
}

/// The status of one HTTP/1.1 `GET` to `127.0.0.1:port`.
fn http_status(port: u16, path: &str, token: &str) -> Result<u16> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("authorization: Bearer {token}\r\n")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .context("no HTTP status")
}

fn through_envoy(bins: &Bins) -> Result<String> {
    let token = support::tokens(Algorithm::RS256, 1).remove(0);
    let (_allow_all, allow_port) = start_allow_all(bins, "allow-all-envoy")?;
    let redis = Redis::start()?;
    let server = Server::redis(bins, &redis)?;
    let every_claim = Server::redis_with_every_claim(bins, &redis)?;
    // Name, config, authz port, and the status of a request without a token.
    let setups = [
        ("Envoy direct response", "direct", 0, 200),
        (
            "Envoy `jwt_authn` (RS256, its JWT cache on)",
            "jwt_authn",
            0,
            401,
        ),
        (
            "Envoy + ext_authz → always-allow server",
            "ext_authz",
            allow_port,
            200,
        ),
        (
            "Envoy + ext_authz → jwt-revoker",
            "ext_authz",
            server.authz,
            401,
        ),
        (
            "Envoy + ext_authz → jwt-revoker, every claim in dynamic metadata",
            "ext_authz",
            every_claim.authz,
            401,
        ),
    ];
    let mut envoys = Vec::new();
    for (_, config, authz, without_token) in &setups {
        let (process, listen, dir) = envoy(bins, config, *authz)?;
        // The token is accepted (and now cached) everywhere.
        let status = http_status(listen, "/api/items", &token)?;
        ensure!(status == 200, "{config}: HTTP {status} for a valid token");
        // And refused where it is checked.
        let status = http_status(listen, "/api/items", "")?;
        ensure!(
            status == *without_token,
            "{config}: HTTP {status} without a token"
        );
        envoys.push((process, listen, dir));
    }
    let mut rounds: Vec<Vec<Http>> = vec![Vec::new(); setups.len()];
    for round in 0..ROUNDS {
        for step in 0..setups.len() {
            let i = if round % 2 == 0 {
                step
            } else {
                setups.len() - 1 - step
            };
            rounds[i].push(wrk(envoys[i].1, &token)?);
        }
    }
    let pick = |rounds: &[Http], f: fn(&Http) -> f64| median(rounds.iter().map(f).collect());
    let direct = pick(&rounds[0], |h| h.rps);
    let allow = (pick(&rounds[2], |h| h.rps), pick(&rounds[2], |h| h.p99_us));
    let mut table = format!(
        "\n### Through Envoy (`wrk -t1 -c32 --latency`, Envoy `--concurrency 1`, the same \
         RS256 token; {ROUNDS} rounds of {} s, medians)\n\n\
         | setup | requests/s | p50 | p99 | vs direct | vs always-allow (rps) | vs always-allow (p99) |\n\
         |---|---|---|---|---|---|---|\n",
        ROUND.as_secs()
    );
    for ((name, _, _, _), rounds) in setups.iter().zip(&rounds) {
        let (rps, p50, p99) = (
            pick(rounds, |h| h.rps),
            pick(rounds, |h| h.p50_us),
            pick(rounds, |h| h.p99_us),
        );
        writeln!(
            table,
            "| {name} | {rps:.0} | {p50:.0} µs | {p99:.0} µs | {:.2}× | {:.2}× | {:.2}× |",
            rps / direct,
            rps / allow.0,
            p99 / allow.1
        )?;
    }
    Ok(table)
}

fn propagation(bins: &Bins) -> Result<String> {
    let redis = Redis::start()?;
    propagation_on(
        bins,
        "three replicas on one Redis, `min_replicas_acked = 0`",
        &format!("url = \"{}\"", redis.url()),
    )
}

fn propagation_sentinel(bins: &Bins) -> Result<String> {
    let set = test_support::redis_ha::SentinelSet::start();
    let sentinels: Vec<String> = set
        .sentinel_urls()
        .iter()
        .map(|url| format!("{url:?}"))
        .collect();
    propagation_on(
        bins,
        "three replicas on Sentinel: a master, two replicas, three sentinels; `min_replicas_acked = 1`",
        &format!(
            "sentinels = [{}]\nsentinel_master = \"{}\"\nmin_replicas_acked = 1",
            sentinels.join(", "),
            test_support::redis_ha::MASTER_NAME
        ),
    )
}

fn propagation_cluster(bins: &Bins) -> Result<String> {
    let cluster = test_support::redis_ha::RedisCluster::start();
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| format!("{url:?}"))
        .collect();
    propagation_on(
        bins,
        "three replicas on Cluster: three masters, three replicas; `min_replicas_acked = 1`",
        &format!(
            "cluster_nodes = [{}]\nmin_replicas_acked = 1",
            nodes.join(", ")
        ),
    )
}

/// Propagation across three replicas whose `[store]` is `store`; `title` says on what.
fn propagation_on(bins: &Bins, title: &str, store: &str) -> Result<String> {
    let replicas = [
        Server::start(bins, store)?,
        Server::start(bins, store)?,
        Server::start(bins, store)?,
    ];
    let tokens = support::tokens(Algorithm::ES256, PROPAGATIONS);
    let runtime = runtime()?;
    let times = runtime.block_on(async {
        let mut checkers = Vec::new();
        let mut admins = Vec::new();
        for replica in &replicas {
            let authz = connect(replica.authz).await?;
            checkers.push(AuthorizationClient::new(authz));
            admins.push(RevocationAdminClient::new(connect(replica.admin).await?));
        }
        let deadline = Instant::now() + PROPAGATION_BUDGET;
        let mut times = Vec::with_capacity(PROPAGATIONS);
        let mut revoke_times = Vec::with_capacity(PROPAGATIONS);
        let mut end_to_end = Vec::with_capacity(PROPAGATIONS);
        for (i, token) in tokens.iter().enumerate() {
            if Instant::now() >= deadline {
                break;
            }
            let request = support::check_request(token);
            ensure!(
                every_one_allows(&mut checkers, &request).await?,
                "a fresh token was denied"
            );
            let revoke = revoke_token(token, "propagation benchmark")?;
            let admin = i % admins.len();
            let sent = Instant::now();
            admins[admin].revoke(revoke).await?;
            let revoked = Instant::now();
            revoke_times.push(revoked.duration_since(sent).as_secs_f64() * 1e6);
            until_every_one_denies(&mut checkers, &request, revoked)
                .await
                .with_context(|| format!("revocation {i}"))?;
            times.push(revoked.elapsed().as_secs_f64() * 1e6);
            end_to_end.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        Ok::<_, anyhow::Error>((times, revoke_times, end_to_end))
    })?;
    let (times, revoke_times, end_to_end) = times;
    let count = times.len();
    let sorted = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values
    };
    let (times, revoke_times, end_to_end) =
        (sorted(times), sorted(revoke_times), sorted(end_to_end));
    let at = |values: &[f64], q: f64| {
        values[((count as f64 * q).ceil() as usize).clamp(1, count) - 1] / 1000.0
    };
    Ok(format!(
        "\n### Propagation ({title}; `Revoke` on each in turn)\n\n\
         | revocations | propagation p50 | p99 | max | `Revoke` call p50 | p99 | sending `Revoke` → all deny p50 | p99 |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {count} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        at(&times, 0.50),
        at(&times, 0.99),
        times[count - 1] / 1000.0,
        at(&revoke_times, 0.50),
        at(&revoke_times, 0.99),
        at(&end_to_end, 0.50),
        at(&end_to_end, 0.99),
    ))
}

/// Event-to-deny: a CAEP session-revoked SET pushed to each replica in turn; the time from
/// sending the push until all three replicas deny the session's token (the push's 202
/// included).
fn push_propagation(bins: &Bins) -> Result<String> {
    const TRANSMITTER: &str = "https://transmitter.bench";
    let redis = Redis::start()?;
    let jwks = support::fixture("jwks.json");
    let store = format!(
        "url = \"{}\"\n[[ssf.streams]]\nname = \"bench\"\nissuer = \"{TRANSMITTER}\"\n\
         audience = \"bench\"\njwks_file = \"{}\"\ntoken_issuers = [\"{}\"]\n",
        redis.url(),
        jwks.display(),
        support::ISSUER
    );
    let replicas = [
        Server::start(bins, &store)?,
        Server::start(bins, &store)?,
        Server::start(bins, &store)?,
    ];
    let tokens = support::tokens(Algorithm::ES256, PROPAGATIONS);
    let pem = std::fs::read(support::fixture("keys/rsa.pem"))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?;
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    header.typ = Some("secevent+jwt".to_owned());
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let runtime = runtime()?;
    let times = runtime.block_on(async {
        let mut checkers = Vec::new();
        for replica in &replicas {
            checkers.push(AuthorizationClient::new(connect(replica.authz).await?));
        }
        let deadline = Instant::now() + PROPAGATION_BUDGET;
        let mut times = Vec::with_capacity(PROPAGATIONS);
        for (i, token) in tokens.iter().enumerate() {
            if Instant::now() >= deadline {
                break;
            }
            let request = support::check_request(token);
            ensure!(
                every_one_allows(&mut checkers, &request).await?,
                "a fresh token was denied"
            );
            let claims = serde_json::json!({
                "iss": TRANSMITTER, "aud": "bench", "iat": support::unix_now(),
                "jti": format!("bench-set-{i}"),
                "sub_id": {"format": "opaque", "id": format!("session-{i}")},
                "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked":
                    {"event_timestamp": support::unix_now()}},
            });
            let set = jsonwebtoken::encode(&header, &claims, &key)?;
            let admin = replicas[i % replicas.len()].admin;
            let sent = Instant::now();
            let answer = http
                .post(format!("http://127.0.0.1:{admin}/ssf/push/bench"))
                .header("content-type", "application/secevent+jwt")
                .body(set)
                .send()
                .await?;
            ensure!(
                answer.status().as_u16() == 202,
                "push answered {}",
                answer.status()
            );
            until_every_one_denies(&mut checkers, &request, sent)
                .await
                .with_context(|| format!("event {i}"))?;
            times.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        Ok::<_, anyhow::Error>(times)
    })?;
    let count = times.len();
    ensure!(count > 0, "no event measured");
    let mut sorted = times;
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((count as f64 * q).ceil() as usize).clamp(1, count) - 1];
    Ok(format!(
        "\n### Event-to-deny (three replicas on one Redis; an SSF push of CAEP session-revoked to each in turn)\n\n\
         | events | p50 | p99 | max |\n|---|---|---|---|\n\
         | {count} | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        at(0.50) / 1000.0,
        at(0.99) / 1000.0,
        sorted[count - 1] / 1000.0
    ))
}

async fn connect(port: u16) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

/// An admin `Revoke` of `token` with `reason`, carrying the admin token.
fn revoke_token(token: &str, reason: &str) -> Result<tonic::Request<RevokeRequest>> {
    let mut revoke = tonic::Request::new(RevokeRequest {
        target: Some(revoke_request::Target::Token(token.to_owned())),
        reason: reason.to_owned(),
        expires_at: None,
    });
    revoke
        .metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse()?);
    Ok(revoke)
}

/// Whether every checker allows `request`.
async fn every_one_allows(
    checkers: &mut [AuthorizationClient<Channel>],
    request: &envoy_types::pb::envoy::service::auth::v3::CheckRequest,
) -> Result<bool> {
    for checker in checkers {
        if !allowed(checker, request).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Asks every checker until each denies `request`; an error 5 s after `since`.
async fn until_every_one_denies(
    checkers: &mut [AuthorizationClient<Channel>],
    request: &envoy_types::pb::envoy::service::auth::v3::CheckRequest,
    since: Instant,
) -> Result<()> {
    let mut pending: Vec<usize> = (0..checkers.len()).collect();
    while !pending.is_empty() {
        ensure!(
            since.elapsed() < Duration::from_secs(5),
            "not every replica denied within 5 s"
        );
        let mut still = Vec::new();
        for r in pending {
            if allowed(&mut checkers[r], request).await? {
                still.push(r);
            }
        }
        pending = still;
    }
    Ok(())
}

async fn allowed(
    client: &mut AuthorizationClient<Channel>,
    request: &envoy_types::pb::envoy::service::auth::v3::CheckRequest,
) -> Result<bool> {
    let response = client.check(request.clone()).await?.into_inner();
    Ok(matches!(
        response.http_response,
        Some(HttpResponse::OkResponse(_))
    ))
}
