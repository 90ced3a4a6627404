//! Section `module`: jwt-revoker's Envoy dynamic module (`libjwt_revoker_envoy.so`, release
//! build) against Envoy's `jwt_authn` alone and the ext_authz mode, with `wrk` and the same
//! RS256 token, Envoy `--concurrency 1`: requests/s with 0 and 1,000,000 revocations in the
//! module, Envoy's memory per revocation, and propagation from `Revoke` returning OK until
//! Envoy refuses the token.

use super::{
    Bins, Http, MILLION, Process, ROUND, ROUNDS, Redis, Server, connect, envoy, envoy_from,
    http_status, median, revoke_token, support, wait_for, wrk,
};
use anyhow::{Context, Result, ensure};
use jsonwebtoken::Algorithm;
use jwt_revoker::admin::pb::revocation_admin_client::RevocationAdminClient;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FEED_TOKEN: &str = "bench-feed-token-0123456789abcdef";
/// Revocations whose propagation to Envoy is timed.
const PROPAGATIONS: usize = 300;

/// A jwt-revoker on `redis` serving the feed, with its feed-token file.
fn feed_server(bins: &Bins, redis: &Redis) -> Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("feed-token");
    std::fs::write(&token_file, FEED_TOKEN)?;
    let store = format!(
        "url = \"{}\"\n[feed]\ntoken_file = \"{}\"",
        redis.url(),
        token_file.display()
    );
    Ok((Server::start(bins, &store)?, dir))
}

/// `target/release`, holding `libjwt_revoker_envoy.so`.
fn module_dir(bins: &Bins) -> Result<PathBuf> {
    let dir = bins
        .server
        .parent()
        .context("no target/release")?
        .to_path_buf();
    ensure!(
        dir.join("libjwt_revoker_envoy.so").is_file(),
        "no libjwt_revoker_envoy.so in {}: cargo build --release -p jwt-revoker-envoy",
        dir.display()
    );
    Ok(dir)
}

/// An Envoy running `benches/envoy/module.yaml` following `server`'s feed, once its module
/// allows `token` (it refuses until it has loaded its snapshot).
fn module_envoy(
    bins: &Bins,
    server: &Server,
    token: &str,
) -> Result<(Process, u16, tempfile::TempDir)> {
    let filter_config = serde_json::json!({
        "feed": format!("127.0.0.1:{}", server.admin),
        "feed_token": FEED_TOKEN,
    });
    let search_path = module_dir(bins)?;
    let (mut process, listen, dir) = envoy_from(
        bins,
        "module",
        &[("filter_config", filter_config.to_string())],
        &[("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", search_path.as_os_str())],
    )?;
    wait_for("the module's snapshot", Duration::from_secs(300), || {
        process.alive()?;
        Ok(status_line(listen, token).is_ok_and(|status| status == 200))
    })?;
    Ok((process, listen, dir))
}

/// The status of `GET /api/items` with `token`, read from the status line alone (Envoy
/// closes the connection of a local reply only after its 1 s `delayed_close_timeout`).
fn status_line(port: u16, token: &str) -> Result<u16> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /api/items HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\r\n"
    )?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])?
        .parse()
        .context("no HTTP status")
}

