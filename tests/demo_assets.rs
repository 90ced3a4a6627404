//! The local demo's committed assets are consistent: its config is accepted by the config
//! loader, and its JWKS verifies tokens signed with its private key; the README's
//! walkthrough of the Envoy module (the demo's keys) renders configs the real Envoy and the
//! server accept, and `scripts/demo.sh module` agrees with it.

mod support;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use jwt_revoker::config::{Config, KeySource, Overrides};
use serde_json::{Value, json};
use std::path::Path;

fn demo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo")
        .join(relative)
}

#[test]
fn demo_config_is_valid() {
    let path = demo("config.toml");
    let text = std::fs::read_to_string(&path).expect("read demo/config.toml");
    // The demo generates its admin token file on first run; supply one instead.
    let overrides = Overrides {
        admin_token: Some("a-demo-admin-token-for-the-test".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(&text, &path, &demo(""), &overrides)
        .unwrap_or_else(|e| panic!("demo/config.toml is refused: {e}"));
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(
        config.issuers[0].keys,
        KeySource::File(demo("keys/jwks.json"))
    );
    assert!(config.authz_addr.ip().is_loopback() && config.admin_addr.ip().is_loopback());
}

#[test]
fn demo_jwks_verifies_demo_key_signatures() {
    let pem = std::fs::read(demo("keys/rsa.pem")).expect("read demo/keys/rsa.pem");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("demo-rsa-1".to_owned());
    let claims = json!({"iss": "https://demo.issuer", "aud": "api", "sub": "alice", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("load the demo key"),
    )
    .expect("sign");

    let jwks: JwkSet = serde_json::from_str(
        &std::fs::read_to_string(demo("keys/jwks.json")).expect("read demo/keys/jwks.json"),
    )
    .expect("parse the demo JWKS");
    let jwk = jwks
        .find("demo-rsa-1")
        .expect("kid demo-rsa-1 in the demo JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api"]);
    validation.set_issuer(&["https://demo.issuer"]);
    let verified = jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_jwk(jwk).expect("decoding key from the JWK"),
        &validation,
    )
    .expect("the demo JWKS verifies the demo key's signature");
    assert_eq!(verified.claims["sub"], "alice");
}

/// The shell block of the README's "Put it in front of an upstream (the demo's keys)".
fn readme_module_steps() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split_once("### Put it in front of an upstream (the demo's keys)")
        .expect("the README has the module walkthrough")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("a shell block in the walkthrough")
        .1;
    block
        .split_once("```")
        .expect("the shell block ends")
        .0
        .to_owned()
}

/// The command of `steps` that starts with `start`, with its continuation lines.
fn command(steps: &str, start: &str) -> String {
    let mut lines = steps.lines().skip_while(|line| !line.starts_with(start));
    let mut command = String::new();
    for line in lines.by_ref() {
        command.push_str(line);
        command.push('\n');
        if !line.ends_with('\\') {
            break;
        }
    }
    assert!(!command.is_empty(), "no `{start}` command in:\n{steps}");
    command
}

