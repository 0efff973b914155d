#!/usr/bin/env bash
# The soak test's network: a server and its clients on either side of a lossy bridge.
#
#   tests/soak/netns.sh up PREFIX [bridge flags]   build it, start the bridge (its pid: PREFIX.bridge.pid in $SOAK_DIR)
#   tests/soak/netns.sh down PREFIX                stop what runs in PREFIX-* namespaces, delete them
#
#   PREFIX-srv  10.77.0.1/24 s0 ── m0  PREFIX-mid  m1 ── c0 10.77.0.2/24  PREFIX-cli
#                                 lossy_bridge.py m0 m1
#                                 (300 ms ± 300 ms, 5 % loss, each way)
#
# No namespace has a link to the host's network. IPv6 is off everywhere. The
# endpoints' veths make no segments larger than one packet (gso_max_segs 1), so
# the bridge only ever carries frames of the path's MTU.
set -euo pipefail

SRV_IP=10.77.0.1
CLI_IP=10.77.0.2

ns_base() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

up() {
	local p="$1"
	shift
	ns_base "$p-srv"
	ns_base "$p-mid"
	ns_base "$p-cli"
	ip link add s0 netns "$p-srv" type veth peer name m0 netns "$p-mid"
	ip link add c0 netns "$p-cli" type veth peer name m1 netns "$p-mid"
	ip -n "$p-srv" addr add "$SRV_IP/24" dev s0
	ip -n "$p-cli" addr add "$CLI_IP/24" dev c0
	ip -n "$p-srv" link set s0 gso_max_segs 1 gso_max_size 1500 up
	ip -n "$p-cli" link set c0 gso_max_segs 1 gso_max_size 1500 up
	ip -n "$p-mid" link set m0 promisc on up
	ip -n "$p-mid" link set m1 promisc on up
	local dir="${SOAK_DIR:-/tmp}"
	ip netns exec "$p-mid" python3 "$(dirname "$0")/lossy_bridge.py" m0 m1 "$@" \
		>"$dir/bridge.log" 2>&1 &
	echo $! >"$dir/bridge.pid"
}

down() {
	local p="$1" ns pid
	for ns in "$p-cli" "$p-srv" "$p-mid"; do
		ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
	done
	sleep 0.5
	for ns in "$p-cli" "$p-srv" "$p-mid"; do
		ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down "$2" ;;
*) echo "usage: $0 up PREFIX [bridge flags] | down PREFIX" >&2; exit 2 ;;
esac
