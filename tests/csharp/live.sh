#!/usr/bin/env bash
# Live C# test: mono talks to the real server over the WebSocket fallback
# (docs/PROTOCOL.md §10), with client/Protocol.cs doing all encoding and mono's
# System.Net.WebSockets.ClientWebSocket as transport
# (client/tests/LiveWebSocketTests.cs).
#
# Builds the server if needed (cargo build), starts it on free loopback ports
# with a throw-away dev certificate, runs the test against ws://HTTP/ws, stops
# the server. Needs cargo, `mcs` and `mono` (Debian package mono-devel).
# Exit status is the test's; the last line is its `N passed, N failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

for tool in cargo mcs mono; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tests/csharp/live.sh: '$tool' not found (apt-get install -y mono-devel; rustup for cargo)" >&2
        exit 2
    fi
done

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
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

mkdir "$work/certs"
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve \
    --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --cert-dir "$work/certs" \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

http=""
for _ in $(seq 1 300); do
    line="$(grep -m1 '^listening:' "$work/server.out" 2>/dev/null || true)"
    if [ -n "$line" ]; then
        http="$(sed -n 's#.*http://\([^ ]*\).*#\1#p' <<<"$line")"
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
echo "server: http://$http (pid $server_pid)" >&2

status=0
timeout 90 mono "$work/live-ws-tests.exe" "ws://$http/ws" >"$work/test.out" 2>&1 || status=$?
if [ "$status" -eq 0 ]; then
    timeout 60 mono "$work/live-service-tests.exe" "ws://$http/ws" >"$work/service.out" 2>&1 || status=$?
    cat "$work/service.out" >&2
    a="$(tail -n 1 "$work/test.out")"; b="$(tail -n 1 "$work/service.out")"
    echo "$(( $(cut -d' ' -f1 <<<"$a") + $(cut -d' ' -f1 <<<"$b") )) passed, $(( $(cut -d' ' -f3 <<<"$a") + $(cut -d' ' -f3 <<<"$b") )) failed" >>"$work/test.out"
fi
if [ "$status" -ne 0 ]; then
    echo "--- server stderr (last 30 lines) ---" >&2
    tail -n 30 "$work/server.err" >&2 || true
fi
cat "$work/test.out"
if [ "$status" -eq 124 ]; then
    echo "0 passed, 1 failed"
fi
exit "$status"
