#!/usr/bin/env bash
# Strict-NAT end-to-end test (issue 8): direct WebRTC, TURN and the server's relay
# (QUIC datagrams, and WebSocket when UDP is blocked) between two headless Chromium
# players, each behind its own NAT router, all in Linux network namespaces.
#
#   sudo tests/nat/run.sh                       # all four scenarios (about a minute)
#   sudo NAT_SCENARIOS=2,3 tests/nat/run.sh     # some of them
#
# Needs root (namespaces, veth, nftables), Debian packages iproute2, nftables, coturn,
# chromium, nodejs, and `npm ci` in tests/browser (playwright-core). The server binary
# is built with `cargo build` unless FSP2P_BIN points at one.
# Tears everything down (namespaces and every process started in them) on exit,
# failure or Ctrl-C. Table and logs: test-artifacts/nat/. Exit status 1 on any failed check.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
	echo "nat: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth pairs, nftables NAT): sudo $0"
missing=()
for tool in ip:iproute2 nft:nftables turnserver:coturn turnutils_stunclient:coturn node:nodejs; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
	die "missing: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')(apt-get install -y ${missing[*]})"
fi
[ -d tests/browser/node_modules/playwright-core ] || die "playwright-core missing: (cd tests/browser && npm ci)"
# Network namespaces and nftables NAT must work here (not in every container).
probe="fspnatprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then
	die "cannot create a network namespace (ip netns add failed): needs CAP_SYS_ADMIN and a kernel with netns"
fi
if ! ip netns exec "$probe" nft -f - >/dev/null 2>&1 <<'EOF'; then
table ip probe {
  chain p {
    type nat hook postrouting priority srcnat;
    masquerade random,fully-random
  }
}
EOF
	ip netns del "$probe"
	die "nftables NAT with 'masquerade random,fully-random' is not available in this kernel (nf_tables, nft_masq, nf_nat)"
fi
ip netns del "$probe"

if [ -z "${FSP2P_BIN:-}" ]; then
	cargo build --locked --quiet
fi

export NAT_RUN_ID="$$"
driver=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
		kill -TERM "$driver" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$driver" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$driver" 2>/dev/null || true
	fi
	# Whatever the driver could not remove: namespaces of this run and what runs in them.
	for s in 1 2 3 4; do
		tests/nat/netns.sh down "fspn${NAT_RUN_ID}s$s" || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
node tests/nat/drive.mjs &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=""
echo "nat: finished in $(($(date +%s) - start))s"
exit "$rc"
