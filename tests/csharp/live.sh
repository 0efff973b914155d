#!/usr/bin/env bash
# Live C# tests against the real server over the WebSocket fallback
# (docs/PROTOCOL.md §10), mono's System.Net.WebSockets.ClientWebSocket as transport:
#  1. the wire protocol, client/Protocol.cs doing all encoding
#     (tests/csharp/LiveWebSocketTests.cs);
#  2. two WebRTCP2PService instances in one session: hub messages, InvokeAsync,
#     relay flight data (tests/csharp/LiveServiceTests.cs);
#  3. a WebRTCP2PService and a headless Chromium page (client/web/fsp2p.js) in one
#     session, both ways (tests/csharp/browser_peer.mjs drives the page and runs the
#     C# half, tests/csharp/LiveBrowserTests.cs).
#
# Builds the server if needed (cargo build), starts it on free loopback ports
# with a throw-away dev certificate, runs the tests, stops the server. Needs cargo,
# `mcs` and `mono` (Debian package mono-devel), node, Chromium (CHROMIUM, default
# /usr/bin/chromium) and playwright-core in tests/browser (npm ci there).
# Non-zero exit if anything failed; the last line is the total `N passed, N failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

for tool in cargo mcs mono node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tests/csharp/live.sh: '$tool' not found (apt-get install -y mono-devel nodejs; rustup for cargo)" >&2
        exit 2
    fi
done
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ] || [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
    echo "tests/csharp/live.sh: needs Chromium at $chromium (or CHROMIUM) and playwright-core (cd tests/browser && npm ci); scripts/deps.sh installs both" >&2
    exit 2
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    # Kept where `make test` looks for server panics (scripts/check-panics.sh).
    if [ -f "$work/server.err" ]; then
        mkdir -p "$root/test-artifacts"
        cp "$work/server.err" "$root/test-artifacts/csharp-live-server.log"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build output goes to stderr so the test's summary stays the last stdout line.
cargo build --quiet --bin flightsim-p2p >&2
bin="${CARGO_TARGET_DIR:-$root/target}/debug/flightsim-p2p"

mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll \
    -out:"$work/live-ws-tests.exe" \
    "$root/client/Protocol.cs" "$root/tests/csharp/LiveWebSocketTests.cs" >&2
mapfile -t mono_src < <(ls "$root"/client/*.cs)
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-service-tests.exe" "${mono_src[@]}" "$root/tests/csharp/LiveServiceTests.cs" >&2
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-browser-tests.exe" "${mono_src[@]}" "$root/tests/csharp/LiveBrowserTests.cs" >&2

mkdir "$work/certs"
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve \
    --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --cert-dir "$work/certs" --web-dir "$root/client/web" \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

http=""
udp=""
for _ in $(seq 1 300); do
    line="$(grep -m1 '^listening:' "$work/server.out" 2>/dev/null || true)"
    if [ -n "$line" ]; then
        http="$(sed -n 's#.*http://\([^ ]*\).*#\1#p' <<<"$line")"
        udp="$(sed -n 's#.*udp://[^ ]*:\([0-9]*\) .*#\1#p' <<<"$line")"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$http" ]; then
    echo "tests/csharp/live.sh: the server did not report its HTTP address" >&2
    cat "$work/server.out" "$work/server.err" >&2 || true
    exit 1
fi
echo "server: http://$http udp $udp (pid $server_pid)" >&2

# Each part's last line is its `N passed, N failed`; a part that timed out (124)
# or printed no such line counts as one failure.
status=0
p=0
f=0
run_part() {
    local name="$1" limit="$2"
    shift 2
    local rc=0
    timeout "$limit" "$@" >"$work/$name.out" 2>&1 || rc=$?
    local last
    last="$(tail -n 1 "$work/$name.out")"
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=$((p + BASH_REMATCH[1]))
        f=$((f + BASH_REMATCH[2]))
        if [ "$rc" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then
            f=$((f + 1))
        fi
    else
        f=$((f + 1))
        echo "$name: no result line (exit $rc)" >>"$work/$name.out"
    fi
    if [ "$rc" -ne 0 ]; then
        status=1
    fi
}
run_part ws 90 mono "$work/live-ws-tests.exe" "ws://$http/ws"
run_part service 60 mono "$work/live-service-tests.exe" "ws://$http/ws"
run_part browser 240 node "$root/tests/csharp/browser_peer.mjs" --http "$http" --udp "$udp" \
    -- mono "$work/live-browser-tests.exe" "ws://$http/ws"
if [ "$status" -ne 0 ]; then
    echo "--- server stderr (last 30 lines) ---" >&2
    tail -n 30 "$work/server.err" >&2 || true
fi
cat "$work/ws.out" "$work/service.out" "$work/browser.out" | grep -Ev '^[0-9]+ passed, [0-9]+ failed$'
echo "$p passed, $f failed"
[ "$status" -eq 0 ] && [ "$f" -eq 0 ]
