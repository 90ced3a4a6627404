//! `deploy/monitoring/`: the alert rules pass `promtool check rules`, and every metric the
//! alert rules and the Grafana dashboard query is one a live server exports on `/metrics`
//! (scraped after a Check, an admin call and a store error, so every family has a series).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::check::CheckClient;
use support::redis::RedisProcess;
use support::server::ServerProcess;
use support::{tokens, wait_until};

fn monitoring(file: &str) -> String {
    let path = support::repo_root().join("deploy/monitoring").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The `jwt_revoker_…` names in `text` (PromQL expressions or whole files).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("jwt_revoker_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&monitoring("dashboard.json")).expect("dashboard.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").to_owned())
        .collect()
}

/// The `expr:` lines of the alert rules.
fn alert_expressions() -> Vec<String> {
    monitoring("alerts.yml")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| expr.trim().to_owned())
        .collect()
}

#[test]
fn alert_rules_pass_promtool() {
    let path = support::repo_root().join("deploy/monitoring/alerts.yml");
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it (Debian package `prometheus`)")
        });
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(alert_expressions().len(), 7, "one expr per rule");
}

#[test]
fn every_queried_metric_is_exported_by_a_live_server() {
    // A Check, an admin call and a store error, so every family has a series to show.
    let mut redis = RedisProcess::start();
    let server = ServerProcess::builder().redis(&redis.url()).start();
    let token = tokens::mint_alg(jsonwebtoken::Algorithm::RS256, &tokens::claims("alice"));
    CheckClient::connect(server.authz_port()).check(&token);
    server.cli_ok(&["list"]);
    redis.kill();
    let text = wait_until(
        "a store error to be counted",
        Duration::from_secs(20),
        |last| {
            let scrape = support::http::get(server.metrics_port(), "/metrics");
            *last = format!("status {}", scrape.status);
            let text = scrape.text();
            text.contains("jwt_revoker_store_errors_total{")
                .then_some(text)
        },
    );
    // Families as declared (`# TYPE <name> <type>`); samples add these suffixes.
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let exported = |name: &str| {
        families.contains(name)
            || ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|family| families.contains(family))
                })
    };
    let mut queries = dashboard_queries();
    queries.extend(alert_expressions());
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "query uses no jwt-revoker metric: {query}"
        );
        for name in names {
            assert!(
                exported(&name),
                "{name} (in `{query}`) is not exported; families: {families:?}"
            );
        }
    }
}
