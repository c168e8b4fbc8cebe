#!/usr/bin/env bash
# Installs the Debian packages a profile needs, only when something is missing.
#   up:   PostgreSQL server (stands in for RDS), a JDK (DynamoDB Local), zip, Prometheus (+ promtool)
#   test: + Chromium (browser tests)
set -euo pipefail
profile="${1:-up}"
need=()
# The interpreter the Makefile found (PYTHON): 3.11+, with the venv module and ensurepip
# (Debian ships those apart, in python3.X-venv).
python="${PYTHON:-}"
if [ -z "$python" ]; then
  echo "no Python 3.11+ on PATH (tried python3, python3.11, python3.12); as root: apt-get install -y python3 python3-venv" >&2
  exit 1
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "PYTHON=$python: no such program; pass a Python 3.11+: make up PYTHON=/usr/bin/python3" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "$python is $("$python" -V 2>&1), Valerix needs Python 3.11+; pass one: make up PYTHON=/usr/bin/python3.11" >&2
  exit 1
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  case "$(command -v "$python")" in
    /usr/bin/*) need+=("python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv") ;;
    *) echo "$python has no venv/ensurepip module; rebuild it with them, or: make up PYTHON=/usr/bin/python3" >&2
       exit 1 ;;
  esac
fi
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
