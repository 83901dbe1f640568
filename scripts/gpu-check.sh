#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (docs/cuda.md), in steps:
#
#   scripts/gpu-check.sh pack [CHECKOUT]
#                               here: make build-cuda, then pack bin/worker and
#                               the shared libraries a GPU image may lack
#                               (OpenBLAS for the CPU backend, libgfortran,
#                               libquadmath, libcudart) into build/gpu-check,
#                               gzipped to travel in the device tool's carry,
#                               with VERSION (git describe --always --dirty,
#                               the HEAD commit, whether the build's sources
#                               were HEAD's, the worker's version) and
#                               SOURCES.sha256 (the build's sources as packed);
#                               ends with verify. With CHECKOUT (the main
#                               checkout, when packing in a git worktree of the
#                               same commit), the pack is then copied into
#                               CHECKOUT/build/gpu-check and verified there.
#   scripts/gpu-check.sh verify here, before any device call: the packed
#                               worker's version is this tree's HEAD, and a
#                               pack built with uncommitted changes to the
#                               build's sources holds this tree's; else it
#                               says "repack" and exits non-zero.
#   scripts/gpu-check.sh [run]  there: builds nothing; prints the pack's VERSION
#                               and the packed worker's version first (warning
#                               loudly when the tree it runs in is not what was
#                               packed), unpacks, finds the machine's CUDA 13
#                               libcublas/libcudart, then
#                               1. worker selftest --backend cuda (bf16 and f32,
#                                  every kernel, then the transformers goldens),
#                                  and the goldens with each model's layers split
#                                  over three handles of the GPU (--devices 0,0,0:
#                                  the several-GPU path on one GPU),
#                               2. worker bench --backend cuda on a Qwen3-8B-shaped
#                                  model with random bf16 weights at batch 1,8,32
#                                  (its bandwidth column is a 1 GiB device-to-device
#                                  copy: the ceiling a decode step can approach),
#                                  (steps end with greedy picks on the device),
#                                  then again with step graphs (--graphs), in
#                                  batch-invariant mode (--batch-invariant; its
#                                  selftest too, with the invariance table) and
#                                  reading every logit row (--greedy=false), with
#                                  sampled steps (--temperature 0.8: probabilities
#                                  on the device, read back), sampled with graphs, with
#                                  tuned products (--tune-gemm; its selftest too)
#                                  and with tuned products and graphs together,
#                                  then the first bench again (the noise between runs),
#                               3. the same at batch 1 and 32 with --profile-ops
#                                  (where prefill and decode spend their time),
#                               4. the copy through PyTorch, as a cross-check,
#                               5. transformers (bf16, SDPA) on the same shape and
#                                  card (SKIP_HF=1 leaves it out),
#                               6. the quickstart job end to end (controller, NATS,
#                                  worker stages on CUDA, the NVML monitor), then
#                                  again with --cuda-graphs --tune-gemm, then
#                                  sampled (-var temperature=0.8 --cuda-graphs),
#                               and prints a table last.
#   scripts/gpu-check.sh table DIR
#                               the summary table of a run's result files.
#
# Every step of run has its own time limit (timeout; a step that hangs is
# stopped and marked TIMED OUT) and all of them share RUN_BUDGET seconds
# (default 340): a step gets at most what is left, and once under MIN_STEP_S
# (10) are left the remaining steps are skipped, so a run ends within about
# RUN_BUDGET + 20 s whatever hangs. ONLY="bench_graphs,quickstart" runs just
# the steps named (a rerun). After every step the results so far are saved
# into $OUT (when set): gpu-check.tgz (everything), steps.tsv (each step's
# outcome and seconds) and table.txt (the table so far).
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=build/gpu-check
MODEL=testdata/configs/qwen3-8b
DRAFTER=testdata/configs/qwen3-1.7b
BATCH="${BATCH:-1,8,32}"
PROMPT="${PROMPT:-128}"
NEW="${NEW:-32}"

# The build's sources (tests left out), as git pathspecs: what SOURCES.sha256
# records.
SRC_SPECS=('*.go' ':(exclude)*_test.go' go.mod go.sum Makefile 'kernels/*')

# srcs lists the build's sources in this tree (git's tracked and untracked,
# not ignored).
srcs() {
	git ls-files -co --exclude-standard -- "${SRC_SPECS[@]}" | sort -u
}

# uncommitted_srcs lists the build's sources that differ from HEAD here
# (changed, deleted or new).
uncommitted_srcs() {
	{
		git diff --name-only HEAD -- "${SRC_SPECS[@]}"
		git ls-files -o --exclude-standard -- "${SRC_SPECS[@]}"
	} | sort -u
}

