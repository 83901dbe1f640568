#!/usr/bin/env bash
# sweep.sh: run one job once per value of one knob, then compare the runs.
#
#   scripts/sweep.sh [--out DIR] [--repeat N] JOB.hcl KNOB VALUE... [-- ARGS for controller run]
#
# KNOB is a job variable (passed as -var KNOB=VALUE), or, written in capitals,
# an environment variable the job reads with env() (hcl/benchmark.hcl reads
# GAMMA_VALUE, BATCH_SIZE, GENERATION_LENGTH, DRAFTER_MODEL, ...; see
# docs/jobs.md). Before running anything, each value is checked with
# `controller validate`: a value the job refuses (gamma 0), or an environment
# variable the job never reads, refuses the whole sweep and nothing runs.
#
# Each run writes its results to DIR/KNOB-NAME (default DIR:
# results/<job file name>-sweep-<knob>), where NAME is the value, or for a
# path its last part (DRAFTER_MODEL-drafter-L1), or the whole path when two
# values share a last part; characters unsafe in a file name become _.
# --repeat N runs each value N times, into DIR/KNOB-NAME/run-1..N, going round
# the values N times (1 2 4, 1 2 4, ...) so that a drift of the machine
# spreads over all of them. A run that fails is reported and the sweep goes
# on. Last, `controller compare` prints one table of the runs: one row per
# value, the median of its runs and their range.
#
#   scripts/sweep.sh hcl/quickstart.hcl gamma 1 2 4 6 8
#   scripts/sweep.sh --repeat 3 hcl/quickstart.hcl gamma 2 4
#   scripts/sweep.sh hcl/benchmark.hcl GAMMA_VALUE 3 5 7 -- --log-level warn
#
# Values that differ only in settings without effect (a sampling knob such
# as draft_top_k at temperature 0, which validate warns of) refuse the sweep
# too.
#
# Exit status: 0; 1 when a run failed; 2 when the sweep was refused before
# running anything (usage, a value validate refuses, a knob the job ignores).
# CONTROLLER (default bin/controller) names the controller binary.
set -uo pipefail

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

