#!/usr/bin/env bash
# test.sh — `make test-multihost`: the multi-host tests (test/multihost) in
# network namespaces, then one summary line ("multihost: N passed, M failed
# in Ts"). The trap removes this run's namespaces, its read-only model mount
# and its temporary files even when the tests crash or are killed.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) != 0 ]]; then
	echo "multihost: FAIL: needs root (network namespaces, veth pairs, a bind mount): sudo make test-multihost" >&2
	exit 1
fi
command -v ip >/dev/null || {
	echo "multihost: FAIL: iproute2's ip is missing: apt-get install iproute2" >&2
	exit 1
}

# The tests name their namespaces <prefix><lab>-h<host>; the prefix is this run's.
prefix="mh$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export DRAFTBENCH_MULTIHOST_PREFIX=$prefix
tmp=$(mktemp -d /tmp/draftbench-multihost-run.XXXXXX)
export TMPDIR=$tmp
log=$tmp/go-test.log

# shellcheck disable=SC2317 # run by the trap
cleanup() {
	local lab mnt
	for lab in $(ip netns list | awk '{print $1}' | grep -oE "^${prefix}[0-9]+-h" | sed 's/-h$//' | sort -u); do
		scripts/multihost/netns.sh down "$lab" || true
	done
	# Mounts of this run only: they live under its TMPDIR.
	awk -v t="$tmp/" 'index($2, t) == 1 {print $2}' /proc/mounts | while read -r mnt; do
		umount "$mnt" || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap runs (Ctrl-C
# reaches the whole process group: the test binary's children die with it).
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
set +e
go test -count=1 -v -timeout "${MULTIHOST_TIMEOUT:-15m}" ./test/multihost/ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -cE '^--- PASS' "$log" || true)
failed=$(grep -cE '^--- FAIL' "$log" || true)
if ((rc != 0 && failed == 0)); then
	failed=1 # the test binary failed before or outside a test (build, setup, timeout)
fi
echo "multihost: $passed passed, $failed failed in $((SECONDS - start))s"
exit "$rc"
