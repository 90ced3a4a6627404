//! The Envoy configs of the benchmarks (`benches/envoy/*.yaml`) are valid once rendered,
//! as `envoy --mode validate` says.

mod support;

use support::envoy::validate;
use support::repo_root;

#[test]
fn benchmark_envoy_configs_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "direct",
        "jwt_authn",
        "ext_authz",
        "module_inputs",
        "module",
    ] {
        let template =
            std::fs::read_to_string(repo_root().join(format!("benches/envoy/{name}.yaml")))
                .unwrap_or_else(|e| panic!("read {name}.yaml: {e}"));
        let rendered = template
            .replace("{{listen_port}}", "18080")
            .replace("{{admin_port}}", "18081")
            .replace("{{authz_port}}", "18082")
            .replace(
                "{{jwks_path}}",
                &support::fixture("jwks.json").display().to_string(),
            )
            .replace(
                "{{filter_config}}",
                r#"{"feed": "127.0.0.1:1", "feed_token": "0123456789abcdef"}"#,
            );
        assert!(!rendered.contains("{{"), "{name}: unknown placeholder");
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, rendered).expect("write the rendered config");
        let output = validate(&path);
        assert!(
            output.status.success(),
            "{name}.yaml does not validate:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
