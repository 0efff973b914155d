#!/usr/bin/env bash
# The NAT test network: Linux network namespaces, veth pairs and nftables NAT.
#
#   tests/nat/netns.sh up PREFIX NAT_A NAT_B    build it (NAT_x: cone | symmetric | symmetric-noturn | noudp)
#   tests/nat/netns.sh down PREFIX              kill what runs inside PREFIX-* namespaces, delete them
#
#              PREFIX-pub  ("the internet", no forwarding)
#              bridge br0: 203.0.113.2 (FlightSim server) + 203.0.113.3 (coturn)
#                 |                                  |
#        203.0.113.11 wan                      203.0.113.12 wan
#        PREFIX-rA  (NAT router, nftables)     PREFIX-rB
#        10.1.0.1 lan                          10.2.0.1 lan
#                 |                                  |
#        10.1.0.2 eth0  PREFIX-pA (player A)   10.2.0.2 eth0  PREFIX-pB (player B)
#
# Addresses are documentation (203.0.113.0/24) and private ranges, and exist only
# inside these namespaces: no namespace has a link to the host's network, so no
# packet can leave the machine. IPv6 is disabled everywhere (IPv4 NAT is the subject).
#
# Router behaviours. All of them forward LAN→WAN and let WAN→LAN (and WAN→router)
# through only for established/related flows, like a home router. Dropping unsolicited
# packets to the router itself in its input chain matters: a dropped packet never
# confirms a conntrack entry, so an early ICE check from the other player does not
# occupy the (router port, remote endpoint) tuple and push our own later outgoing
# mapping for that endpoint onto another port (which would make the cone NAT behave
# like a symmetric one for exactly the flow hole punching needs).
#   cone              masquerade, source ports preserved: endpoint-independent mapping
#                     (one public port per local socket, whatever the destination),
#                     address-and-port-dependent filtering (Linux conntrack). Hole punching works.
#   symmetric         masquerade random,fully-random: a new random public port for every
#                     new destination (endpoint-dependent mapping). The port a STUN server
#                     sees is not the one the other player's packets must target.
#   symmetric-noturn  symmetric, plus every packet to coturn's address (203.0.113.3: STUN,
#                     TURN and its relay ports) dropped: no server-reflexive and no relay candidates.
#   noudp             cone, plus every forwarded UDP packet dropped (a network that only lets
#                     TCP out): no QUIC/WebTransport, no WebRTC, no STUN/TURN over UDP.
set -euo pipefail

PUB_SERVER=203.0.113.2
PUB_TURN=203.0.113.3

die() {
	echo "netns.sh: $*" >&2
	exit 1
}

ns_list() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-(pub|rA|rB|pA|pB)\$" || true
}

# Apply sysctls every namespace wants: no IPv6, no forwarding unless asked.
ns_base() {
	local ns="$1"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

router_rules() {
	local mode="$1" masq extra=""
	case "$mode" in
	cone) masq="masquerade" ;;
	symmetric) masq="masquerade random,fully-random" ;;
	symmetric-noturn)
		masq="masquerade random,fully-random"
		extra="ip daddr $PUB_TURN drop
    ip saddr $PUB_TURN drop"
		;;
	noudp)
		masq="masquerade"
		extra="meta l4proto udp drop"
		;;
	*) die "unknown NAT type '$mode' (cone | symmetric | symmetric-noturn | noudp)" ;;
	esac
	cat <<EOF
table ip fspnat {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    $extra
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
}
EOF
}

up() {
	local p="$1" nat_a="$2" nat_b="$3"
	[ -z "$(ns_list "$p")" ] || die "namespaces $p-* already exist (run: $0 down $p)"
	# Validate both NAT types before building anything.
	router_rules "$nat_a" >/dev/null
	router_rules "$nat_b" >/dev/null

	ns_base "$p-pub"
	ip -n "$p-pub" link add br0 type bridge
	ip -n "$p-pub" addr add "$PUB_SERVER/24" dev br0
	ip -n "$p-pub" addr add "$PUB_TURN/24" dev br0
	ip -n "$p-pub" link set br0 up

	local side idx nat
	for side in A B; do
		if [ "$side" = A ]; then idx=1 nat="$nat_a"; else idx=2 nat="$nat_b"; fi
		ns_base "$p-r$side"
		ns_base "$p-p$side"
		# Router WAN <-> a port of the public bridge.
		ip link add wan netns "$p-r$side" type veth peer name "wan$side" netns "$p-pub"
		ip -n "$p-pub" link set "wan$side" master br0
		ip -n "$p-pub" link set "wan$side" up
		ip -n "$p-r$side" addr add "203.0.113.1$idx/24" dev wan
		ip -n "$p-r$side" link set wan up
		# Router LAN <-> player.
		ip link add lan netns "$p-r$side" type veth peer name eth0 netns "$p-p$side"
		ip -n "$p-r$side" addr add "10.$idx.0.1/24" dev lan
		ip -n "$p-r$side" link set lan up
		ip -n "$p-p$side" addr add "10.$idx.0.2/24" dev eth0
		ip -n "$p-p$side" link set eth0 up
		ip -n "$p-p$side" route add default via "10.$idx.0.1"
		ip netns exec "$p-r$side" sysctl -qw net.ipv4.ip_forward=1
		router_rules "$nat" | ip netns exec "$p-r$side" nft -f -
	done
}

down() {
	local p="$1" ns pids
	for ns in $(ns_list "$p"); do
		# Only processes inside our own namespaces: the ones this test started there.
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086 # one argument per pid
			kill -TERM $pids 2>/dev/null || true
		fi
	done
	for ns in $(ns_list "$p"); do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			pids=$(ip netns pids "$ns" 2>/dev/null || true)
			[ -z "$pids" ] && break
			sleep 0.1
		done
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086
			kill -KILL $pids 2>/dev/null || true
		fi
		ip netns del "$ns" 2>/dev/null || true
	done
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth, nftables)"
case "${1:-}" in
up)
	[ $# -eq 4 ] || die "usage: $0 up PREFIX NAT_A NAT_B"
	# Never leave half a network behind.
	trap 'down "$2"' ERR
	up "$2" "$3" "$4"
	;;
down)
	[ $# -eq 2 ] || die "usage: $0 down PREFIX"
	down "$2"
	;;
rules)
	# Print the nftables ruleset of a router type (documentation / debugging).
	router_rules "$2"
	;;
*) die "usage: $0 up PREFIX NAT_A NAT_B | down PREFIX | rules NAT_TYPE" ;;
esac
