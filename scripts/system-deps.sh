#!/usr/bin/env bash
# Installs the Debian packages a profile needs, only when something is missing.
#   up:   PostgreSQL server (stands in for RDS), a JDK (DynamoDB Local), zip, Prometheus (+ promtool)
#   test: + Chromium (browser tests)
set -euo pipefail
profile="${1:-up}"
need=()
have_pg() { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; }
have_pg || need+=(postgresql)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v bc >/dev/null 2>&1 || need+=(bc)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
if [ "$profile" = "test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ "${#need[@]}" -eq 0 ]; then
  echo "    all present"
  exit 0
fi
echo "    installing: ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "missing Debian packages: ${need[*]}; install them as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
else SUDO=""; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a default cluster on install; Valerix runs its own, so stop that one.
if printf '%s\n' "${need[@]}" | grep -qx postgresql; then
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
# Prometheus' package starts a server on :9090; `make up` and the tests start their own.
if printf '%s\n' "${need[@]}" | grep -qx prometheus; then
  $SUDO service prometheus stop >/dev/null 2>&1 || true
  $SUDO service prometheus-node-exporter stop >/dev/null 2>&1 || true
fi
