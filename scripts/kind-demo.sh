#!/usr/bin/env bash
# Tries jwt-revoker on Kubernetes, on a machine with Docker, kind, kubectl, istioctl and
# openssl: creates the kind cluster of kind-cluster.yaml, builds the image and loads it
# into the cluster, installs Istio with jwt-revoker as an extension provider, deploys
# jwt-revoker + Redis (password, persistent volume, NetworkPolicies) + a sample app
# (httpbin) behind a CUSTOM AuthorizationPolicy, then runs allow → revoke → deny through
# the mesh. Safe to run again. Remove everything with
#   kind delete cluster --name jwt-revoker
# Usage: scripts/kind-demo.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER=jwt-revoker
IMAGE=jwt-revoker:dev

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# base64url without padding, of stdin.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# Prints a one-hour RS256 token of the demo issuer for subject $1, signed with the demo
# key (demo/keys/rsa.pem; deploy/configmap.yaml trusts its public half).
mint() {
  local now header payload signature
  now="$(date +%s)"
  header="$(printf '{"alg":"RS256","typ":"JWT","kid":"demo-rsa-1"}' | b64url)"
  payload="$(printf '{"iss":"https://demo.issuer","aud":"api","sub":"%s","iat":%d,"exp":%d,"jti":"%s"}' \
    "$1" "$now" "$((now + 3600))" "$(openssl rand -hex 8)" | b64url)"
  signature="$(printf '%s.%s' "$header" "$payload" \
    | openssl dgst -sha256 -sign "$REPO_ROOT/demo/keys/rsa.pem" -binary | b64url)"
  printf '%s.%s.%s' "$header" "$payload" "$signature"
}

# The HTTP status of GET httpbin /get with bearer token $1, sent from inside the mesh.
status_with() {
  kubectl -n demo exec deploy/curl -c curl -- curl -s -o /dev/null -w '%{http_code}' \
    -H "authorization: Bearer $1" http://httpbin.demo.svc.cluster.local:8000/get
}

# Polls until a request with token $2 gets HTTP status $1 (60 s at most).
expect_status() {
  local got=""
  for _ in $(seq 60); do
    got="$(status_with "$2" || true)"
    if [ "$got" = "$1" ]; then
      echo "HTTP $got"
      return
    fi
    sleep 1
  done
  echo "expected HTTP $1, got $got" >&2
  return 1
}

main() {
  cd "$REPO_ROOT"
  for tool in docker kind kubectl istioctl openssl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
  done

  say "kind cluster $CLUSTER"
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --config kind-cluster.yaml
  fi
  kubectl config use-context "kind-$CLUSTER"

  say "image $IMAGE"
  docker build -t "$IMAGE" .
  kind load docker-image "$IMAGE" --name "$CLUSTER"

  say "Istio, with jwt-revoker as an extension provider"
  istioctl install -y -f deploy/istio/istio-operator.yaml

  say "jwt-revoker and Redis"
  kubectl apply -f deploy/namespace.yaml
  local admin_token
  admin_token="$(openssl rand -hex 32)"
  kubectl -n jwt-revoker create secret generic jwt-revoker-admin-token \
    --from-literal=token="$admin_token" --dry-run=client -o yaml | kubectl apply -f -
  # Redis's password: made once and kept, since Redis reads it only when it starts (hex,
  # so that it goes into the store URL unescaped).
  if ! kubectl -n jwt-revoker get secret jwt-revoker-redis >/dev/null 2>&1; then
    kubectl -n jwt-revoker create secret generic jwt-revoker-redis \
      --from-literal=password="$(openssl rand -hex 32)"
  fi
  kubectl apply -f deploy/network-policies.yaml
  # An older version of the demo ran Redis as a Deployment (data on an emptyDir).
  kubectl -n jwt-revoker delete deployment redis --ignore-not-found
  kubectl apply -f deploy/configmap.yaml -f deploy/redis.yaml -f deploy/jwt-revoker.yaml
  # A new admin token (or image) needs new pods.
  kubectl -n jwt-revoker rollout restart deploy/jwt-revoker
  kubectl -n jwt-revoker rollout status statefulset/redis --timeout=180s
  kubectl -n jwt-revoker rollout status deploy/jwt-revoker --timeout=180s

  say "sample app behind a CUSTOM AuthorizationPolicy"
  kubectl apply -f deploy/demo/httpbin.yaml -f deploy/demo/curl.yaml
  kubectl apply -f deploy/istio/authorization-policy.yaml
  kubectl -n demo rollout status deploy/httpbin --timeout=180s
  kubectl -n demo rollout status deploy/curl --timeout=180s

  local token
  token="$(mint alice)"
  say "a valid token is allowed"
  expect_status 200 "$token"
  say "no token is denied"
  expect_status 401 ""
  say "revoke it (jwt-revoker revoke, inside a jwt-revoker pod)"
  kubectl -n jwt-revoker exec deploy/jwt-revoker -- jwt-revoker revoke --token "$token" \
    --reason "kind demo"
  say "the revoked token is denied by every replica"
  expect_status 401 "$token"
  say "a fresh token of another user is still allowed"
  expect_status 200 "$(mint bob)"
  say "done: allow → revoke → deny through the mesh"
}

# Sourcing the script (as the tests do, to check mint) defines the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