# src_diff prints the build sources of this tree that differ from those the
# pack was built from (SOURCES.sha256), one per line with what differs; new
# files only where git works.
src_diff() {
	[[ -f $PACK/SOURCES.sha256 ]] || {
		echo "(the pack has no SOURCES.sha256: packed by an older gpu-check.sh)"
		return
	}
	local line f
	while IFS= read -r line; do
		f=${line%%: FAILED*}
		if [[ -e $f ]]; then echo "$f (changed)"; else echo "$f (missing here)"; fi
	done < <(sha256sum -c --quiet "$PACK/SOURCES.sha256" 2>/dev/null | grep ': FAILED')
	if git rev-parse --git-dir >/dev/null 2>&1; then
		comm -13 <(cut -c67- "$PACK/SOURCES.sha256" | sort -u) <(srcs) | sed 's/$/ (new here)/'
	fi
}

# version_field KEY prints KEY's value from the pack's VERSION.
version_field() {
	awk -v k="$1" '$1 == k {$1 = ""; sub(/^ /, ""); print; exit}' "$PACK/VERSION" 2>/dev/null
}

# describe_commit VERSION prints the commit a `git describe` output names
# (7e62958, 7e62958-dirty, v1.2-3-g7e62958-dirty: 7e62958), or nothing.
describe_commit() {
	local v=${1%-dirty}
	[[ $v =~ -g([0-9a-f]{4,40})$ ]] && v=${BASH_REMATCH[1]}
	[[ $v =~ ^[0-9a-f]{4,40}$ ]] && echo "$v"
}

pack() {
	set -e
	local dest=${1:-}
	if [[ -n $dest ]]; then
		# Refuse before building: the pack must be of the commit DEST has.
		local here there
		here=$(git rev-parse HEAD)
		there=$(git -C "$dest" rev-parse HEAD)
		[[ $here == "$there" ]] || {
			echo "pack $dest: its HEAD is $there, this tree's is $here: pack a worktree of $dest's HEAD (git -C $dest worktree add DIR HEAD)" >&2
			exit 1
		}
	fi
	make build-cuda
	rm -rf "$PACK" && mkdir -p "$PACK/lib"
	# Stripped copies (symbol table and DWARF: Go's stack traces do not need
	# them) keep the pack well under the device tool's 64 MiB carry.
	for b in worker controller; do
		if command -v strip >/dev/null; then
			strip -o "$PACK/$b" "bin/$b"
		else
			cp "bin/$b" "$PACK/$b"
		fi
		gzip "$PACK/$b"
	done
	# The libraries bin/worker needs besides the CUDA ones the GPU image has.
	for lib in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libcudart.so.13; do
		path=$(ldd bin/worker | awk -v l="$lib" '$1 == l {print $3}')
		[[ -n $path ]] || { echo "ldd bin/worker does not list $lib" >&2; exit 1; }
		gzip -c "$(readlink -f "$path")" >"$PACK/lib/$lib.gz"
	done
	# What was packed: run prints it first, verify checks it against HEAD.
	# describe's -dirty counts any tracked file; sources says whether the
	# build's own sources were HEAD's.
	local unc
	unc=$(uncommitted_srcs | paste -sd' ')
	{
		echo "describe $(git describe --always --dirty)"
		echo "commit $(git rev-parse HEAD)"
		echo "sources ${unc:+uncommitted: }${unc:-clean}"
		echo "worker $(bin/worker version)"
		echo "packed $(date -u +%FT%TZ) in $(pwd)"
	} >"$PACK/VERSION"
	srcs | tr '\n' '\0' | xargs -0 -r sha256sum >"$PACK/SOURCES.sha256"
	du -sh "$PACK"
	set +e
	verify || exit 1
	if [[ -n $dest ]]; then
		rm -rf "${dest:?}/$PACK" && mkdir -p "$dest/$(dirname "$PACK")" && cp -a "$PACK" "$dest/$PACK" || exit 1
		echo "copied to $dest/$PACK; verifying there:"
		(cd "$dest" && verify) || {
			rm -rf "${dest:?}/$PACK"
			echo "removed $dest/$PACK (it does not fit that tree): repack" >&2
			exit 1
		}
	fi
	echo "packed: run it on the GPU machine with scripts/gpu-check.sh run, carrying $PACK (docs/cuda.md)"
}

