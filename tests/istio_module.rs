//! The Istio path of the Envoy module (`deploy/istio/envoy-filter-module.yaml`), checked as
//! far as a machine without Kubernetes allows: the EnvoyFilter's three patches go, as
//! written, into `envoy/module.yaml` in place of its filters, and the real Envoy 1.40 loads
//! that config with the built module (`envoy --mode validate`); the patches insert the
//! chain before the router on the gateway, strip every header `jwt_authn` writes in both
//! spellings exactly as `envoy/module.yaml` does, and read only files the gateway pod mounts;
//! the proxy finds the module through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`. (Schemas:
//! `tests/deploy_manifests.rs` validates the file with the other manifests.)
//!
//! PyYAML (in `<repo>/.venv`, installed by `scripts/test.sh`) reads the YAML.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use support::repo_root;

const MANIFEST: &str = "deploy/istio/envoy-filter-module.yaml";
const HEADER_MUTATION: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const JWT_AUTHN: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
const MODULE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The YAML documents of `path` as JSON, read by PyYAML.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh, which installs PyYAML into .venv",
        python.display()
    );
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("PyYAML's JSON")
}

/// The EnvoyFilter's patch values, in order, after checking where each one goes.
fn patch_values(filter: &Value) -> Vec<Value> {
    let patches = filter["spec"]["configPatches"]
        .as_array()
        .expect("configPatches");
    patches
        .iter()
        .map(|patch| {
            assert_eq!(patch["applyTo"], "HTTP_FILTER", "{patch}");
            assert_eq!(patch["match"]["context"], "GATEWAY", "{patch}");
            let chain = &patch["match"]["listener"]["filterChain"]["filter"];
            assert_eq!(
                chain["name"], "envoy.filters.network.http_connection_manager",
                "{patch}"
            );
            assert_eq!(
                chain["subFilter"]["name"], "envoy.filters.http.router",
                "{patch}"
            );
            assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE", "{patch}");
            patch["patch"]["value"].clone()
        })
        .collect()
}

/// `envoy/module.yaml` rendered (its own module config pointing nowhere in particular), as
/// JSON.
fn module_bootstrap(dir: &Path) -> Value {
    let template = std::fs::read_to_string(repo_root().join("envoy/module.yaml"))
        .expect("read envoy/module.yaml");
    let rendered = template
        .replace("{{listen_port}}", "10000")
        .replace("{{admin_port}}", "9901")
        .replace("{{upstream_port}}", "18080")
        .replace("{{issuer}}", "https://demo.issuer")
        .replace(
            "{{jwks_path}}",
            &repo_root()
                .join("demo/keys/jwks.json")
                .display()
                .to_string(),
        )
        .replace(
            "{{filter_config}}",
            r#"{"feed": "127.0.0.1:9192", "feed_token": "unused-0123456789abcdef"}"#,
        );
    let path = dir.join("module.yaml");
    std::fs::write(&path, rendered).expect("write module.yaml");
    let mut documents = yaml_documents(&path);
    assert_eq!(documents.len(), 1);
    documents.remove(0)
}

fn http_filters(bootstrap: &mut Value) -> &mut Vec<Value> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array_mut()
        .expect("the listener's http_filters")
}

fn typed(filters: &[Value], type_url: &str) -> Value {
    filters
        .iter()
        .find(|f| f["typed_config"]["@type"] == type_url)
        .map(|f| f["typed_config"].clone())
        .unwrap_or_else(|| panic!("no {type_url} in {filters:?}"))
}

/// The headers a header_mutation config removes.
fn removed(header_mutation: &Value) -> BTreeSet<String> {
    header_mutation["mutations"]["request_mutations"]
        .as_array()
        .expect("request_mutations")
        .iter()
        .map(|m| m["remove"].as_str().expect("only removals").to_owned())
        .collect()
}

