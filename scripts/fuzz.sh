#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target in fuzz/ for a bounded time and fails if any
# of them finds a crash (a panic, an overflow, a timeout or running out of memory).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target (default 300); TARGETs default to all of them (cargo fuzz list).
# Installs the nightly toolchain (rustup) and cargo-fuzz (crates.io) when missing.
# Each target starts from its committed seeds (fuzz/seeds/<target>, read only) and keeps
# what it finds in fuzz/corpus/<target> (git-ignored, reused by the next run); a crash is
# saved in fuzz/artifacts/<target>/ and can be replayed with
#   cargo +nightly fuzz run -s none -a <target> fuzz/artifacts/<target>/<file>
# Environment: FUZZ_SANITIZER (default none: the crate forbids unsafe code; `address` for
# ASan), FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_TIMEOUT (seconds per input, default 10).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

SECONDS_PER_TARGET="${1:-300}"
shift || true
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...] (SECONDS: a positive integer)" >&2
  exit 2
fi
SANITIZER="${FUZZ_SANITIZER:-none}"
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
export CARGO_INCREMENTAL=0

# The longest input each target is given (-max_len), in bytes: past the limits the code
# enforces (max_token_bytes is 8192; admin bodies are capped at 64 KiB by the router, but
# the form parser's own limit is its 16 parameters), without wasting runs on huge inputs.
max_len() {
  case "$1" in
    token_raw) echo 12000 ;;
    token_claims | token_extract | config) echo 8192 ;;
    check_request | admin_form) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

say "checking the fuzzing tools"
if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (rustup, minimal profile)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi
echo "$(cargo fuzz --version), $(rustc +nightly --version)"

say "cargo fmt --check (fuzz crate)"
cargo fmt --manifest-path fuzz/Cargo.toml --all --check

BUILD_FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)
say "building the fuzz targets (sanitizer: $SANITIZER, debug assertions on)"
build_start=$(date +%s)
cargo +nightly fuzz build "${BUILD_FLAGS[@]}"
echo "built in $(($(date +%s) - build_start)) s"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

failed=()
summary=()
for target in "${targets[@]}"; do
  say "fuzzing $target for ${SECONDS_PER_TARGET}s"
  corpus="fuzz/corpus/$target"
  seeds="fuzz/seeds/$target"
  mkdir -p "$corpus"
  dirs=("$corpus")
  if [ -d "$seeds" ]; then
    dirs+=("$seeds")
  fi
  args=(
    "-max_total_time=$SECONDS_PER_TARGET"
    "-rss_limit_mb=$RSS_LIMIT_MB"
    "-max_len=$(max_len "$target")"
    "-timeout=$TIMEOUT"
    "-print_final_stats=1"
  )
  if [ -f "fuzz/dict/$target.dict" ]; then
    args+=("-dict=fuzz/dict/$target.dict")
  fi
  log="$(mktemp)"
  status=0
  cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$target" "${dirs[@]}" -- "${args[@]}" \
    >"$log" 2>&1 || status=$?
  runs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    failed+=("$target")
    summary+=("$target: FAILED (exit $status) after ${runs:-?} executions; see fuzz/artifacts/$target/")
  else
    tail -n 3 "$log"
    summary+=("$target: ${runs:-?} executions in ${SECONDS_PER_TARGET}s, no crash")
  fi
  rm -f "$log"
done

say "fuzzing summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashes in: ${failed[*]}" >&2
  exit 1
fi
