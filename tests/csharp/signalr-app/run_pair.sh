#!/usr/bin/env bash
# Two instances of the SignalR-style app against a running server, in two processes:
# the host creates a session and prints `session CODE`, the guest joins with that code.
# Usage: run_pair.sh APP.exe http://HOST:PORT. Prints both outputs and the summed
# `N passed, N failed` last; non-zero exit if anything failed.
set -uo pipefail
app="$1"
url="$2"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

timeout 60 mono "$app" host "$url" >"$dir/host.out" 2>&1 &
host_pid=$!
code=""
for _ in $(seq 1 300); do
    code="$(sed -n 's/^session //p' "$dir/host.out" | head -n 1)"
    if [ -n "$code" ] || ! kill -0 "$host_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
guest_rc=0
if [ -n "$code" ]; then
    timeout 60 mono "$app" guest "$url" "$code" >"$dir/guest.out" 2>&1 || guest_rc=$?
else
    echo "FAIL signalr-app: the host printed no session code" >"$dir/guest.out"
    echo "0 passed, 1 failed" >>"$dir/guest.out"
    guest_rc=1
fi
host_rc=0
wait "$host_pid" || host_rc=$?

p=0
f=0
for side in host guest; do
    grep -Ev '^[0-9]+ passed, [0-9]+ failed$' "$dir/$side.out"
    last="$(tail -n 1 "$dir/$side.out")"
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=$((p + BASH_REMATCH[1]))
        f=$((f + BASH_REMATCH[2]))
    else
        echo "FAIL signalr-app $side: no result line"
        f=$((f + 1))
    fi
done
if [ "$host_rc" -ne 0 ] || [ "$guest_rc" -ne 0 ]; then
    [ "$f" -eq 0 ] && f=1
fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