/// The headers a jwt_authn config writes: every claim header and the payload header.
fn written(jwt_authn: &Value) -> BTreeSet<String> {
    let provider = &jwt_authn["providers"]["issuer"];
    let mut headers: BTreeSet<String> = provider["claim_to_headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["header_name"].as_str().expect("header_name").to_owned())
        .collect();
    headers.insert(
        provider["forward_payload_header"]
            .as_str()
            .expect("forward_payload_header")
            .to_owned(),
    );
    headers
}

#[test]
fn the_envoy_filter_chain_is_module_yaml_s_and_envoy_loads_it_with_the_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let documents = yaml_documents(&repo_root().join(MANIFEST));
    let filter = documents
        .iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .expect("an EnvoyFilter");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        json!({"istio": "ingressgateway"})
    );
    let chain = patch_values(filter);
    let types: Vec<&str> = chain
        .iter()
        .map(|f| f["typed_config"]["@type"].as_str().unwrap_or_default())
        .collect();
    // Each is inserted just before the router, so they run in this order.
    assert_eq!(types, [HEADER_MUTATION, JWT_AUTHN, MODULE]);

    // The same claims, stripped the same way, as envoy/module.yaml (the tested chain).
    let mut bootstrap = module_bootstrap(dir.path());
    let ours = http_filters(&mut bootstrap).clone();
    let (strip, verify) = (typed(&chain, HEADER_MUTATION), typed(&chain, JWT_AUTHN));
    assert_eq!(
        verify["providers"]["issuer"]["claim_to_headers"],
        typed(&ours, JWT_AUTHN)["providers"]["issuer"]["claim_to_headers"]
    );
    assert_eq!(removed(&strip), removed(&typed(&ours, HEADER_MUTATION)));
    for (name, filters) in [("the EnvoyFilter", &chain), ("envoy/module.yaml", &ours)] {
        let removed = removed(&typed(filters, HEADER_MUTATION));
        for header in written(&typed(filters, JWT_AUTHN)) {
            let underscored = header.replace('-', "_");
            assert!(
                removed.contains(&header) && removed.contains(&underscored),
                "{name} lets a client send {header} or {underscored}"
            );
        }
    }
    let module = typed(&chain, MODULE);
    assert_eq!(module["dynamic_module_config"]["name"], "jwt_revoker_envoy");
    assert_eq!(module["dynamic_module_config"]["do_not_close"], true);

    // The files the chain reads are mounted into the proxy, and the module is found.
    let module_config: Value = serde_json::from_str(
        module["filter_config"]["value"]
            .as_str()
            .expect("filter_config"),
    )
    .expect("the module's config is JSON");
    let token_file = module_config["feed_token_file"]
        .as_str()
        .expect("feed_token_file");
    let jwks_file = verify["providers"]["issuer"]["local_jwks"]["filename"]
        .as_str()
        .expect("local_jwks.filename");
    let pod = &documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the gateway Deployment")["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["istio"], "ingressgateway");
    let spec = &pod["spec"];
    let proxy = spec["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "istio-proxy")
        .expect("the istio-proxy container");
    let mounts: BTreeMap<&str, &str> = proxy["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let parent = |file: &str| {
        Path::new(file)
            .parent()
            .expect("a directory")
            .display()
            .to_string()
    };
    for file in [token_file, jwks_file] {
        assert!(
            mounts.contains_key(parent(file).as_str()),
            "{file} is not in a mounted directory: {mounts:?}"
        );
    }
    let search_path = proxy["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
        .and_then(|e| e["value"].as_str())
        .expect("ENVOY_DYNAMIC_MODULES_SEARCH_PATH on istio-proxy");
    let module_volume = mounts
        .get(search_path)
        .expect("a volume mounted at the search path");
    let copier = spec["initContainers"]
        .as_array()
        .expect("initContainers")
        .iter()
        .find(|c| {
            c["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["name"] == *module_volume))
        })
        .expect("an init container filling the module's volume");
    let target = copier["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == *module_volume))
        .and_then(|m| m["mountPath"].as_str())
        .expect("its mount path");
    assert_eq!(
        copier["command"].as_array().and_then(|c| c.last()),
        Some(&json!(format!("{target}/libjwt_revoker_envoy.so")))
    );

    // The real Envoy, with the chain in envoy/module.yaml's place (its router kept) and the
    // pod's files pointed at files here, accepts it and loads the module.
    let router = http_filters(&mut bootstrap)
        .pop()
        .expect("module.yaml's router");
    assert_eq!(router["name"], "envoy.filters.http.router");
    *http_filters(&mut bootstrap) = chain.into_iter().chain([router]).collect();
    let token_here = dir.path().join("feed-token");
    std::fs::write(&token_here, "feed-token-0123456789abcdef").expect("write the token");
    let text = bootstrap.to_string();
    for path in [token_file, jwks_file] {
        assert!(text.contains(path), "{path}");
    }
    let text = text
        .replace(token_file, &token_here.display().to_string())
        .replace(
            jwks_file,
            &repo_root()
                .join("demo/keys/jwks.json")
                .display()
                .to_string(),
        );
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, text).expect("write envoy.json");
    let output = support::envoy::validate(&config);
    assert!(
        output.status.success(),
        "envoy --mode validate refused the EnvoyFilter's chain: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
