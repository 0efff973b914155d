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
# FSP2P_BIN: the server binary (default target/debug/flightsim-p2p, built
# here with the example client). FSP2P_REPORTER: the reporting client
# (default target/debug/examples/quality_reporter).
# DASHBOARD_EXTRA_CLIENT: a shell command started beside the Rust clients,
# with FSP2P_QUIC, FSP2P_HTTP and FSP2P_CERT_HASH of node 1 in its
# environment: the hook for the browser client (branch q-js) to add real
# direct and TURN links, e.g. DASHBOARD_EXTRA_CLIENT='node tests/browser/quality-reporter.mjs'.
# Without prometheus: SKIPPED (exit 0), except under CI=true (exit 1).
set -euo pipefail
cd "$(dirname "$0")/../.."

prom="$(command -v prometheus || true)"
[ -n "$prom" ] || { [ -x /usr/bin/prometheus ] && prom=/usr/bin/prometheus; } || true
if [ -z "$prom" ]; then
	if [ "${CI:-}" = "true" ]; then
		echo "dashboard: FAIL: prometheus is not installed (apt-get install prometheus, or scripts/deps.sh)" >&2
		exit 1
	fi
	echo "dashboard: SKIPPED (prometheus is not installed; apt-get install prometheus)"
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

# Two nodes (single servers side by side: per-node panels need two instances).
quic=() http=() hash=()
for n in 1 2; do
	q="$(free_port)"
	h="$(free_port)"
	NO_COLOR=1 "$bin" serve --listen "127.0.0.1:$q" --http-listen "127.0.0.1:$h" \
		--cert-dir "$work/certs$n" > "$art/server$n.log" 2>&1 &
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

# Real clients: node 1 with a WebSocket player (reports over both
# transports), node 2 over QUIC only. They run until this script ends.
"$reporter" --server "${quic[0]}" --cert-hash "${hash[0]}" --ws "ws://${http[0]}/ws" --secs 900 \
	> "$art/reporter1.log" 2>&1 &
pids+=($!)
"$reporter" --server "${quic[1]}" --cert-hash "${hash[1]}" --secs 900 > "$art/reporter2.log" 2>&1 &
pids+=($!)
if [ -n "${DASHBOARD_EXTRA_CLIENT:-}" ]; then
	echo "dashboard: extra client: $DASHBOARD_EXTRA_CLIENT"
	FSP2P_QUIC="${quic[0]}" FSP2P_HTTP="${http[0]}" FSP2P_CERT_HASH="${hash[0]}" \
		bash -c "$DASHBOARD_EXTRA_CLIENT" > "$art/extra-client.log" 2>&1 &
	pids+=($!)
fi

metrics="fsp2p_players_by_path,fsp2p_links_by_path,fsp2p_links_by_grade,fsp2p_setup_seconds"
metrics+=",fsp2p_first_frame_seconds,fsp2p_ice_failures_total,fsp2p_ice_candidates_total"
metrics+=",fsp2p_link_rtt_seconds,fsp2p_link_loss_ratio,fsp2p_reports_total"
metrics+=",fsp2p_relay_forwarded_total,fsp2p_relay_forwarded_bytes_total"
# Rates and quantiles over 30 s windows need some scrapes: ask again for up to 120 s.
if ! python3 tests/dashboard/check.py --prometheus "http://127.0.0.1:$pport" \
	--dashboard "$dashboard" --wait 120 --targets 2 --metrics "$metrics"; then
	echo "dashboard: FAIL (logs in $art/)" >&2
	exit 1
fi

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
echo "dashboard: PASS"
