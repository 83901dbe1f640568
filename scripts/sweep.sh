#!/usr/bin/env bash
# sweep.sh: run one job once per value of one knob, then compare the runs.
#
#   scripts/sweep.sh [--out DIR] JOB.hcl KNOB VALUE... [-- ARGS for controller run]
#
# KNOB is a job variable (passed as -var KNOB=VALUE), or, written in capitals,
# an environment variable the job reads with env() (hcl/benchmark.hcl reads
# GAMMA_VALUE, BATCH_SIZE, TEMPERATURE, ...). Each run writes its results to
# DIR/KNOB-VALUE (default DIR: results/<job file name>-sweep-<knob>); a run
# that fails is reported and the sweep goes on. Last, `controller compare DIR`
# prints one table of the runs, one row per value.
#
#   scripts/sweep.sh hcl/quickstart.hcl gamma 1 2 4 6 8
#   scripts/sweep.sh hcl/benchmark.hcl GAMMA_VALUE 3 5 7 -- --log-level warn
#
# CONTROLLER (default bin/controller) names the controller binary.
set -uo pipefail

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

out=""
if [[ ${1:-} == --out ]]; then
	[[ $# -ge 2 ]] || usage
	out=$2
	shift 2
fi
[[ $# -ge 3 ]] || usage
job=$1 knob=$2
shift 2
values=()
while [[ $# -gt 0 && $1 != -- ]]; do
	values+=("$1")
	shift
done
[[ ${1:-} == -- ]] && shift
extra=("$@")
[[ ${#values[@]} -gt 0 ]] || usage
[[ -f $job ]] || { echo "sweep: no job file $job" >&2; exit 2; }
[[ $knob =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "sweep: $knob is not a variable name" >&2; exit 2; }

controller=${CONTROLLER:-bin/controller}
[[ -x $controller ]] || { echo "sweep: $controller not found (run make build, or set CONTROLLER)" >&2; exit 2; }
if [[ -z $out ]]; then
	name=$(basename "$job" .hcl)
	out=results/$name-sweep-$knob
fi
mkdir -p "$out"

failed=()
for v in "${values[@]}"; do
	dir=$out/$knob-$v
	echo "== $knob=$v -> $dir"
	if [[ $knob =~ ^[A-Z][A-Z0-9_]*$ ]]; then
		env "$knob=$v" "$controller" run "$job" --out "$dir" "${extra[@]}"
	else
		"$controller" run "$job" -var "$knob=$v" --out "$dir" "${extra[@]}"
	fi
	rc=$?
	[[ $rc -eq 0 ]] || failed+=("$knob=$v (exit $rc)")
done

echo
echo "== $out"
"$controller" compare "$out" || exit 1
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "sweep: runs that failed: ${failed[*]}" >&2
	exit 1
fi
