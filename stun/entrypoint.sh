#!/bin/sh
# Start coturn with the FlightSim P2P config and a secret that is never committed.
#
# Renders a private copy of the config (directory mode 0700, file 0600) that adds:
#   static-auth-secret=...   one line per accepted secret, from (first found):
#       TURN_SECRET_FILE or FSP2P_TURN_SECRET_FILE   file, one secret per line;
#           line 1 is the CURRENT secret (the one the FlightSim server reads with
#           --turn-secret-file, which uses only the first line), further lines
#           are older/newer secrets coturn keeps accepting during a rotation;
#       TURN_SECRET or FSP2P_TURN_SECRET (+ optional TURN_SECRET_PREVIOUS);
#       /run/secrets/turn_secret (Docker/Compose/Swarm secret), same format as the file.
#   realm=$TURN_REALM                      (optional, overrides the file)
#   listening-ip=... from TURN_LISTENING_IP (comma separated, optional)
#   relay-ip=...     from TURN_RELAY_IP     (comma separated, optional)
#   external-ip=...  from TURN_EXTERNAL_IP  (comma separated; "public" or "public/private")
#   allowed-peer-ip=... from TURN_ALLOWED_PEER_IPS (comma separated; see turnserver.conf)
# then execs turnserver -c <rendered file> "$@" (extra arguments pass through and
# override the file). The secret is never on the command line, so `ps` does not show it.
#
# Other settings:
#   TURN_CONFIG       config to start from (default /etc/coturn/turnserver.conf)
#   TURN_RUNTIME_DIR  parent of the new private directory (mktemp -d) that holds
#                     the rendered config (default ${TMPDIR:-/tmp}; mount a tmpfs there)
#
# Works outside Docker too (the integration test and local development use it):
#   FSP2P_TURN_SECRET=... TURN_CONFIG=stun/turnserver-dev.conf sh stun/entrypoint.sh
set -eu

die() {
	echo "entrypoint: $*" >&2
	exit 1
}

conf="${TURN_CONFIG:-/etc/coturn/turnserver.conf}"
# coturn itself would only warn about a missing file and run without authentication.
[ -r "$conf" ] || die "config file $conf not found or not readable"

secrets=""
nsecrets=0

# Add one secret after checking it can be written to coturn's config verbatim:
# coturn strips leading '=', blanks and quotes from values and cuts lines at 1 KiB.
add_secret() {
	s="$1"
	case "$s" in
	"") die "empty TURN secret" ;;
	*[!A-Za-z0-9._~+/=-]*) die "TURN secret contains characters other than A-Z a-z 0-9 . _ ~ + / = - (use e.g. 'openssl rand -hex 32')" ;;
	=*) die "TURN secret must not start with '='" ;;
	esac
	[ "${#s}" -ge 16 ] || die "TURN secret is shorter than 16 characters"
	[ "${#s}" -le 256 ] || die "TURN secret is longer than 256 characters"
	secrets="$secrets$s
"
	nsecrets=$((nsecrets + 1))
}

read_secret_file() {
	f="$1"
	[ -r "$f" ] || die "TURN secret file $f not found or not readable"
	lineno=0
	while IFS= read -r line || [ -n "$line" ]; do
		lineno=$((lineno + 1))
		# Trim CR and surrounding blanks, as the FlightSim server does.
		line=$(printf '%s' "$line" | tr -d '\r' | sed 's/^[[:blank:]]*//; s/[[:blank:]]*$//')
		if [ -z "$line" ]; then
			# The server takes line 1 as its secret: an empty line 1 would disagree.
			[ "$lineno" -gt 1 ] || die "TURN secret file $f: line 1 (the current secret) is empty"
			continue
		fi
		add_secret "$line"
	done <"$f"
}

secret_file="${TURN_SECRET_FILE:-${FSP2P_TURN_SECRET_FILE:-}}"
secret_env="${TURN_SECRET:-${FSP2P_TURN_SECRET:-}}"
if [ -n "$secret_file" ]; then
	read_secret_file "$secret_file"
elif [ -n "$secret_env" ]; then
	add_secret "$secret_env"
	if [ -n "${TURN_SECRET_PREVIOUS:-}" ]; then
		add_secret "$TURN_SECRET_PREVIOUS"
	fi
elif [ -r /run/secrets/turn_secret ]; then
	read_secret_file /run/secrets/turn_secret
else
	die "no TURN secret: set TURN_SECRET_FILE (or FSP2P_TURN_SECRET_FILE), TURN_SECRET (or FSP2P_TURN_SECRET), or mount /run/secrets/turn_secret"
fi
[ "$nsecrets" -ge 1 ] || die "no TURN secret found"

# Print "key=value" once per comma-separated item of $2 (blanks removed).
each_line() {
	key="$1"
	list=$(printf '%s' "$2" | tr -d '[:space:]')
	old_ifs=$IFS
	IFS=,
	set -f
	# shellcheck disable=SC2086 # splitting on commas is the point
	for item in $list; do
		if [ -n "$item" ]; then
			printf '%s=%s\n' "$key" "$item"
		fi
	done
	set +f
	IFS=$old_ifs
}

umask 077
rundir=$(mktemp -d "${TURN_RUNTIME_DIR:-${TMPDIR:-/tmp}}/flightsim-coturn.XXXXXX")
out="$rundir/turnserver.conf"
{
	cat "$conf"
	printf '\n# ---- added at start-up by stun/entrypoint.sh ----\n'
	printf '%s' "$secrets" | while IFS= read -r s; do
		printf 'static-auth-secret=%s\n' "$s"
	done
	if [ -n "${TURN_REALM:-}" ]; then
		printf 'realm=%s\n' "$TURN_REALM"
	fi
	each_line listening-ip "${TURN_LISTENING_IP:-}"
	each_line relay-ip "${TURN_RELAY_IP:-}"
	each_line external-ip "${TURN_EXTERNAL_IP:-}"
	each_line allowed-peer-ip "${TURN_ALLOWED_PEER_IPS:-}"
} >"$out"

echo "entrypoint: starting coturn with $conf + $nsecrets secret(s) (rendered to $out)" >&2
exec turnserver -c "$out" "$@"
