#!/usr/bin/env bash
# The dashboard test (issue 25): a real Prometheus (Debian's `prometheus`)
# scrapes two real servers carrying real clients that report on every path,
# then every query of deploy/grafana/fsp2p-dashboard.json is asked of
# Prometheus's HTTP API and must return at least one series with a finite
# value (tests/dashboard/check.py). Then the same check runs on a copy of the
# dashboard with one metric name misspelled and must fail: the test proves
# it can.
#
#   tests/dashboard/run.sh            (make test-dashboard)
#
# The clients are real and report by themselves; nothing is fabricated:
# - Rust clients (examples/quality_reporter.rs): on each node four players
#   relay at 30 Hz (on node 1 one of them over WebSocket) and a newcomer
#   joins and leaves every 3 s, so `welcome` and relay `first_frame`
#   milestones keep coming; their reports are the client's own.
# - headless Chromium pages running the browser client (client/web), from
#   tests/dashboard/browsers.mjs: a direct pair on node 1, a pair forced
#   through TURN on node 2 (a real coturn, started here, whose credentials
#   both servers hand out), and a page on node 2 whose ICE fails for real
#   (no_candidates) in a session with a Rust client.
# Beyond "every query returns data", the check requires players on the
# direct, TURN and relay paths, host and relay ICE candidates, an ICE
# failure, and players on both nodes.
#
# FSP2P_BIN: the server binary (default target/debug/flightsim-p2p, built
# here with the example client). FSP2P_REPORTER: the Rust client (default
# target/debug/examples/quality_reporter). CHROMIUM: the browser (default
# /usr/bin/chromium). Needs prometheus, chromium, coturn, node and
# tests/browser/node_modules (npm ci there); without one of them: SKIPPED
# (exit 0), except under CI=true (exit 1).
set -euo pipefail
cd "$(dirname "$0")/../.."

