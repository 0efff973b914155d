# Sourced by the root-only and tool-heavy test scripts (tests/nat, tests/soak,
# tests/regions): what to do when this machine cannot run the test. Without CI
# set it is a loud skip (exit 0); under CI (CI is set) a test that cannot run
# is a failure, as in tests/coturn.rs.
#
#   TEST_NAME=nat; . tests/cannot_run.sh; cannot_run "needs root"

cannot_run() {
	local bar="========================================================================"
	if [ -n "${CI:-}" ]; then
		printf '%s\n%s: FAILED (CI is set, so this is not a skip): %s\n%s\n' "$bar" "${TEST_NAME:-test}" "$*" "$bar" >&2
		exit 1
	fi
	printf '%s\n%s: SKIPPED: %s\n%s\n' "$bar" "${TEST_NAME:-test}" "$*" "$bar" >&2
	exit 0
}