out="" repeat=1
while [[ $# -gt 0 ]]; do
	case $1 in
	--out)
		[[ $# -ge 2 ]] || usage
		out=$2
		shift 2
		;;
	--out=*)
		out=${1#--out=}
		shift
		;;
	--repeat)
		[[ $# -ge 2 ]] || usage
		repeat=$2
		shift 2
		;;
	--repeat=*)
		repeat=${1#--repeat=}
		shift
		;;
	-h | --help) usage ;;
	*) break ;;
	esac
done
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "sweep: --repeat $repeat: give a whole number of runs, at least 1" >&2; exit 2; }
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
envknob=false
[[ $knob =~ ^[A-Z][A-Z0-9_]*$ ]] && envknob=true

controller=${CONTROLLER:-bin/controller}
[[ -x $controller ]] || { echo "sweep: $controller not found (run make build, or set CONTROLLER)" >&2; exit 2; }
if [[ -z $out ]]; then
	name=$(basename "$job" .hcl)
	out=results/$name-sweep-$knob
fi

# safe TEXT: TEXT with each character but letters, digits and . _ - + , = @
# replaced by _ (bytes, so a non-ASCII letter becomes _ too).
safe() {
	local LC_ALL=C s=$1
	s=${s//[^A-Za-z0-9._+,=@-]/_}
	printf '%s' "${s:-_}"
}

# base VALUE: a path's last part (trailing slashes dropped); other values as
# they are.
base() {
	local v=$1
	if [[ $v == */* ]]; then
		while [[ $v == */ ]]; do v=${v%/}; done
		v=${v##*/}
		[[ -n $v ]] || v=$1
	fi
	printf '%s' "$v"
}

# full VALUE: the whole value without leading or trailing slashes.
full() {
	local v=$1
	while [[ $v == /* ]]; do v=${v#/}; done
	while [[ $v == */ ]]; do v=${v%/}; done
	printf '%s' "${v:-$1}"
}

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# A folder name per value: its base name, the whole value where two base names
# meet, and a -2, -3 ... where even those meet (names are compared ignoring
# case, as a macOS disk does).
n=${#values[@]}
bases=() names=()
for ((i = 0; i < n; i++)); do
	for ((j = 0; j < i; j++)); do
		if [[ ${values[i]} == "${values[j]}" ]]; then
			echo "sweep: $knob=${values[i]} is given twice (--repeat N runs each value N times)" >&2
			exit 2
		fi
	done
	bases+=("$(lower "$(safe "$(base "${values[i]}")")")")
done
used=()
for ((i = 0; i < n; i++)); do
	cand=$(safe "$(base "${values[i]}")")
	for ((j = 0; j < n; j++)); do
		if [[ $j -ne $i && ${bases[j]} == "${bases[i]}" ]]; then
			cand=$(safe "$(full "${values[i]}")")
			break
		fi
	done
	name=$cand k=2
	while :; do
		clash=false
		for u in ${used[@]+"${used[@]}"}; do
			[[ $u == "$(lower "$name")" ]] && clash=true
		done
		$clash || break
		name=$cand-$k
		k=$((k + 1))
	done
	used+=("$(lower "$name")")
	names+=("$knob-$name")
done

# The -var and -var-file arguments meant for controller run change what
# validate sees too.
valargs=()
for ((i = 0; i < ${#extra[@]}; i++)); do
	case ${extra[i]} in
	-var | --var | -var-file | --var-file)
		valargs+=("${extra[i]}")
		[[ $((i + 1)) -lt ${#extra[@]} ]] && valargs+=("${extra[i + 1]}")
		i=$((i + 1))
		;;
	-var=* | --var=* | -var-file=* | --var-file=*) valargs+=("${extra[i]}") ;;
	esac
done

# knob VALUE COMMAND...: COMMAND with the knob set to VALUE (in its
# environment, or as -var KNOB=VALUE appended to it).
knob() {
	local v=$1
	shift
	if $envknob; then
		env "$knob=$v" "$@"
	else
		"$@" -var "$knob=$v"
	fi
}

# Check every value before the first run: a long GPU sweep should not stop
# at its fourth value, nor run one job N times.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
refused=() unread=false
for ((i = 0; i < n; i++)); do
	v=${values[i]}
	if ! knob "$v" "$controller" validate "$job" --json --log-level error ${valargs[@]+"${valargs[@]}"} >"$tmp/plan.json" 2>"$tmp/err"; then
		refused+=("$knob=$v: $(sed -e 's/^controller validate: error: //' "$tmp/err")")
		continue
	fi
	cp "$tmp/plan.json" "$tmp/plan-$i.json"
	# The resolved config's source.env lists the environment entries the
	# job read (and that were set); validate writes it indented, an entry
	# a line, so the block runs from `"env": {` to its closing brace.
	if $envknob && ! awk -v k="\"$knob\":" '
		/^[ \t]*"env": \{[ \t]*$/ { inenv = 1; next }
		inenv && /^[ \t]*\}/ { inenv = 0 }
		inenv { sub(/^[ \t]+/, ""); if (index($0, k) == 1) found = 1 }
		END { exit !found }' "$tmp/plan.json"; then
		unread=true
	fi
done
if $unread; then
	{
		echo "sweep: $job does not read the environment variable $knob, so every run would be the same job."
		reads=$(grep -o 'env("[A-Za-z_][A-Za-z0-9_]*"' "$job" | sed 's/env("//; s/"$//' | sort -u | tr '\n' ' ')
		reads=${reads% }
		[[ -n $reads ]] && echo "  It reads with env(): $reads"
		echo "  (a knob not all in capitals is a job variable, passed as -var KNOB=VALUE)"
	} >&2
	exit 2
fi
# Values whose jobs differ only in settings that have no effect there (a
# sampling knob at temperature 0, which validate warns of) would run one job
# N times. (python3 compares the resolved settings; without it, no check.)
if [[ ${#refused[@]} -eq 0 && $n -gt 1 ]] && command -v python3 >/dev/null; then
	if ! same=$(python3 - "$tmp" "$n" <<'PY'
import json, re, sys
tmp, n = sys.argv[1], int(sys.argv[2])
def flat(x, p=""):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(flat(v, f"{p}.{k}" if p else k))
        return out
    return {p: json.dumps(x, sort_keys=True)}
configs, idle = [], set()
for i in range(n):
    plan = json.load(open(f"{tmp}/plan-{i}.json"))
    c = dict(plan.get("config") or {})
    c.pop("source", None)
    c.pop("warnings", None)
    configs.append(flat(c))
    for w in plan.get("warnings") or []:
        m = re.search(r"(generation\.\w+) = .* has no effect at generation\.temperature 0", w)
        if m:
            idle.add(m.group(1))
keys = set().union(*configs)
differ = {k for k in keys if len({c.get(k) for c in configs}) > 1}
if differ and differ <= idle:
    print(", ".join(sorted(differ)))
    sys.exit(1)
PY
	); then
		echo "sweep: the values change only $same, which has no effect at temperature 0 (greedy), so every run would be the same job; nothing was run." >&2
		echo "  Sample to sweep it: arguments after -- reach every run (-- -var temperature=0.8 where the job has that variable)." >&2
		exit 2
	fi
fi
if [[ ${#refused[@]} -gt 0 ]]; then
	# Every value refused for one reason (a misspelled -var after --, a
	# broken job file): say it once.
	reasons=$(for r in "${refused[@]}"; do printf '%s\n' "${r#"$knob"=*: }"; done | sort -u)
	if [[ ${#refused[@]} -eq $n && $n -gt 1 && $(grep -c . <<<"$reasons") -eq 1 ]]; then
		echo "sweep: validate refuses every value for one reason; nothing was run:" >&2
		printf '  %s\n' "$reasons" >&2
		exit 2
	fi
	echo "sweep: ${#refused[@]} of the ${n} values are refused; nothing was run:" >&2
	for r in "${refused[@]}"; do
		printf '  %s\n' "$r" >&2
	done
	exit 2
fi

mkdir -p "$out"
failed=() dirs=()
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
for ((r = 1; r <= repeat; r++)); do
	for ((i = 0; i < n; i++)); do
		v=${values[i]} dir=$out/${names[i]}
		label="$knob=$v"
		if [[ $repeat -gt 1 ]]; then
			dir=$dir/run-$r
			label="$label run $r"
		fi
		echo "== $label -> $dir"
		# Only results this run wrote count: a run that fails before it
		# writes any leaves an earlier sweep's files in the folder.
		: >"$stamp"
		knob "$v" "$controller" run "$job" --out "$dir" ${extra[@]+"${extra[@]}"}
		rc=$?
		if [[ $rc -eq 130 ]]; then
			echo "sweep: interrupted during $label; the runs before it are in $out" >&2
			exit 130
		fi
		[[ $rc -eq 0 ]] || failed+=("$label (exit $rc)")
		[[ $dir/benchmark_results.json -nt $stamp ]] && dirs+=("$dir")
	done
done

echo
echo "== $out"
# This sweep's runs only: another sweep into the same folder is not compared.
if [[ ${#dirs[@]} -gt 0 ]]; then
	"$controller" compare "${dirs[@]}" || exit 1
else
	echo "sweep: no run wrote results" >&2
fi
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "sweep: runs that failed: ${failed[*]}" >&2
	exit 1
fi
