#!/usr/bin/env bash
# `make test`'s last step before the panic check: wait for the soak test that
# `make test` started in the background (tests/soak/run.sh, via `make test-soak`),
# print its output, and fail if it failed.
#
#   scripts/wait-soak.sh DIR     DIR/soak.rc appears when it ends; DIR/soak.out is its output
set -euo pipefail
dir="${1:-test-artifacts}"
# The soak runs 10 minutes plus its build and setup; past this it is stuck (a
# harness that died without writing its exit code), not slow.
limit="${SOAK_WAIT_LIMIT_SECS:-1800}"
waited=0
shown=0
while [ ! -f "$dir/soak.rc" ]; do
	if [ "$shown" -eq 0 ]; then
		echo "soak: still running beside the other tests; waiting for it (output: $dir/soak.out)"
		shown=1
	fi
	if [ "$waited" -ge "$limit" ]; then
		echo "soak: no result after ${limit}s of waiting: the soak harness is stuck or died; its output so far:" >&2
		cat "$dir/soak.out" >&2 2>/dev/null || true
		exit 1
	fi
	sleep 2
	waited=$((waited + 2))
done
cat "$dir/soak.out"
rc="$(cat "$dir/soak.rc")"
if [ "$rc" != 0 ]; then
	echo "soak: FAILED (exit $rc): see $dir/soak.out and $dir/soak/" >&2
	exit 1
fi
