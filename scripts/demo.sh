#!/usr/bin/env bash
# A local demo of jwt-revoker in front of an upstream, all on 127.0.0.1, in one of its two
# integration modes:
#
#   scripts/demo.sh [ext_authz]   Envoy asks jwt-revoker over ext_authz for every request:
#     curl ──▶ Envoy :10000 ──ext_authz──▶ jwt-revoker :9191 (admin :9192, embedded store)
#                    └──────────────────────▶ upstream :18080 (echoes what it receives)
#
#   scripts/demo.sh module        Envoy verifies the token itself (jwt_authn) and checks it
#                                 with jwt-revoker's dynamic module (envoy/module.yaml),
#                                 which follows the revocation feed on the admin port:
#     curl ──▶ Envoy :10000 [jwt_authn → libjwt_revoker_envoy.so] ──▶ upstream :18080
#                                  ▲ Revocations/Watch (feed token)
#              jwt-revoker admin :9192 (demo/module.toml, embedded store)
#
# It mints tokens, shows one accepted (200), revokes it with `jwt-revoker revoke` and
# shows it refused (401 + WWW-Authenticate) while another token still passes, then
# re-approves it with `jwt-revoker unrevoke`. It exits non-zero when any step does not
# behave as shown, and stops everything it started when it exits.
#
# Ports: DEMO_LISTEN_PORT, DEMO_ENVOY_ADMIN_PORT, DEMO_AUTHZ_PORT, DEMO_ADMIN_PORT,
# DEMO_METRICS_PORT, DEMO_UPSTREAM_PORT. State (admin and feed tokens, revocations, logs)
# lives in .demo/ (git-ignored).
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

MODE="${1:-ext_authz}"
case "$MODE" in
  ext_authz | module) ;;
  *)
    echo "usage: scripts/demo.sh [ext_authz|module]" >&2
    exit 2
    ;;
esac

LISTEN_PORT="${DEMO_LISTEN_PORT:-10000}"
ENVOY_ADMIN_PORT="${DEMO_ENVOY_ADMIN_PORT:-9901}"
AUTHZ_PORT="${DEMO_AUTHZ_PORT:-9191}"
ADMIN_PORT="${DEMO_ADMIN_PORT:-9192}"
METRICS_PORT="${DEMO_METRICS_PORT:-9090}"
UPSTREAM_PORT="${DEMO_UPSTREAM_PORT:-18080}"
STATE="$REPO_ROOT/.demo"
BIN="$REPO_ROOT/target/debug/jwt-revoker"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"

# --- processes: started in the background, recorded, stopped on exit -----------------

