#!/usr/bin/env bash
# Fail if any server log under DIR (default test-artifacts) shows a panic.
# The tests put every server's log there; a panic in a server task is caught
# by tokio and the test may pass anyway, so this is what makes it a failure.
set -euo pipefail
dir="${1:-test-artifacts}"
[ -d "$dir" ] || exit 0
if files=$(grep -rl "panicked at" "$dir"); then
    echo "check-panics: a server panicked during the tests:" >&2
    for f in $files; do
        echo "--- $f" >&2
        grep -m3 -A12 "panicked at" "$f" >&2 || true
    done
    exit 1
fi
echo "check-panics: no panic in the server logs under $dir"
