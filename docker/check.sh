#!/usr/bin/env bash
# check.sh — `make docker-check`: what can be checked of the deployment files
# without running them. shellcheck on every script; the compose file through
# `docker compose config` (or Debian's docker-compose); the Dockerfiles with
# BuildKit's checks when a Docker engine answers. Prints what it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
check() {
	local what=$1
	shift
	if "$@"; then
		echo "docker-check: ok: $what"
	else
		echo "docker-check: FAIL: $what" >&2
		failed=1
	fi
}

if command -v shellcheck >/dev/null; then
	mapfile -t scripts < <(git ls-files --cached --others --exclude-standard -- '*.sh')
	check "shellcheck (${#scripts[@]} scripts)" shellcheck "${scripts[@]}"
else
	echo "docker-check: FAIL: shellcheck is missing (apt-get install shellcheck)" >&2
	failed=1
fi

# The compose file needs its passwords set to interpolate; any value does.
export DRAFTBENCH_CONTROLLER_PASSWORD=check DRAFTBENCH_WORKER_PASSWORD=check
if docker compose version >/dev/null 2>&1; then
	check "docker compose config" docker compose -f docker/compose.yaml config -q
elif command -v docker-compose >/dev/null; then
	check "docker-compose config" docker-compose -f docker/compose.yaml config -q
else
	echo "docker-check: FAIL: neither the docker compose plugin nor docker-compose is installed (apt-get install docker-compose)" >&2
	failed=1
fi

if docker info >/dev/null 2>&1; then
	for f in docker/Dockerfile.controller docker/Dockerfile.worker; do
		check "docker build --check $f" docker build --check -f "$f" .
	done
else
	echo "docker-check: skipped: no Docker engine answers here, so the Dockerfiles were not checked by BuildKit"
fi
exit "$failed"