PIDS=()
cleanup() {
  local status=$?
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$STATE"/*.pid
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); logs are in $STATE/*.log" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops a process a previous, interrupted run of this demo left behind: only the pid it
# recorded, and only if that pid still runs a command of this demo.
stop_stale() {
  local pidfile="$STATE/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"; then
    echo "stopping $1 (pid $pid) left over from an earlier run"
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pidfile"
}

# start NAME COMMAND...: runs COMMAND in the background, output to .demo/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$STATE/$name.log" 2>&1 &
  PIDS+=("$!")
  echo "$!" >"$STATE/$name.pid"
}

# wait_for WHAT PID COMMAND...: polls COMMAND until it succeeds (30 s at most); fails at
# once, printing the log, if process PID has died.
wait_for() {
  local what="$1" pid="$2" name="$3"
  shift 3
  local deadline=$((SECONDS + 30))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what died; its log ($STATE/$name.log):" >&2
      tail -n 40 "$STATE/$name.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for $what; its log ($STATE/$name.log):" >&2
      tail -n 40 "$STATE/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

port_in_use() {
  (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- requests -------------------------------------------------------------------------

# request TOKEN: GET /hello through Envoy with the token; sets STATUS, leaves the response
# headers in .demo/headers and the body in .demo/body.
request() {
  local auth=()
  if [ -n "$1" ]; then
    auth=(-H "authorization: Bearer $1")
  fi
  STATUS="$(curl -sS -o "$STATE/body" -D "$STATE/headers" -w '%{http_code}' \
    "${auth[@]}" "http://127.0.0.1:$LISTEN_PORT/hello")"
}

# expect STATUS TOKEN: requests until the answer has that status (revocations reach the
# checking replica within milliseconds; 5 s at most), then prints it.
expect() {
  local want="$1" token="$2"
  local deadline=$((SECONDS + 5))
  request "$token"
  while [ "$STATUS" != "$want" ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.05
    request "$token"
  done
  echo "HTTP $STATUS"
  if [ "$STATUS" != "$want" ]; then
    echo "expected HTTP $want; response headers and body:" >&2
    cat "$STATE/headers" "$STATE/body" >&2
    exit 1
  fi
}

show_www_authenticate() {
  grep -i '^www-authenticate:' "$STATE/headers" | tr -d '\r'
}

show_upstream_view() {
  python3 - "$STATE/body" <<'PY'
import json, sys
headers = json.load(open(sys.argv[1]))["headers"]
if "x-jwt-payload" in headers:  # module mode: jwt_authn's verified payload
    import base64
    payload = headers["x-jwt-payload"]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    print("  upstream saw x-jwt-payload with sub:", claims.get("sub", "(none)"))
else:
    print("  upstream saw x-jwt-sub:", headers.get("x-jwt-sub", "(none)"))
auth = headers.get("authorization")
print("  upstream saw authorization:", auth[:20] + "…" if auth else "(stripped)")
PY
}

# jwt-revoker client commands against the demo server.
cli() {
  local command="$1"
  shift
  JWT_REVOKER_ADMIN_TOKEN="$(cat "$STATE/admin-token")" \
    "$BIN" "$command" --admin-addr "$ADMIN_URL" "$@"
}

mint() {
  "$REPO_ROOT/target/debug/examples/mint_token" \
    --key demo/keys/rsa.pem --alg RS256 --kid demo-rsa-1 \
    --iss https://demo.issuer --aud api --sub "$1" --ttl 1h
}

# --- set up ---------------------------------------------------------------------------

mkdir -p "$STATE/data" "$STATE/module-data"
stop_stale jwt-revoker "$BIN serve"
stop_stale upstream "demo/upstream.py"
stop_stale envoy "$STATE/envoy.yaml"
rm -f "$STATE/envoy.yaml"

for port in "$LISTEN_PORT" "$ENVOY_ADMIN_PORT" "$AUTHZ_PORT" "$ADMIN_PORT" "$METRICS_PORT" \
  "$UPSTREAM_PORT"; do
  if port_in_use "$port"; then
    echo "port $port on 127.0.0.1 is in use; free it or choose other DEMO_*_PORT values" >&2
    exit 1
  fi
done

ensure_commands curl:curl python3:python3 openssl:openssl
ensure_envoy

say "building jwt-revoker and the mint_token example (debug)"
cargo build --quiet --bin jwt-revoker --example mint_token
if [ "$MODE" = module ]; then
  say "building the Envoy module (target/debug/libjwt_revoker_envoy.so)"
  cargo build --quiet -p jwt-revoker-envoy
fi

(
  umask 077
  [ -s "$STATE/admin-token" ] || openssl rand -hex 32 >"$STATE/admin-token"
  [ "$MODE" = ext_authz ] || [ -s "$STATE/feed-token" ] || openssl rand -hex 32 >"$STATE/feed-token"
)

say "starting the upstream on 127.0.0.1:$UPSTREAM_PORT"
start upstream python3 demo/upstream.py "$UPSTREAM_PORT"
wait_for "the upstream" "${PIDS[-1]}" upstream \
  curl -sf "http://127.0.0.1:$UPSTREAM_PORT/"

if [ "$MODE" = module ]; then
  SERVER_CONFIG=demo/module.toml
  SERVER_STORE=.demo/module-data
else
  SERVER_CONFIG=demo/config.toml
  SERVER_STORE=.demo/data
fi
say "starting jwt-revoker ($SERVER_CONFIG: authz 127.0.0.1:$AUTHZ_PORT, admin $ADMIN_URL, store $SERVER_STORE)"
start jwt-revoker env -u JWT_REVOKER_ADMIN_TOKEN "$BIN" serve --config "$SERVER_CONFIG" \
  --authz-addr "127.0.0.1:$AUTHZ_PORT" --admin-addr "127.0.0.1:$ADMIN_PORT" \
  --metrics-addr "127.0.0.1:$METRICS_PORT"
wait_for "jwt-revoker" "${PIDS[-1]}" jwt-revoker cli status
SERVER_PID="${PIDS[-1]}"

say "starting Envoy on 127.0.0.1:$LISTEN_PORT (admin 127.0.0.1:$ENVOY_ADMIN_PORT)"
if [ "$MODE" = module ]; then
  # The module follows the feed on jwt-revoker's admin port with the feed token.
  sed -e "s/{{listen_port}}/$LISTEN_PORT/g" \
    -e "s/{{admin_port}}/$ENVOY_ADMIN_PORT/g" \
    -e "s/{{upstream_port}}/$UPSTREAM_PORT/g" \
    -e "s#{{issuer}}#https://demo.issuer#g" \
    -e "s#{{jwks_path}}#$REPO_ROOT/demo/keys/jwks.json#g" \
    -e "s#{{filter_config}}#{\"feed\": \"127.0.0.1:$ADMIN_PORT\", \"feed_token_file\": \"$STATE/feed-token\", \"realm\": \"jwt-revoker-demo\"}#g" \
    envoy/module.yaml >"$STATE/envoy.yaml"
else
  sed -e "s/{{listen_port}}/$LISTEN_PORT/g" \
    -e "s/{{admin_port}}/$ENVOY_ADMIN_PORT/g" \
    -e "s/{{authz_port}}/$AUTHZ_PORT/g" \
    -e "s/{{upstream_port}}/$UPSTREAM_PORT/g" \
    envoy/envoy.yaml >"$STATE/envoy.yaml"
fi
# Where Envoy finds libjwt_revoker_envoy.so (module mode; unused otherwise).
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$REPO_ROOT/target/debug"
"$ENVOY_BIN" --mode validate -c "$STATE/envoy.yaml" --disable-hot-restart >"$STATE/envoy-validate.log" 2>&1 || {
  cat "$STATE/envoy-validate.log" >&2
  exit 1
}
start envoy "$ENVOY_BIN" -c "$STATE/envoy.yaml" --disable-hot-restart --concurrency 1
wait_for "Envoy" "${PIDS[-1]}" envoy curl -sf "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready"
ENVOY_PID="${PIDS[-1]}"

ALICE="$(mint alice)"
BOB="$(mint bob)"
if [ "$MODE" = module ]; then
  # The whole chain is up once the module has loaded the revocation set over the feed:
  # a valid token passes (200) instead of being refused for want of the set (503).
  wait_for "the module's revocation set (curl → Envoy → module ◀ feed)" "$ENVOY_PID" envoy \
    bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'authorization: Bearer $ALICE' \
      http://127.0.0.1:$LISTEN_PORT/hello)\" = 200 ]"
else
  # The whole chain is up once a request without a token is refused by jwt-revoker (401)
  # rather than by Envoy for want of an answer (403).
  wait_for "the chain curl → Envoy → jwt-revoker" "$SERVER_PID" jwt-revoker \
    bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$LISTEN_PORT/hello)\" = 401 ]"
fi

# --- the demo -------------------------------------------------------------------------

say "minted two RS256 tokens (issuer https://demo.issuer): alice's and bob's"
echo "alice: ${ALICE:0:40}…"
echo "bob:   ${BOB:0:40}…"

if [ "$MODE" = module ]; then
  say "GET /hello without a token (refused by Envoy's jwt_authn)"
else
  say "GET /hello without a token"
fi
expect 401 ""
show_www_authenticate

say "GET /hello with alice's token"
expect 200 "$ALICE"
show_upstream_view

say "jwt-revoker revoke --token <alice's token> --reason 'demo: laptop stolen'"
cli revoke --token "$ALICE" --reason "demo: laptop stolen"

say "jwt-revoker list"
cli list

say "GET /hello with alice's token, now revoked"
expect 401 "$ALICE"
show_www_authenticate
echo "body: $(cat "$STATE/body")"

say "GET /hello with bob's token"
expect 200 "$BOB"
show_upstream_view

say "jwt-revoker unrevoke --token <alice's token>"
cli unrevoke --token "$ALICE"

say "GET /hello with alice's token, re-approved"
expect 200 "$ALICE"

say "jwt-revoker status"
cli status

say "demo complete: every step behaved as shown"