started=$(date +%s)
prom="$(command -v prometheus || true)"
[ -n "$prom" ] || { [ -x /usr/bin/prometheus ] && prom=/usr/bin/prometheus; } || true
missing=()
[ -n "$prom" ] || missing+=("prometheus (apt-get install prometheus)")
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=("chromium (apt-get install chromium)")
command -v turnserver > /dev/null || missing+=("coturn (apt-get install coturn)")
command -v node > /dev/null || missing+=("node (apt-get install nodejs)")
[ -d tests/browser/node_modules/playwright-core ] || missing+=("playwright-core ((cd tests/browser && npm ci))")
if [ ${#missing[@]} -gt 0 ]; then
	if [ "${CI:-}" = "true" ]; then
		printf 'dashboard: FAIL: missing %s (or scripts/deps.sh)\n' "${missing[@]}" >&2
		exit 1
	fi
	echo "dashboard: SKIPPED (missing: ${missing[*]})"
	exit 0
fi

if [ -z "${FSP2P_BIN:-}" ] || [ -z "${FSP2P_REPORTER:-}" ]; then
	cargo build --locked --quiet --bin flightsim-p2p --example quality_reporter
fi
bin="${FSP2P_BIN:-target/debug/flightsim-p2p}"
reporter="${FSP2P_REPORTER:-target/debug/examples/quality_reporter}"
dashboard="${DASHBOARD_JSON:-deploy/grafana/fsp2p-dashboard.json}"
art="test-artifacts/dashboard"
rm -rf "$art"
mkdir -p "$art"
work="$(mktemp -d "${TMPDIR:-/tmp}/fsp2p-dashboard.XXXXXX")"

pids=()
cleanup() {
	# Only what this script started, by pid.
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url what log
	local i=0
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 150 ]; then
			echo "dashboard: FAIL: $2 did not answer $1 in 15 s; $3:" >&2
			tail -20 "$3" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# coturn (stun/turnserver-dev.conf: loopback only, relaying to loopback
# peers), through the entrypoint as everywhere else, with a secret made here.
turn="$(free_port)"
relay_min=$((40000 + RANDOM % 20000))
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$work/turn-secret"
TURN_CONFIG=stun/turnserver-dev.conf TURN_SECRET_FILE="$work/turn-secret" TURN_RUNTIME_DIR="$work" \
	sh stun/entrypoint.sh --listening-port "$turn" --min-port "$relay_min" --max-port $((relay_min + 40)) \
	--pidfile "$work/coturn.pid" > "$art/coturn.log" 2>&1 &
pids+=($!)
# Ready when it answers a STUN binding request on its UDP listener.
stun_ok() {
	python3 - "$1" <<'PY'
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
tid = os.urandom(12)
s.sendto(struct.pack("!HHI", 1, 0, 0x2112A442) + tid, ("127.0.0.1", int(sys.argv[1])))
try:
    sys.exit(0 if s.recv(1500)[8:20] == tid else 1)
except OSError:
    sys.exit(1)
PY
}
i=0
until stun_ok "$turn"; do
	i=$((i + 1))
	if [ $i -gt 50 ]; then
		echo "dashboard: FAIL: coturn did not answer STUN on 127.0.0.1:$turn in 10 s; coturn.log:" >&2
		tail -20 "$art/coturn.log" >&2
		exit 1
	fi
done

# Two nodes (single servers side by side: per-node panels need two
# instances), both serving the demo page and handing out TURN credentials.
quic=() http=() hash=()
for n in 1 2; do
	q="$(free_port)"
	h="$(free_port)"
	NO_COLOR=1 "$bin" serve --listen "127.0.0.1:$q" --http-listen "127.0.0.1:$h" \
		--cert-dir "$work/certs$n" --web-dir client/web --turn-secret-file "$work/turn-secret" \
		--stun-url "stun:127.0.0.1:$turn" --turn-url "turn:127.0.0.1:$turn?transport=udp" \
		> "$art/server$n.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$h/healthz" "server $n" "$art/server$n.log"
	quic+=("127.0.0.1:$q")
	http+=("127.0.0.1:$h")
	hash+=("$(curl -fsS "http://127.0.0.1:$h/cert-hash" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hex"])')")
done

pport="$(free_port)"
cat > "$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fsp2p
    static_configs:
      - targets: ['${http[0]}', '${http[1]}']
YML
cp "$work/prometheus.yml" "$art/"
"$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
	--web.listen-address="127.0.0.1:$pport" > "$art/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$pport/-/ready" "prometheus" "$art/prometheus.log"
echo "dashboard: prometheus $($prom --version 2>&1 | head -1) on 127.0.0.1:$pport, nodes ${http[*]}"

# Rust clients: node 1 with a WebSocket player (reports over both
# transports), node 2 over QUIC only. They run until this script ends.
"$reporter" --server "${quic[0]}" --cert-hash "${hash[0]}" --ws "ws://${http[0]}/ws" --secs 900 \
	> "$art/reporter1.log" 2>&1 &
pids+=($!)
"$reporter" --server "${quic[1]}" --cert-hash "${hash[1]}" --secs 900 > "$art/reporter2.log" 2>&1 &
pids+=($!)

# Browser clients: ready once every page is on its path and has reported.
NODE1_HTTP="${http[0]}" NODE2_HTTP="${http[1]}" NODE1_QUIC="${quic[0]}" NODE2_QUIC="${quic[1]}" \
	NODE2_CERT_HASH="${hash[1]}" FSP2P_REPORTER="$reporter" ART="$art" \
	node tests/dashboard/browsers.mjs > "$art/browsers.log" 2>&1 &
browsers=$!
pids+=($browsers)
i=0
until grep -q '^browsers: ready' "$art/browsers.log"; do
	i=$((i + 1))
	if ! kill -0 "$browsers" 2>/dev/null || [ $i -gt 600 ]; then
		echo "dashboard: FAIL: the browser clients did not get ready; browsers.log:" >&2
		tail -40 "$art/browsers.log" >&2
		exit 1
	fi
	sleep 0.1
done
grep '^browsers: ' "$art/browsers.log" | sed 's/^/dashboard: /'

metrics="fsp2p_players_by_path,fsp2p_links_by_path,fsp2p_links_by_grade,fsp2p_setup_seconds"
metrics+=",fsp2p_first_frame_seconds,fsp2p_ice_failures_total,fsp2p_ice_candidates_total"
metrics+=",fsp2p_link_rtt_seconds,fsp2p_link_loss_ratio,fsp2p_reports_total"
metrics+=",fsp2p_relay_forwarded_total,fsp2p_relay_forwarded_bytes_total"
# Rates and quantiles over 30 s windows need some scrapes: ask again for up to 120 s.
if ! python3 tests/dashboard/check.py --prometheus "http://127.0.0.1:$pport" \
	--dashboard "$dashboard" --wait 120 --targets 2 --metrics "$metrics" \
	--require 'sum(fsp2p_players_by_path{path="direct"}) > 0' \
	--require 'sum(fsp2p_players_by_path{path="turn"}) > 0' \
	--require 'sum(fsp2p_players_by_path{path="relay"}) > 0' \
	--require 'sum(fsp2p_ice_candidates_total{type="host"}) > 0' \
	--require 'sum(fsp2p_ice_candidates_total{type="relay"}) > 0' \
	--require 'sum(fsp2p_ice_failures_total) > 0' \
	--require 'count(sum by (instance) (fsp2p_players_by_path) > 0) >= 2'; then
	echo "dashboard: FAIL (logs in $art/)" >&2
	exit 1
fi

# The browser clients (and the Rust client they started) lasted the check.
kill -0 "$browsers" 2>/dev/null || {
	echo "dashboard: FAIL: the browser clients ended during the check; browsers.log:" >&2
	tail -20 "$art/browsers.log" >&2
	exit 1
}

# What the clients made of it, for the log.
python3 - "http://127.0.0.1:$pport" <<'PY'
import json, sys, urllib.parse, urllib.request
def ask(e):
    u = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": e})
    with urllib.request.urlopen(u, timeout=10) as r:
        return json.load(r)["data"]["result"]
for title, e, label in [
    ("players by path", "sum by (path) (fsp2p_players_by_path)", "path"),
    ("links by grade", "sum by (grade) (fsp2p_links_by_grade)", "grade"),
    ("ICE candidates", "sum by (type) (fsp2p_ice_candidates_total)", "type"),
    ("ICE failures", "sum by (reason) (fsp2p_ice_failures_total)", "reason"),
    ("setup observations", "sum by (milestone) (fsp2p_setup_seconds_count)", "milestone"),
    ("first frames", "sum by (path) (fsp2p_first_frame_seconds_count)", "path"),
    ("reports accepted", 'sum by (instance) (fsp2p_reports_total{result="accepted"})', "instance"),
]:
    parts = [f'{s["metric"].get(label, "?")}={float(s["value"][1]):g}' for s in ask(e)]
    print(f"dashboard: {title}: {', '.join(sorted(parts))}")
PY

# The check must be able to fail: one metric misspelled, everything else equal.
sed 's/fsp2p_players_by_path{/fsp2p_players_by_pathx{/' "$dashboard" > "$work/misspelled.json"
if python3 tests/dashboard/check.py --prometheus "http://127.0.0.1:$pport" \
	--dashboard "$work/misspelled.json" > "$art/misspelled.out" 2>&1; then
	echo "dashboard: FAIL: a dashboard with a misspelled metric passed the check" >&2
	exit 1
fi
grep -q 'fsp2p_players_by_pathx' "$art/misspelled.out" || {
	echo "dashboard: FAIL: the misspelled query was not the one reported:" >&2
	cat "$art/misspelled.out" >&2
	exit 1
}
echo "dashboard: a misspelled metric fails the check, as it must ($(grep -c 'FAIL:' "$art/misspelled.out") queries reported)"
echo "dashboard: PASS in $(($(date +%s) - started)) s"