# verify (here, before a device call): the packed worker must be this tree's
# HEAD; a pack built with uncommitted changes to the build's sources must
# hold exactly this tree's sources. Otherwise it says "repack" and fails. A
# pack of HEAD's sources next to uncommitted changes in this tree passes,
# naming them (the pack runs HEAD's code, not theirs).
verify() {
	local head v t
	[[ -f $PACK/worker.gz ]] || {
		echo "no $PACK/worker.gz in $(pwd): pack first (scripts/gpu-check.sh pack)" >&2
		return 1
	}
	[[ -f $PACK/VERSION ]] || {
		echo "STALE PACK: $PACK has no VERSION (packed by an older gpu-check.sh): repack (scripts/gpu-check.sh pack)" >&2
		return 1
	}
	head=$(git rev-parse HEAD) || return 1
	t=$(mktemp -d)
	mkdir -p "$t/lib"
	gunzip -c "$PACK/worker.gz" >"$t/worker" && chmod +x "$t/worker"
	for f in "$PACK"/lib/*.gz; do gunzip -c "$f" >"$t/lib/$(basename "$f" .gz)"; done
	local dirs
	dirs=$(cuda_libs | paste -sd:)
	if ! v=$(LD_LIBRARY_PATH="${dirs:+$dirs:}$t/lib" timeout 30 "$t/worker" version 2>&1); then
		echo "warning: the packed worker does not run here ($v); taking its version from $PACK/VERSION" >&2
		v=$(version_field worker)
	fi
	rm -rf "$t"
	v=${v#worker }
	local c
	c=$(describe_commit "$v")
	echo "pack: worker $v (VERSION: $(version_field describe), commit $(version_field commit)); HEAD $(git rev-parse --short HEAD)"
	if [[ -z $c || $head != "$c"* ]]; then
		echo "STALE PACK: the packed worker is $v, this tree's HEAD is $(git rev-parse --short HEAD): repack (scripts/gpu-check.sh pack)" >&2
		return 1
	fi
	if [[ $(version_field commit) != "$head" ]]; then
		echo "STALE PACK: VERSION names commit $(version_field commit), HEAD is $head: repack (scripts/gpu-check.sh pack)" >&2
		return 1
	fi
	# Were the packed sources HEAD's? VERSION's sources line says; a pack
	# without it has only the describe's -dirty (any tracked file).
	local dirty="" srcstate
	srcstate=$(version_field sources)
	if [[ -n $srcstate ]]; then
		[[ $srcstate == clean ]] || dirty=1
	elif [[ $v == *-dirty ]]; then
		dirty=1
	fi
	local diff n
	diff=$(src_diff)
	n=$(grep -c . <<<"$diff")
	if [[ -n $dirty ]]; then
		if [[ -n $diff ]]; then
			echo "STALE PACK: it was built with uncommitted changes, and $n build sources here differ from them:" >&2
			head -20 <<<"$diff" | sed 's/^/  /' >&2
			echo "repack (scripts/gpu-check.sh pack), or commit and pack a clean worktree" >&2
			return 1
		fi
		echo "warning: the pack holds uncommitted changes (they match this tree's sources): $srcstate"
	elif [[ -n $diff ]]; then
		echo "note: $n build sources here differ from HEAD's, which the pack holds (uncommitted here, not measured):"
		head -20 <<<"$diff" | sed 's/^/  /'
	fi
	echo "verified: $PACK is HEAD $(git rev-parse --short HEAD)"
}

# cuda_libs prints the folders holding the machine's own libcublas.so.13 and
# libcudart.so.13: the CUDA toolkit's, or the pip wheels PyTorch came with.
cuda_libs() {
	{
		for d in ${CUDA_LIB_DIR:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
			echo "$d"
		done
		timeout 20 python3 - <<'PY' 2>/dev/null
import glob, os, sys
for p in sys.path:
    for d in glob.glob(os.path.join(p, "nvidia", "*", "lib")):
        print(d)
PY
		ldconfig -p 2>/dev/null | awk '/libcublas\.so\.13|libcudart\.so\.13/ {print $NF}' | xargs -r -n1 dirname
	} | while read -r d; do
		if [[ -f $d/libcublas.so.13 && -f $d/libcublasLt.so.13 ]] || [[ -f $d/libcudart.so.13 ]]; then echo "$d"; fi
	done | awk '!seen[$0]++'
}

# check_pack (in run, there) prints the pack's VERSION and the packed
# worker's version, and warns loudly, without stopping, when this tree is not
# what was packed: build sources that differ from SOURCES.sha256 (the
# binaries run the packed code, the scripts and test data this tree's). The
# tree's git HEAD is only reported: the device tool copies the working tree,
# but its .git there can lag behind (in session 6 it stayed at the session's
# first commit while the files were HEAD's).
check_pack() {
	echo "== pack: $(version_field describe) (commit $(version_field commit); sources $(version_field sources); packed $(version_field packed))"
	echo "== packed worker: $(timeout 20 "$tmp/worker" version 2>&1 | head -3)"
	local warn=() head c diff n
	[[ -f $PACK/VERSION ]] || warn+=("the pack has no VERSION: packed by an older gpu-check.sh")
	diff=$(src_diff)
	if [[ -n $diff ]]; then
		n=$(grep -c . <<<"$diff")
		warn+=("STALE PACK: $n build sources in this tree differ from those packed (the binaries run the packed ones):")
		while IFS= read -r line; do warn+=("  $line"); done < <(head -20 <<<"$diff")
	fi
	c=$(version_field commit)
	if head=$(git rev-parse HEAD 2>/dev/null) && [[ $head != "$c" ]]; then
		if [[ -z $diff ]]; then
			echo "== (git here says HEAD $head, not the packed ${c:-?}; the build sources match the pack's, so the copy's .git lags: fine)"
		else
			warn+=("  (git here says HEAD $head; the pack is of ${c:-?})")
		fi
	fi
	if ((${#warn[@]})); then
		echo "################################################################################"
		printf '# WARNING: %s\n' "${warn[0]}"
		printf '# %s\n' "${warn[@]:1}"
		echo "# (going on: the results are the packed build's)"
		echo "################################################################################"
	fi
}

# wanted NAME: is step NAME in ONLY (comma or space separated; unset: all)?
wanted() {
	[[ -z ${ONLY:-} ]] && return 0
	[[ " ${ONLY//,/ } " == *" $1 "* ]]
}

# record NAME STATUS SECONDS LIMIT: one line of $out/steps.tsv.
record() {
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$out/steps.tsv"
}

# save copies what run has so far into $OUT (when set): the table so far,
# steps.tsv and everything as gpu-check.tgz (written aside, then renamed, so
# a run stopped while saving leaves the last whole one). At most 8 files
# come back from $OUT: these are 3, and they are replaced, not added.
save() {
	table "$out" >"$out/table.txt" 2>&1
	[[ -n ${OUT:-} ]] || return 0
	{
		mkdir -p "$OUT"
		cp "$out/steps.tsv" "$out/table.txt" "$OUT/"
		tar czf "$OUT/gpu-check.tgz.part" -C "$(dirname "$out")" "$(basename "$out")" &&
			mv -f "$OUT/gpu-check.tgz.part" "$OUT/gpu-check.tgz"
	} >/dev/null 2>&1
	return 0
}

# step NAME LIMIT LOG CMD...: runs CMD (with the redirections of the call)
# under timeout: LIMIT seconds, or what is left of the run's budget if less;
# skipped when ONLY leaves NAME out or under MIN_STEP_S seconds are left.
# It prints the outcome (to fd 3: the run's stdout; LOG's last lines on a
# failure), records it in steps.tsv, sets rc on a failure, and saves.
step() {
	local name=$1 limit=$2 log=$3
	shift 3
	if ! wanted "$name"; then
		record "$name" "skipped (not in ONLY)" 0 "$limit"
		return 0
	fi
	local left=$((deadline - SECONDS))
	if ((left < ${MIN_STEP_S:-10})); then
		echo "   SKIPPED: RUN_BUDGET (${budget}s) spent" >&3
		record "$name" "SKIPPED (budget spent)" 0 "$limit"
		rc=1
		save
		return 1
	fi
	((limit > left)) && limit=$left
	local t0=$SECONDS s=0
	timeout -k 10 "$limit" "$@" || s=$?
	local dt=$((SECONDS - t0)) st
	if ((s == 0)); then
		st=ok
	elif ((s == 124 || s == 137)) && ((dt >= limit)); then
		st="TIMED OUT (${limit}s)"
	else
		st="FAILED (exit $s)"
	fi
	echo "   $st, ${dt}s" >&3
	if ((s != 0)); then
		rc=1
		[[ -f $log ]] && tail -15 "$log" | sed 's/^/   | /' >&3
	fi
	record "$name" "$st" "$dt" "$limit"
	save
	return $s
}

# bench8b NAME LIMIT ARGS...: worker bench on the Qwen3-8B shape (random bf16
# weights, BATCH, PROMPT, NEW) with ARGS, into $out/NAME.json and NAME.log.
bench8b() {
	local name=$1 limit=$2
	shift 2
	step "$name" "$limit" "$out/$name.log" "$tmp/worker" bench --backend cuda --model "$MODEL" --random-weights \
		--batch "$BATCH" --prompt-len "$PROMPT" --new-tokens "$NEW" --json "$@" >"$out/$name.json" 2>"$out/$name.log"
}

# table DIR prints the summary table from the result files in DIR (what run
# wrote; missing files are said and their cells print n/a). The rows are the
# batches of the first bench file that loaded; the others are matched to them
# by batch.
table() {
	python3 - "$1" <<'PY'
import json, os, sys
out = sys.argv[1]
missing, empty, broken = [], [], []
def load(name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        missing.append(name)
        return None
    if os.path.getsize(p) == 0:  # its step failed, timed out or was skipped
        empty.append(name)
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except Exception as e:
        broken.append(f"{name}: {e}")
        return None
ours, theirs, copy = load("bench_draftbench.json"), load("bench_hf.json"), load("copy_torch.json")
graphs = load("bench_graphs.json")
inv = load("bench_invariant.json")
logits = load("bench_logits.json")
tuned, best = load("bench_tuned.json"), load("bench_best.json")
sampled = load("bench_sampled.json")
again = load("bench_again.json")
sampled_g = load("bench_sampled_graphs.json")
benches = [ours, graphs, logits, sampled, tuned, best, inv, again, sampled_g]
first = next((b for b in benches if b and b.get("rows")), None)
def by_batch(doc):
    return {r.get("batch"): r for r in (doc or {}).get("rows") or []}
def cell(doc_rows, batch, key, width, spec):
    v = doc_rows.get(batch, {}).get(key)
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}{spec}}"
def ratio(a, b, width):
    return f"{a / b:>{width}.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else f"{'n/a':>{width}}"
if first:
    print(f"draftbench: {first.get('device', '?')}" + ("" if ours else " (bench_draftbench.json missing: device from another bench)"))
if theirs:
    print(f"reference:  {theirs.get('engine', '?')} on {theirs.get('device', '?')}")
if copy:
    print(f"PyTorch 1 GiB copy: {copy.get('gb_per_s', 0):.0f} GB/s (read + write)")
print(f"{'batch':>5} | {'prefill tok/s':>13} {'HF':>9} {'ratio':>6} | {'decode tok/s':>12} {'HF':>8} {'ratio':>6} | "
      f"{'step ms':>8} {'HF ms':>7} {'floor ms':>8} {'GB/s':>6} {'wait ms':>7} {'graph ms':>8} {'inv ms':>7} {'logits ms':>9} "
      f"{'tuned ms':>8} {'t+g ms':>7} {'T0.8 ms':>7} {'T+g ms':>7} {'again ms':>8}")
o, t = by_batch(ours), by_batch(theirs)
g, iv, lg, tu, be, sa, ag, sg = (by_batch(d) for d in (graphs, inv, logits, tuned, best, sampled, again, sampled_g))
for row in (first or {}).get("rows", []):
    b = row.get("batch")
    ob, tb = o.get(b, {}), t.get(b, {})
    print(f"{b:>5} | {cell(o, b, 'prefill_tok_per_s', 13, '.0f')} {cell(t, b, 'prefill_tok_per_s', 9, '.0f')} "
          f"{ratio(ob.get('prefill_tok_per_s'), tb.get('prefill_tok_per_s'), 6)} | {cell(o, b, 'decode_tok_per_s', 12, '.1f')} "
          f"{cell(t, b, 'decode_tok_per_s', 8, '.1f')} {ratio(ob.get('decode_tok_per_s'), tb.get('decode_tok_per_s'), 6)} | "
          f"{cell(o, b, 'decode_step_ms', 8, '.2f')} {cell(t, b, 'decode_step_ms', 7, '.2f')} {cell(o, b, 'bandwidth_floor_step_ms', 8, '.2f')} "
          f"{cell(o, b, 'measured_bandwidth_gb_per_s', 6, '.0f')} {cell(o, b, 'decode_read_wait_ms', 7, '.2f')} "
          f"{cell(g, b, 'decode_step_ms', 8, '.2f')} {cell(iv, b, 'decode_step_ms', 7, '.2f')} {cell(lg, b, 'decode_step_ms', 9, '.2f')} "
          f"{cell(tu, b, 'decode_step_ms', 8, '.2f')} {cell(be, b, 'decode_step_ms', 7, '.2f')} {cell(sa, b, 'decode_step_ms', 7, '.2f')} "
          f"{cell(sg, b, 'decode_step_ms', 7, '.2f')} {cell(ag, b, 'decode_step_ms', 8, '.2f')}")
if not first:
    print("(no bench file loaded: no rows)")
if graphs:
    print("step graphs: " + json.dumps(graphs.get("step_graphs")))
if best:
    print("step graphs with tuned products: " + json.dumps(best.get("step_graphs")))
if sampled_g:
    print("step graphs, sampled steps: " + json.dumps(sampled_g.get("step_graphs")))
dr, drg = load("bench_drafter.json"), load("bench_drafter_graphs.json")
if dr or drg:
    d0, dg = by_batch(dr), by_batch(drg)
    print(f"drafter shape ({(dr or drg).get('model', '?')}): decode step ms eager / graphs (host wait ms):")
    for b in sorted(set(d0) | set(dg)):
        print(f"  batch {b:>3}: {cell(d0, b, 'decode_step_ms', 6, '.2f')} / {cell(dg, b, 'decode_step_ms', 6, '.2f')} "
              f"({cell(d0, b, 'decode_read_wait_ms', 5, '.2f')}), floor {cell(d0, b, 'bandwidth_floor_step_ms', 5, '.2f')}")
plans = (tuned or {}).get("gemm_plans") or []
bench_m = {r.get("batch") for r in (tuned or {}).get("rows") or []}
shown = [p for p in plans if p["m"] in bench_m]
if len(shown) < len(plans):
    print(f"tuned products: {len(plans)} shapes tuned at load in {(tuned or {}).get('prepare_products_ms', 0):.0f} ms; "
          "those of the bench's batch sizes:")
for p in shown:
    print(f"tuned m={p['m']:<3} n={p['n']:<6} k={p['k']:<5} cublasGemmEx {p['default_us']:8.1f} us, chosen {p['best_us']:8.1f} us "
          f"({'cuBLASLt' if p['cublaslt'] else 'cublasGemmEx'}, split k {p.get('split_k', 1)}, {p['candidates']} candidates)")
for name in ("quickstart", "quickstart_fast", "quickstart_sampled"):
    q = load(name + "/benchmark_results.json")
    if q:
        c, gp = q.get("comparison", {}), q.get("gpu", {})
        acc = (q.get("speculative") or {}).get("acceptance_rate")
        ws = q.get("environment", {}).get("workers", [])
        on = ", ".join(sorted({f"{d.get('kind', '?')} {d.get('name', '')}".strip() for w in ws for d in w.get("devices", [])})) or "?"
        modes = sorted({m for w in ws for m in w.get("cuda_modes", [])})
        print(f"{name} on {on}{' (' + ', '.join(modes) + ')' if modes else ''}: TPOT speedup {c.get('speedup_tpot', 0):.2f}, "
              f"acceptance {acc}, lossless {c.get('lossless')}")
        print(f"{name} gpu: " + json.dumps(gp)[:700])
if missing:
    print("missing: " + ", ".join(missing))
if empty:
    print("empty: " + ", ".join(empty))
for b in broken:
    print("unreadable: " + b)
# The steps' outcomes (run writes steps.tsv; a table of made-up files has none).
steps = []
try:
    with open(os.path.join(out, "steps.tsv")) as f:
        steps = [l.rstrip("\n").split("\t") for l in f if l.strip()]
except OSError:
    pass
if steps:
    print("steps (seconds / limit):")
    for s in steps:
        name, status, secs, limit = (s + ["", "", "", ""])[:4]
        print(f"  {name:<20} {secs:>4} / {limit:<4} {status}")
    late = [s[0] for s in steps if s[1].startswith("TIMED OUT")]
    bad = [s[0] for s in steps if s[1].startswith("FAILED")]
    skipped = [s[0] for s in steps if s[1].startswith("SKIPPED")]
    print("timed out: " + (", ".join(late) or "none") + "; failed: " + (", ".join(bad) or "none") +
          ("; skipped (budget spent): " + ", ".join(skipped) if skipped else ""))
PY
}

run() {
	# Each step's results go to $out, and after each step into $OUT (save).
	local work=${GPU_CHECK_WORK:-/tmp}
	local out=$work/gpu-check-out tmp=$work/gpu-check-bin
	local budget=${RUN_BUDGET:-340}
	local deadline=$((SECONDS + budget)) rc=0
	rm -rf "$out" "$tmp" && mkdir -p "$out" "$tmp/lib"
	: >"$out/steps.tsv"
	exec 3>&1
	[[ -f $PACK/worker.gz ]] || { echo "no $PACK/worker.gz: run scripts/gpu-check.sh pack here first and carry $PACK" >&2; exit 1; }
	gunzip -c "$PACK/worker.gz" >"$tmp/worker" && chmod +x "$tmp/worker"
	gunzip -c "$PACK/controller.gz" >"$tmp/controller" && chmod +x "$tmp/controller"
	for f in "$PACK"/lib/*.gz; do gunzip -c "$f" >"$tmp/lib/$(basename "$f" .gz)"; done
	local dirs
	dirs=$(cuda_libs | paste -sd:)
	# The machine's CUDA first; the carried libraries fill the gaps.
	export LD_LIBRARY_PATH="${dirs:+$dirs:}$tmp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	check_pack 2>&1 | tee "$out/pack.txt"
	[[ -n $dirs ]] || echo "warning: no libcublas.so.13 found on this machine; set CUDA_LIB_DIR" >&2
	{
		echo "== $(date -u +%FT%TZ) $(uname -m), RUN_BUDGET ${budget}s${ONLY:+, ONLY $ONLY}"
		timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>&1
		echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
		ldd "$tmp/worker" | grep -E "cublas|cudart|openblas|not found"
	} 2>&1 | tee "$out/env.txt"
	if ldd "$tmp/worker" | grep -q "not found"; then
		echo "bin/worker cannot find a library (above)" >&2
		save
		exit 1
	fi
	save
	# Limits: a few times what each step took on an H200 (the whole run about
	# 100-150 s); RUN_BUDGET bounds their sum.
	echo "== selftest (kernels, then the transformers goldens)"
	step selftest 90 "$out/selftest.txt" "$tmp/worker" selftest --backend cuda --goldens testdata/golden >"$out/selftest.txt" 2>&1
	echo "== selftest in batch-invariant mode (bf16)"
	step selftest_invariant 60 "$out/selftest_invariant.txt" "$tmp/worker" selftest --backend cuda --dtype bf16 \
		--goldens testdata/golden --batch-invariant >"$out/selftest_invariant.txt" 2>&1
	echo "== goldens with each model's layers split over three handles of this GPU (--devices 0,0,0)"
	step selftest_split 45 "$out/selftest_split.txt" "$tmp/worker" selftest --backend cuda --devices 0,0,0 --only matmul \
		--goldens testdata/golden >"$out/selftest_split.txt" 2>&1
	echo "== draftbench bench (cuda, bf16, random weights)"
	bench8b bench_draftbench 60
	echo "== draftbench bench with step graphs (--graphs)"
	bench8b bench_graphs 45 --graphs --bandwidth=false
	echo "== draftbench bench reading every logit row to the host (--greedy=false)"
	bench8b bench_logits 45 --greedy=false --bandwidth=false
	echo "== draftbench bench with sampled steps (--temperature 0.8)"
	bench8b bench_sampled 45 --temperature 0.8 --bandwidth=false
	echo "== draftbench bench with sampled steps and step graphs (--temperature 0.8 --graphs)"
	bench8b bench_sampled_graphs 45 --temperature 0.8 --graphs --bandwidth=false
	echo "== selftest with tuned products (cuBLASLt, --tune-gemm)"
	step selftest_tuned 60 "$out/selftest_tuned.txt" "$tmp/worker" selftest --backend cuda --only matmul \
		--goldens testdata/golden --tune-gemm >"$out/selftest_tuned.txt" 2>&1
	echo "== draftbench bench with tuned products (--tune-gemm)"
	bench8b bench_tuned 75 --tune-gemm --bandwidth=false
	echo "== draftbench bench with tuned products and step graphs (--tune-gemm --graphs)"
	bench8b bench_best 60 --tune-gemm --graphs --bandwidth=false
	echo "== draftbench bench in batch-invariant mode"
	bench8b bench_invariant 45 --batch-invariant --bandwidth=false
	# The same bench again, last: how far two processes of one bench differ
	# (run 8: 7.68 and 8.14 ms at batch 1), the noise any other column's
	# difference from the first must beat.
	echo "== draftbench bench again (as the first, after all the others)"
	bench8b bench_again 45 --bandwidth=false
	# A drafter's shape: fewer, smaller products, so launches weigh more.
	echo "== draftbench bench on the Qwen3-1.7B shape (a drafter), eager and with step graphs"
	MODEL=$DRAFTER bench8b bench_drafter 45
	MODEL=$DRAFTER bench8b bench_drafter_graphs 45 --graphs --bandwidth=false
	echo "== where the time goes (bench --profile-ops: synchronized after every op)"
	step profile 45 "$out/profile.txt" "$tmp/worker" bench --backend cuda --model "$MODEL" --random-weights --batch 1,32 \
		--prompt-len "$PROMPT" --new-tokens 8 --profile-ops --bandwidth=false --json >"$out/profile.json" 2>"$out/profile.txt"
	echo "== PyTorch device-to-device copy"
	PYTHONUNBUFFERED=1 step copy_torch 45 "$out/copy_torch.log" python3 - >"$out/copy_torch.json" 2>"$out/copy_torch.log" <<'PY'
import json, torch
n = 1 << 30
a = torch.randint(0, 1 << 30, (n // 4,), dtype=torch.int32, device="cuda")
b = torch.empty_like(a)
b.copy_(a)
ms = []
for _ in range(10):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize()
    ms.append(s.elapsed_time(e))
ms.sort()
print(json.dumps({"bytes": n, "median_ms": ms[5], "gb_per_s": 2 * n / (ms[5] * 1e-3) / 1e9}))
PY
	if [[ -z ${SKIP_HF:-} ]]; then
		echo "== transformers (cuda, bf16, sdpa, random weights)"
		PYTHONUNBUFFERED=1 step bench_hf 90 "$out/bench_hf.log" python3 scripts/golden/bench_hf.py "$MODEL" --device cuda \
			--dtype bf16 --random-weights --batch "$BATCH" --prompt-len "$PROMPT" --new-tokens "$NEW" \
			>"$out/bench_hf.json" 2>"$out/bench_hf.log"
	else
		record bench_hf "skipped (SKIP_HF)" 0 0
	fi
	local models=ok
	if wanted quickstart || wanted quickstart_fast || wanted quickstart_sampled || wanted tinymodel; then
		echo "== the quickstart's tiny target and drafter (worker tinymodel)"
		ONLY='' step tinymodel 30 "$out/tinymodel.log" "$tmp/worker" tinymodel --out "$tmp/models/tiny-target" \
			--drafter-out "$tmp/models/tiny-drafter" --drafter-layers 2 >"$out/tinymodel.log" 2>&1 || models=
	fi
	if [[ -n $models ]]; then
		echo "== quickstart end to end on the GPU (controller, NATS, worker stages on CUDA, NVML monitor)"
		TARGET_MODEL="$tmp/models/tiny-target" DRAFTER_MODEL="$tmp/models/tiny-drafter" \
			step quickstart 60 "$out/quickstart.log" "$tmp/controller" run hcl/quickstart.hcl --out "$out/quickstart" \
			>"$out/quickstart.log" 2>&1
		echo "== the quickstart again with step graphs and tuned products in the stages (--cuda-graphs --tune-gemm)"
		TARGET_MODEL="$tmp/models/tiny-target" DRAFTER_MODEL="$tmp/models/tiny-drafter" \
			step quickstart_fast 60 "$out/quickstart_fast.log" "$tmp/controller" run hcl/quickstart.hcl \
			--out "$out/quickstart_fast" --cuda-graphs --tune-gemm >"$out/quickstart_fast.log" 2>&1
		echo "== the quickstart sampled (temperature 0.8: probabilities, draws, q and the acceptance rule on the device)"
		TARGET_MODEL="$tmp/models/tiny-target" DRAFTER_MODEL="$tmp/models/tiny-drafter" \
			step quickstart_sampled 60 "$out/quickstart_sampled.log" "$tmp/controller" run hcl/quickstart.hcl \
			--out "$out/quickstart_sampled" -var temperature=0.8 --cuda-graphs >"$out/quickstart_sampled.log" 2>&1
	else
		echo "   (no tiny models: the quickstarts are left out)"
		record quickstart "SKIPPED (no tiny models)" 0 60
		record quickstart_fast "SKIPPED (no tiny models)" 0 60
		record quickstart_sampled "SKIPPED (no tiny models)" 0 60
		rc=1
	fi
	echo "== done in ${SECONDS}s"
	grep -q $'^profile\tok\t' "$out/steps.tsv" && cat "$out/profile.txt"
	save
	cat "$out/table.txt"
	grep -hE "^selftest cuda|^goldens cuda|^outputs cuda|^invariance cuda|^step graphs|^FAIL" "$out/selftest.txt" 2>/dev/null
	echo "batch-invariant mode:"
	grep -hE "^selftest cuda|^goldens cuda|^invariance cuda|^step graphs|^FAIL" "$out/selftest_invariant.txt" 2>/dev/null
	echo "tuned products:"
	grep -hE "^selftest cuda|^goldens cuda|^step graphs|^FAIL|^note" "$out/selftest_tuned.txt" 2>/dev/null
	echo "layers split over three handles of one GPU:"
	grep -hE "^selftest cuda|^goldens cuda|^split |^FAIL|error" "$out/selftest_split.txt" 2>/dev/null
	return $rc
}

case "${1:-run}" in
pack) pack "${2:-}" ;;
verify) verify ;;
run) run ;;
table) table "${2:?usage: scripts/gpu-check.sh table DIR}" ;;
*)
	echo "usage: scripts/gpu-check.sh [pack [CHECKOUT]|verify|run|table DIR]" >&2
	exit 2
	;;
esac