/// The `{{name}}` placeholders in `text`.
fn placeholders(text: &str) -> std::collections::BTreeSet<String> {
    text.split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// Runs `script` with bash in `dir`, and panics with its output when it fails.
fn bash(dir: &Path, script: &str) {
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "{script}\nfailed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The README's module walkthrough, run as written in a scratch copy of the files it uses:
/// its tokens and its `sed` give an Envoy config that the real Envoy accepts with the built
/// module loaded, and the server config it starts is valid and serves the feed on the port
/// the module follows.
#[test]
fn the_readme_module_walkthrough_renders_configs_envoy_and_the_server_accept() {
    let steps = readme_module_steps();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A scratch repository root: envoy/ and demo/keys/ as in the repository, the server
    // config copied, and .demo/ created by the walkthrough itself.
    let root = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(repo.join("envoy"), root.path().join("envoy")).expect("link");
    std::fs::create_dir(root.path().join("demo")).expect("mkdir demo");
    std::os::unix::fs::symlink(repo.join("demo/keys"), root.path().join("demo/keys"))
        .expect("link");
    std::fs::copy(demo("module.toml"), root.path().join("demo/module.toml")).expect("copy");

    assert!(
        steps.contains("target/debug/jwt-revoker serve --config demo/module.toml\n"),
        "{steps}"
    );
    bash(root.path(), &command(&steps, "mkdir -p .demo"));
    let sed = command(&steps, "sed ");
    assert!(
        sed.contains("envoy/module.yaml >.demo/envoy-module.yaml"),
        "{sed}"
    );
    bash(root.path(), &sed);

    let rendered = std::fs::read_to_string(root.path().join(".demo/envoy-module.yaml"))
        .expect("the walkthrough wrote .demo/envoy-module.yaml");
    assert_eq!(
        placeholders(&rendered),
        Default::default(),
        "a placeholder is left"
    );
    let output = support::envoy::validate(&root.path().join(".demo/envoy-module.yaml"));
    assert!(
        output.status.success(),
        "envoy --mode validate refused the walkthrough's config: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The server it starts: demo/module.toml with the tokens the walkthrough made.
    let path = root.path().join("demo/module.toml");
    let text = std::fs::read_to_string(&path).expect("read demo/module.toml");
    let config = Config::parse(
        &text,
        &path,
        &root.path().join("demo"),
        &Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("demo/module.toml is refused: {e}"));
    let feed_token = std::fs::read_to_string(root.path().join(".demo/feed-token"))
        .expect("the walkthrough made a feed token");
    assert_eq!(
        config.feed,
        Some(jwt_revoker::config::FeedAuth::Token(
            feed_token.trim().to_owned()
        ))
    );
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9192");
    assert!(sed.contains(r#"\"feed\": \"127.0.0.1:9192\""#), "{sed}");
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(config.issuers[0].issuer, "https://demo.issuer");
    // Envoy listens where the walkthrough's requests go, in front of its upstream.
    assert!(sed.contains("s/{{listen_port}}/10000/"), "{sed}");
    assert!(steps.contains("http://127.0.0.1:10000/hello"), "{steps}");
    assert!(sed.contains("s/{{upstream_port}}/18080/"), "{sed}");
    assert!(
        steps.contains("python3 demo/upstream.py 18080 &"),
        "{steps}"
    );
}

/// `scripts/demo.sh module` runs what the walkthrough describes: the same server config
/// and Envoy template, every placeholder of the template filled, and the module's search
/// path; the script passes `bash -n` and shellcheck.
#[test]
fn the_module_demo_script_agrees_with_the_walkthrough() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(repo.join("scripts/demo.sh")).expect("read demo.sh");
    for used in [
        "demo/module.toml",
        "envoy/module.yaml",
        "cargo build --quiet -p jwt-revoker-envoy",
        "ENVOY_DYNAMIC_MODULES_SEARCH_PATH=\"$REPO_ROOT/target/debug\"",
        "feed_token_file",
        "ext_authz | module)",
    ] {
        assert!(script.contains(used), "scripts/demo.sh lacks {used:?}");
    }
    let template =
        std::fs::read_to_string(repo.join("envoy/module.yaml")).expect("read module.yaml");
    let wanted = placeholders(&template);
    assert_eq!(
        wanted,
        placeholders(&command(&readme_module_steps(), "sed ")),
        "the README's sed fills exactly the template's placeholders"
    );
    let module_branch = script
        .split_once("if [ \"$MODE\" = module ]; then\n  # The module follows the feed")
        .expect("the script renders envoy/module.yaml in module mode")
        .1
        .split_once("else")
        .expect("then the ext_authz branch")
        .0;
    assert_eq!(placeholders(module_branch), wanted, "{module_branch}");
    let syntax = std::process::Command::new("bash")
        .args(["-n", "scripts/demo.sh"])
        .current_dir(repo)
        .status()
        .expect("run bash -n");
    assert!(syntax.success(), "bash -n scripts/demo.sh");
    let shellcheck = std::process::Command::new("shellcheck")
        .args(["scripts/demo.sh", "scripts/lib.sh"])
        .current_dir(repo)
        .output()
        .expect("run shellcheck (scripts/test.sh installs it)");
    assert!(
        shellcheck.status.success(),
        "{}",
        String::from_utf8_lossy(&shellcheck.stdout)
    );
}
