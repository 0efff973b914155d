#!/usr/bin/env bash
# Live C# tests against the real server over the WebSocket fallback
# (docs/PROTOCOL.md §10), mono's System.Net.WebSockets.ClientWebSocket as transport:
#  1. the wire protocol, client/Protocol.*.cs doing all encoding
#     (tests/csharp/LiveWebSocketTests.cs);
#  2. two WebRTCP2PService instances in one session: hub messages, InvokeAsync,
#     relay flight data (tests/csharp/LiveServiceTests.cs); then two processes of the
#     SignalR-style app (tests/csharp/signalr-app/: written against SignalR's API, hub on
#     the session host), an http:// hub URL as the server (run_pair.sh);
#  3. a WebRTCP2PService and a headless Chromium page (client/web/fsp2p.js) in one
#     session, both ways (tests/csharp/browser_peer.mjs drives the page and runs the
#     C# half, tests/csharp/LiveBrowserTests.cs);
#  4. cluster mode (PROTOCOL.md §11): two more server nodes, "a" and "b", sharing a
#     redis-server of their own: services join through b a session homed on a
#     (redirected), and follow a drain (SIGTERM of a) to b with their peer ids
#     (tests/csharp/LiveClusterTests.cs);
#  4b. regions (issue 26): nodes "eu" and "us" (--region eu, us-east) on a third
#     redis-server: a service measures both regions and creates a session with them, not
#     redirected (--placement-min-gain-ms out of reach), or redirected to eu from us when
#     us-east is made 300 ms slower; a duplicate region is refused with invalid_argument
#     (tests/csharp/LiveRegionTests.cs).
#
#  4c. moving a session (issue 26, protocol version 5): nodes "move-eu" and "move-us"
#     (--region eu, us; --placement-move-interval-secs 0 --placement-overlap-ms 1500) on a
#     fourth redis-server: two services on the relay, created on eu with injected region
#     round trips, are moved to us make-before-break while sending at 60 Hz: no frame lost
#     or delivered twice, old connection closed with 20, Hello 5 (tests/csharp/LiveMoveTests.cs;
#     MOVE_ROUNDS=n repeats it n times, default 1).
#
#  5. connection quality (issue 25): two services on the relay measure each other by echo
#     and report; the server's /metrics counts the reports (tests/csharp/LiveQualityTests.cs).
#
# Builds the server if needed (cargo build; FSP2P_BIN=path uses a prebuilt one), starts it on free loopback ports
# with a throw-away dev certificate, runs the tests, stops the server. Needs cargo,
# `mcs` and `mono` (Debian package mono-devel), node, Chromium (CHROMIUM, default
# /usr/bin/chromium), playwright-core in tests/browser (npm ci there) and redis-server.
# Non-zero exit if anything failed; the last line is the total `N passed, N failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# FSP2P_BIN: a prebuilt server binary (no cargo build; cargo then not needed).
need="mcs mono node redis-server"
[ -n "${FSP2P_BIN:-}" ] || need="cargo $need"
for tool in $need; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tests/csharp/live.sh: '$tool' not found (apt-get install -y mono-devel nodejs redis-server; rustup for cargo)" >&2
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
auth_pid=""
redis_pid=""
node_a_pid=""
node_b_pid=""
region_redis_pid=""
node_eu_pid=""
node_us_pid=""
move_redis_pid=""
node_move_eu_pid=""
node_move_us_pid=""
cleanup() {
    for pid in "$server_pid" "${auth_pid:-}" "$node_a_pid" "$node_b_pid" "$redis_pid" "$node_eu_pid" "$node_us_pid" "$region_redis_pid" "$node_move_eu_pid" "$node_move_us_pid" "$move_redis_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    # Kept where `make test` looks for server panics (scripts/check-panics.sh).
    mkdir -p "$root/test-artifacts"
    if [ -f "$work/server.err" ]; then
        cp "$work/server.err" "$root/test-artifacts/csharp-live-server.log"
    fi
    if [ -f "$work/auth-server.err" ]; then
        cp "$work/auth-server.err" "$root/test-artifacts/csharp-live-auth-server.log"
    fi
    for n in a a-crashed b eu us move-eu move-us; do
        if [ -f "$work/node-$n.err" ]; then
            cp "$work/node-$n.err" "$root/test-artifacts/csharp-live-node-$n.log"
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build output goes to stderr so the test's summary stays the last stdout line.
if [ -n "${FSP2P_BIN:-}" ]; then
    bin="$FSP2P_BIN"
    [ -x "$bin" ] || { echo "tests/csharp/live.sh: FSP2P_BIN=$bin is not an executable" >&2; exit 2; }
else
    cargo build --quiet --bin flightsim-p2p >&2
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/flightsim-p2p"
fi

mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll \
    -out:"$work/live-ws-tests.exe" \
    "$root"/client/Protocol.*.cs "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveWebSocketTests.cs" >&2
mapfile -t mono_src < <(ls "$root"/client/*.cs)
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-service-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveServiceTests.cs" >&2
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/signalr-app.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root"/tests/csharp/signalr-app/*.cs >&2
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-browser-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveBrowserTests.cs" >&2
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-cluster-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveClusterTests.cs" >&2
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-access-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveAccessTests.cs" >&2
# Issue 26: regions (two nodes with --region on a Redis of their own).
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-region-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveRegionTests.cs" >&2
# Issue 26: a session moved to a better region (version 5), two nodes on a Redis of their own.
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-move-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveMoveTests.cs" >&2
# Issue 25: connection quality (echo RTT, grades, reports counted in the server's /metrics).
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$work/live-quality-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveQualityTests.cs" >&2
# Issue 21: ServerTimeout against the real server behind a proxy that goes silent.
mcs -nologo -langversion:7.2 -warnaserror -optimize+ -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll -out:"$work/live-silent-tests.exe" "${mono_src[@]}" "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/LiveSilentServerTests.cs" >&2

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
run_part silent 60 mono "$work/live-silent-tests.exe" "$http"
run_part quality 90 mono "$work/live-quality-tests.exe" "ws://$http/ws" "http://$http"
run_part browser 240 node "$root/tests/csharp/browser_peer.mjs" --http "$http" --udp "$udp" \
    -- mono "$work/live-browser-tests.exe" "ws://$http/ws"

# Issue 24: access tokens, against a second server that requires them (a key made by the
# binary's own `token --keygen`; no leeway and a 1 s warning, so a 4 s token runs out fast).
auth_key="$("$bin" token --keygen hs256 --kid live | tail -n 1)"
mkdir "$work/certs-auth"
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve \
    --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --cert-dir "$work/certs-auth" \
    --auth "$auth_key" --auth-audience csharp-live --auth-leeway-secs 0 --auth-warn-secs 1 \
    >"$work/auth-server.out" 2>"$work/auth-server.err" &
auth_pid=$!
auth_http=""
for _ in $(seq 1 300); do
    line="$(grep -m1 '^listening:' "$work/auth-server.out" 2>/dev/null || true)"
    if [ -n "$line" ]; then
        auth_http="$(sed -n 's#.*http://\([^ ]*\).*#\1#p' <<<"$line")"
        break
    fi
    kill -0 "$auth_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -n "$auth_http" ]; then
    run_part access 90 mono "$work/live-access-tests.exe" "ws://$auth_http/ws" "$bin" "$auth_key" csharp-live
else
    echo "the --auth server did not start" >"$work/access.out"
    cat "$work/auth-server.err" >>"$work/access.out" 2>/dev/null || true
    f=$((f + 1))
    status=1
fi
kill "$auth_pid" 2>/dev/null || true

# Issue 21: the SignalR-style app, a host and a guest process, an http:// hub URL as the server.
run_part signalr 130 bash "$root/tests/csharp/signalr-app/run_pair.sh" "$work/signalr-app.exe" "http://$http"
grep -Ev '^[0-9]+ passed, [0-9]+ failed$' "$work/signalr.out" || true
if [ "$status" -ne 0 ]; then
    echo "--- server stderr (last 30 lines) ---" >&2
    tail -n 30 "$work/server.err" >&2 || true
fi

# Cluster mode: a redis-server and nodes a and b on free loopback ports, each node with
# its own dev certificate (two servers making one in the same directory race). The nodes
# get fixed ports, not port 0: a node announces its configured --listen/--http-listen
# address in the directory, so with port 0 its redirects name port 0 (a server bug;
# tests/browser/e2e.test.mjs 12d shows it).
free_port() {
    if [ "$1" = udp ]; then
        node -e "const s = require('dgram').createSocket('udp4'); s.bind(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
    else
        node -e "const s = require('net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
    fi
}
# start_redis LOG: a redis-server on a free port, its output in $work/LOG; sets redis_port
# and redis_started_pid; fails when it is not ready within 10 s.
start_redis() {
    redis_port="$(free_port tcp)"
    redis-server --port "$redis_port" --save '' --appendonly no --bind 127.0.0.1 >"$work/$1" 2>&1 &
    redis_started_pid=$!
    for _ in $(seq 1 100); do
        if grep -q 'Ready to accept connections' "$work/$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# Sets node_http (host:port, once it listens; empty if it did not) and node_pid.
# start_node NAME [serve options...]: on the Redis at $redis_port.
start_node() {
    local name="$1"
    shift
    mkdir -p "$work/certs-$name"
    # A restart must not read the last run's "listening:" line before the new node truncates the file.
    rm -f "$work/node-$name.out"
    RUST_LOG="${RUST_LOG:-warn}" "$bin" serve \
        --listen "127.0.0.1:$(free_port udp)" --http-listen "127.0.0.1:$(free_port tcp)" \
        --cert-dir "$work/certs-$name" --web-dir "$root/client/web" \
        --redis-url "redis://127.0.0.1:$redis_port" --node-name "$name" "$@" \
        >"$work/node-$name.out" 2>"$work/node-$name.err" &
    local pid=$!
    node_pid=$pid
    local line=""
    for _ in $(seq 1 300); do
        line="$(grep -m1 '^listening:' "$work/node-$name.out" 2>/dev/null || true)"
        if [ -n "$line" ] || ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    node_http="$(sed -n 's#.*http://\([^ ]*\).*#\1#p' <<<"$line")"
}
# Both nodes must see each other in the directory before a redirect can name one.
nodes_seen() {
    curl -fsS "http://$1/metrics" 2>/dev/null | sed -n 's/^fsp2p_cluster_nodes \([0-9]*\)$/\1/p'
}
# pair_ready HTTP1 HTTP2: both nodes listen and each sees two live nodes, within 30 s.
pair_ready() {
    [ -n "$1" ] && [ -n "$2" ] || return 1
    for _ in $(seq 1 300); do
        if [ "$(nodes_seen "$1")" = 2 ] && [ "$(nodes_seen "$2")" = 2 ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
redis_up=""
start_redis redis.log && redis_up=1
redis_pid="$redis_started_pid"
http_a=""
http_b=""
if [ -n "$redis_up" ]; then
    start_node a
    http_a="$node_http"
    node_a_pid="$node_pid"
    start_node b
    http_b="$node_http"
    node_b_pid="$node_pid"
fi
cluster_ready=""
pair_ready "$http_a" "$http_b" && cluster_ready=1
if [ -n "$cluster_ready" ]; then
    echo "cluster: redis 127.0.0.1:$redis_port, node a http://$http_a (pid $node_a_pid), node b http://$http_b (pid $node_b_pid)" >&2
    run_part cluster 300 mono "$work/live-cluster-tests.exe" "ws://$http_a/ws" "ws://$http_b/ws" "$node_a_pid" join-crash
    # The crash test killed node a (if it got that far): start it again (same name) for the drain test.
    kill -KILL "$node_a_pid" 2>/dev/null || true
    wait "$node_a_pid" 2>/dev/null || true
    cp "$work/node-a.err" "$work/node-a-crashed.err"
    start_node a
    http_a="$node_http"
    node_a_pid="$node_pid"
    drain_ready=""
    pair_ready "$http_a" "$http_b" && drain_ready=1
    if [ -n "$drain_ready" ]; then
        run_part drain 240 mono "$work/live-cluster-tests.exe" "ws://$http_a/ws" "ws://$http_b/ws" "$node_a_pid" drain
    else
        f=$((f + 1))
        status=1
        echo "FAIL cluster: node a did not come back for the drain test ('$http_a'; live nodes seen by a: '$(nodes_seen "$http_a")', by b: '$(nodes_seen "$http_b")')" >"$work/drain.out"
    fi
    # The drain test stopped node a with SIGTERM: it must have ended by itself, cleanly.
    a_exit=""
    for _ in $(seq 1 300); do
        if ! kill -0 "$node_a_pid" 2>/dev/null; then
            a_exit=0
            wait "$node_a_pid" 2>/dev/null || a_exit=$?
            break
        fi
        sleep 0.1
    done
    if [ "$a_exit" = 0 ]; then
        p=$((p + 1))
        echo "ok   cluster: node a ended by itself after the drain, exit status 0" >>"$work/drain.out"
    else
        f=$((f + 1))
        status=1
        echo "FAIL cluster: node a after SIGTERM: ${a_exit:-still running after 30 s}" >>"$work/drain.out"
    fi
else
    f=$((f + 1))
    status=1
    echo "FAIL cluster: redis-server or the nodes did not come up (redis ${redis_up:-down}, a '${http_a}', b '${http_b}')" >"$work/cluster.out"
fi
# Regions (PROTOCOL.md section 11): nodes eu and us (--region eu, us-east) on a Redis of
# their own (the nodes above must not see them). eu asks a placement gain no measurement
# here reaches (5000 ms): a create there is never redirected; us keeps the default (20 ms):
# a client that measured us-east 300 ms slower is placed on eu.
region_up=""
start_redis redis-regions.log && region_up=1
region_redis_pid="$redis_started_pid"
region_port="$redis_port"
http_eu=""
http_us=""
if [ -n "$region_up" ]; then
    start_node eu --region eu --placement-min-gain-ms 5000
    http_eu="$node_http"
    node_eu_pid="$node_pid"
    start_node us --region us-east
    http_us="$node_http"
    node_us_pid="$node_pid"
fi
regions_ready=""
pair_ready "$http_eu" "$http_us" && regions_ready=1
if [ -n "$regions_ready" ]; then
    echo "regions: redis 127.0.0.1:$region_port, node eu http://$http_eu, node us-east http://$http_us" >&2
    run_part regions 60 mono "$work/live-region-tests.exe" "ws://$http_eu/ws" "ws://$http_us/ws"
else
    f=$((f + 1))
    status=1
    echo "FAIL regions: redis-server or the nodes did not come up (redis ${region_up:-down}, eu '${http_eu}', us '${http_us}')" >"$work/regions.out"
fi
# Moving a session (PROTOCOL.md section 11, version 5): nodes move-eu and move-us (--region
# eu, us) on a fourth Redis, moves checked at once after a create (interval 0) and a short
# overlap, so a pair moves within the node's 5 s move timer.
move_up=""
start_redis redis-move.log && move_up=1
move_redis_pid="$redis_started_pid"
move_port="$redis_port"
http_move_eu=""
http_move_us=""
if [ -n "$move_up" ]; then
    start_node move-eu --region eu --placement-move-interval-secs 0 --placement-overlap-ms 1500
    http_move_eu="$node_http"
    node_move_eu_pid="$node_pid"
    start_node move-us --region us --placement-move-interval-secs 0 --placement-overlap-ms 1500
    http_move_us="$node_http"
    node_move_us_pid="$node_pid"
fi
move_ready=""
pair_ready "$http_move_eu" "$http_move_us" && move_ready=1
move_rounds="${MOVE_ROUNDS:-1}"
if [ -n "$move_ready" ]; then
    echo "move: redis 127.0.0.1:$move_port, node move-eu http://$http_move_eu, node move-us http://$http_move_us" >&2
    run_part move $((60 + 60 * move_rounds)) mono "$work/live-move-tests.exe" "ws://$http_move_eu/ws" "ws://$http_move_us/ws" move-eu move-us "$move_rounds"
else
    f=$((f + 1))
    status=1
    echo "FAIL move: redis-server or the nodes did not come up (redis ${move_up:-down}, move-eu '${http_move_eu}', move-us '${http_move_us}')" >"$work/move.out"
fi
if [ "$status" -ne 0 ]; then
    for n in a b; do
        echo "--- node $n stderr (last 30 lines) ---" >&2
        tail -n 30 "$work/node-$n.err" >&2 || true
    done
fi
grep -Ev '^[0-9]+ passed, [0-9]+ failed$' "$work/silent.out" 2>/dev/null || true
cat "$work/ws.out" "$work/service.out" "$work/quality.out" "$work/access.out" "$work/browser.out" "$work/cluster.out" "$work/drain.out" "$work/regions.out" "$work/move.out" 2>/dev/null | grep -Ev '^[0-9]+ passed, [0-9]+ failed$'
echo "$p passed, $f failed"
[ "$status" -eq 0 ] && [ "$f" -eq 0 ]
