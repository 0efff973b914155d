#!/usr/bin/env bash
# Strict-NAT end-to-end test (issue 8): direct WebRTC, TURN and the server's relay
# (QUIC datagrams, and WebSocket when UDP is blocked) between two headless Chromium
# players, each behind its own NAT router, all in Linux network namespaces.
#
#   sudo tests/nat/run.sh                        # scenarios 1-4 (about 70 s)
#   sudo NAT_SCENARIOS=2,3 tests/nat/run.sh      # some of them; 5 is an extra control
#
# Needs root (namespaces, veth, nftables) and the Debian packages iproute2, nftables,
# coturn, chromium and nodejs, plus `npm ci` in tests/browser (playwright-core). The
# server binary is built with `cargo build` unless FSP2P_BIN points at one.
# When the machine cannot run it (not root, a missing package, no namespaces or no
# nftables NAT) it prints SKIPPED and exits 0, except with CI set, where it fails.
# Tears everything down (namespaces and every process started in them) on exit,
# failure, Ctrl-C or SIGTERM. Table and logs: test-artifacts/nat/. Exit status 1 on
# any failed check. Settings: see the header of tests/nat/drive.mjs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# What this machine lacks for the test: a loud skip, except under CI (CI is set),
# where a test that cannot run is a failure (as in tests/coturn.rs).
TEST_NAME=nat
. tests/cannot_run.sh

[ "$(id -u)" -eq 0 ] || cannot_run "needs root (network namespaces, veth pairs, nftables NAT): sudo $0"
missing=()
for tool in ip:iproute2 nft:nftables turnserver:coturn turnutils_stunclient:coturn node:nodejs; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	cannot_run "missing Debian packages: ${pkgs}(apt-get install -y ${pkgs% })"
fi
[ -d tests/browser/node_modules/playwright-core ] || cannot_run "playwright-core missing: (cd tests/browser && npm ci)"

# Network namespaces and nftables NAT must work here (they do not in every container).
probe="fspnatprobe$$"
ip netns add "$probe" 2>/dev/null ||
	cannot_run "cannot create a network namespace (ip netns add failed): needs CAP_SYS_ADMIN + CAP_NET_ADMIN and a kernel with network namespaces"
probe_rules='table ip probe {
  chain p {
    type nat hook postrouting priority srcnat;
    masquerade random,fully-random
  }
}'
if ! printf '%s\n' "$probe_rules" | ip netns exec "$probe" nft -f - >/dev/null 2>&1; then
	ip netns del "$probe"
	cannot_run "nftables NAT ('masquerade random,fully-random') does not work in this kernel (needs nf_tables, nft_masq, nf_nat, nf_conntrack)"
fi
ip netns del "$probe"

if [ -z "${FSP2P_BIN:-}" ]; then
	cargo build --locked --quiet
fi

export NAT_RUN_ID="$$"
driver=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
		kill -TERM "$driver" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$driver" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$driver" 2>/dev/null || true
	fi
	# Whatever the driver could not remove: this run's namespaces and what runs in them.
	for p in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^\(fspn${NAT_RUN_ID}s[0-9]*\)-\(pub\|rA\|rB\|pA\|pB\)\$/\1/p" | sort -u); do
		tests/nat/netns.sh down "$p" || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
# In the background so that the traps above run at once on a signal.
node tests/nat/drive.mjs &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=""
echo "nat: finished in $(($(date +%s) - start))s"
exit "$rc"
