#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Idempotent: each step checks
# first and does nothing when its tool is already there.
#   - make (Debian package): jemalloc's build script runs it (the server itself needs it too, see
#     the README).
#   - graphviz (Debian package): the DOT output test renders with `dot`.
#   - redis-server, redis-sentinel, redis-tools (Debian packages): the persistence tests start
#     their own Redis servers, sentinels and a cluster on free loopback ports.
#   - rustfmt and clippy (rustup components): the style gates.
#   - kube-apiserver and etcd (built once from Debian's packages by build-kube-apiserver.sh, cached
#     under ~/.cache/astrolabe, no root needed): the tests against a real API server.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "installing Debian packages needs root: run this script as root or with sudo available" >&2
    echo "  (the command was: $*)" >&2
    exit 1
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

apt_install make graphviz redis-server redis-sentinel redis-tools

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^${component}" || rustup component add "$component"
done

"$(dirname "$0")/build-kube-apiserver.sh" >/dev/null