/// The module section.
pub(super) fn module(bins: &Bins) -> Result<String> {
    let token = support::tokens(Algorithm::RS256, 1).remove(0);
    let empty_redis = Redis::start()?;
    let full_redis = Redis::start()?;
    full_redis.fill(MILLION, support::unix_now())?;
    let (empty, _empty_dir) = feed_server(bins, &empty_redis)?;
    let (full, _full_dir) = feed_server(bins, &full_redis)?;

    let direct = envoy(bins, "direct", 0)?;
    let jwt_authn = envoy(bins, "jwt_authn", 0)?;
    let inputs = envoy(bins, "module_inputs", 0)?;
    let module_empty = module_envoy(bins, &empty, &token)?;
    let module_full = module_envoy(bins, &full, &token)?;
    let ext_authz = envoy(bins, "ext_authz", empty.authz)?;
    ensure!(
        http_status(ext_authz.1, "/api/items", &token)? == 200,
        "ext_authz refused"
    );
    let memory = (module_full.0.rss()? as f64 - module_empty.0.rss()? as f64) / MILLION as f64;

    let setups = [
        ("Envoy direct response", direct.1),
        ("Envoy `jwt_authn` alone (RS256, JWT cache)", jwt_authn.1),
        (
            "`jwt_authn` + the module's input (forwarded payload, header strip), no module",
            inputs.1,
        ),
        ("`jwt_authn` + module, 0 revocations", module_empty.1),
        ("`jwt_authn` + module, 1,000,000 revocations", module_full.1),
        ("Envoy + ext_authz → jwt-revoker (defaults)", ext_authz.1),
    ];
    let mut rounds: Vec<Vec<Http>> = vec![Vec::new(); setups.len()];
    for round in 0..ROUNDS {
        for step in 0..setups.len() {
            let i = if round % 2 == 0 {
                step
            } else {
                setups.len() - 1 - step
            };
            rounds[i].push(wrk(setups[i].1, &token)?);
        }
    }
    // Indices into `setups`.
    let (alone, no_revocations, million, ext) = (1, 3, 4, 5);
    let rps: Vec<f64> = rounds
        .iter()
        .map(|r| median(r.iter().map(|h| h.rps).collect()))
        .collect();
    let mut table = format!(
        "\n### The Envoy module (`wrk -t1 -c32 --latency`, Envoy `--concurrency 1`, the same \
         RS256 token; {ROUNDS} rounds of {} s, medians)\n\n\
         | setup | requests/s | p50 | p99 | vs `jwt_authn` alone | vs ext_authz |\n\
         |---|---|---|---|---|---|\n",
        ROUND.as_secs()
    );
    for (i, (name, _)) in setups.iter().enumerate() {
        let p50 = median(rounds[i].iter().map(|h| h.p50_us).collect());
        let p99 = median(rounds[i].iter().map(|h| h.p99_us).collect());
        writeln!(
            table,
            "| {name} | {:.0} | {p50:.0} µs | {p99:.0} µs | {:.2}× | {:.2}× |",
            rps[i],
            rps[i] / rps[alone],
            rps[i] / rps[ext]
        )?;
    }
    writeln!(
        table,
        "\n1,000,000 vs 0 revocations: {:.3}× the requests/s. Envoy's memory with 1,000,000 \
         revocations in the module: {:.0} bytes per revocation (RSS difference).",
        rps[million] / rps[no_revocations],
        memory
    )?;
    drop((direct, jwt_authn, inputs, ext_authz, module_empty));
    table.push_str(&propagation(&full, module_full.1)?);
    Ok(table)
}

/// Revokes fresh tokens one at a time through `server`'s admin API and times until Envoy
/// (the module, following the same server's feed) refuses each.
fn propagation(server: &Server, listen: u16) -> Result<String> {
    let tokens = support::tokens(Algorithm::RS256, PROPAGATIONS);
    let runtime = super::runtime()?;
    let mut times = Vec::with_capacity(PROPAGATIONS);
    runtime.block_on(async {
        let mut admin = RevocationAdminClient::new(connect(server.admin).await?);
        for token in &tokens {
            ensure!(
                status_line(listen, token)? == 200,
                "a fresh token was refused"
            );
            let revoke = revoke_token(token, "module propagation benchmark")?;
            admin.revoke(revoke).await?;
            let revoked = Instant::now();
            while status_line(listen, token)? != 401 {
                ensure!(
                    revoked.elapsed() < Duration::from_secs(5),
                    "a revocation did not reach Envoy within 5 s"
                );
            }
            times.push(revoked.elapsed().as_secs_f64() * 1000.0);
        }
        Ok::<(), anyhow::Error>(())
    })?;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(format!(
        "\nPropagation from `Revoke` returning OK (Redis store, 1,000,000 revocations) until \
         Envoy's module refuses the token, over {} revocations: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms.\n",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    ))
}
