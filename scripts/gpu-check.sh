#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (docs/cuda.md), in two steps:
#
#   scripts/gpu-check.sh pack   here: make build-cuda, then pack bin/worker and
#                               the shared libraries a GPU image may lack
#                               (OpenBLAS for the CPU backend, libgfortran,
#                               libquadmath, libcudart) into build/gpu-check,
#                               gzipped to travel in the device tool's carry.
#   scripts/gpu-check.sh [run]  there: builds nothing; unpacks, finds the
#                               machine's CUDA 13 libcublas/libcudart, then
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
#                                  on the device, read back), with
#                                  tuned products (--tune-gemm; its selftest too)
#                                  and with tuned products and graphs together,
#                               3. the same at batch 1 and 32 with --profile-ops
#                                  (where prefill and decode spend their time),
#                               4. the copy through PyTorch, as a cross-check,
#                               5. transformers (bf16, SDPA) on the same shape and
#                                  card (SKIP_HF=1 leaves it out),
#                               6. the quickstart job end to end (controller, NATS,
#                                  worker stages on CUDA, the NVML monitor), then
#                                  again with --cuda-graphs --tune-gemm,
#                               and prints a table last. Everything is packed into
#                               $OUT/gpu-check.tgz, the table beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=build/gpu-check
MODEL=testdata/configs/qwen3-8b
BATCH="${BATCH:-1,8,32}"
PROMPT="${PROMPT:-128}"
NEW="${NEW:-32}"

pack() {
	set -e
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
	du -sh "$PACK"
	echo "packed: run it on the GPU machine with scripts/gpu-check.sh run, carrying $PACK (docs/cuda.md)"
}

# cuda_libs prints the folders holding the machine's own libcublas.so.13 and
# libcudart.so.13: the CUDA toolkit's, or the pip wheels PyTorch came with.
cuda_libs() {
	{
		for d in ${CUDA_LIB_DIR:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
			echo "$d"
		done
		python3 - <<'PY' 2>/dev/null
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

# bench8b NAME ARGS...: worker bench on the Qwen3-8B shape (random bf16 weights,
# BATCH, PROMPT, NEW) with ARGS, into $out/NAME.json and NAME.log; a failure
# shows the log and sets rc (run's locals).
bench8b() {
	local name=$1
	shift
	"$tmp/worker" bench --backend cuda --model "$MODEL" --random-weights --batch "$BATCH" --prompt-len "$PROMPT" \
		--new-tokens "$NEW" --json "$@" >"$out/$name.json" 2>"$out/$name.log" || {
		rc=1
		cat "$out/$name.log"
	}
}

# table DIR prints the summary table from the result files in DIR (what run
# wrote; missing files are said and left out).
table() {
	python3 - "$1" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:
        print(f"{name}: {e}")
        return None
ours, theirs, copy = load("bench_draftbench.json"), load("bench_hf.json"), load("copy_torch.json")
graphs = load("bench_graphs.json")
inv = load("bench_invariant.json")
logits = load("bench_logits.json")
tuned, best = load("bench_tuned.json"), load("bench_best.json")
sampled = load("bench_sampled.json")
def step(doc, i):
    rows = (doc or {}).get("rows", [])
    return rows[i].get("decode_step_ms", 0) if i < len(rows) else 0
if ours:
    print(f"draftbench: {ours.get('device', '?')}")
if theirs:
    print(f"reference:  {theirs['engine']} on {theirs.get('device', '?')}")
if copy:
    print(f"PyTorch 1 GiB copy: {copy['gb_per_s']:.0f} GB/s (read + write)")
print(f"{'batch':>5} | {'prefill tok/s':>13} {'HF':>9} {'ratio':>6} | {'decode tok/s':>12} {'HF':>8} {'ratio':>6} | "
      f"{'step ms':>8} {'HF ms':>7} {'floor ms':>8} {'GB/s':>6} {'wait ms':>7} {'graph ms':>8} {'inv ms':>7} {'logits ms':>9} "
      f"{'tuned ms':>8} {'t+g ms':>7} {'T0.8 ms':>7}")
for i, o in enumerate((ours or {}).get("rows", [])):
    t = (theirs or {}).get("rows", [])
    t = t[i] if i < len(t) else {}
    r = lambda a, b: a / b if b else float("nan")
    print(f"{o['batch']:>5} | {o['prefill_tok_per_s']:>13.0f} {t.get('prefill_tok_per_s', 0):>9.0f} "
          f"{r(o['prefill_tok_per_s'], t.get('prefill_tok_per_s')):>6.2f} | {o['decode_tok_per_s']:>12.1f} "
          f"{t.get('decode_tok_per_s', 0):>8.1f} {r(o['decode_tok_per_s'], t.get('decode_tok_per_s')):>6.2f} | "
          f"{o['decode_step_ms']:>8.2f} {t.get('decode_step_ms', 0):>7.2f} {o.get('bandwidth_floor_step_ms', 0):>8.2f} "
          f"{o.get('measured_bandwidth_gb_per_s', 0):>6.0f} {o.get('decode_read_wait_ms', 0):>7.2f} "
          f"{step(graphs, i):>8.2f} {step(inv, i):>7.2f} {step(logits, i):>9.2f} {step(tuned, i):>8.2f} {step(best, i):>7.2f} {step(sampled, i):>7.2f}")
if graphs:
    print("step graphs: " + json.dumps(graphs.get("step_graphs")))
if best:
    print("step graphs with tuned products: " + json.dumps(best.get("step_graphs")))
for p in (tuned or {}).get("gemm_plans") or []:
    print(f"tuned m={p['m']:<3} n={p['n']:<6} k={p['k']:<5} cublasGemmEx {p['default_us']:8.1f} us, chosen {p['best_us']:8.1f} us "
          f"({'cuBLASLt' if p['cublaslt'] else 'cublasGemmEx'}, split k {p.get('split_k', 1)}, {p['candidates']} candidates)")
for name in ("quickstart", "quickstart_fast"):
    q = load(name + "/benchmark_results.json")
    if q:
        c, g = q.get("comparison", {}), q.get("gpu", {})
        ws = q.get("environment", {}).get("workers", [])
        on = ", ".join(sorted({f"{d.get('kind', '?')} {d.get('name', '')}".strip() for w in ws for d in w.get("devices", [])})) or "?"
        modes = sorted({m for w in ws for m in w.get("cuda_modes", [])})
        print(f"{name} on {on}{' (' + ', '.join(modes) + ')' if modes else ''}: TPOT speedup {c.get('speedup_tpot', 0):.2f}, "
              f"lossless {c.get('lossless')}")
        print(f"{name} gpu: " + json.dumps(g)[:700])
PY
}

run() {
	# Everything is written to $out and, at the end, packed into one file under
	# $OUT (the device tool brings back at most 8 files).
	local out=/tmp/gpu-check-out tmp=/tmp/gpu-check-bin
	rm -rf "$out" && mkdir -p "$out" "$tmp/lib"
	[[ -f $PACK/worker.gz ]] || { echo "no $PACK/worker.gz: run scripts/gpu-check.sh pack here first and carry $PACK" >&2; exit 1; }
	gunzip -c "$PACK/worker.gz" >"$tmp/worker" && chmod +x "$tmp/worker"
	gunzip -c "$PACK/controller.gz" >"$tmp/controller" && chmod +x "$tmp/controller"
	for f in "$PACK"/lib/*.gz; do gunzip -c "$f" >"$tmp/lib/$(basename "$f" .gz)"; done
	local dirs
	dirs=$(cuda_libs | paste -sd:)
	[[ -n $dirs ]] || echo "warning: no libcublas.so.13 found on this machine; set CUDA_LIB_DIR" >&2
	# The machine's CUDA first; the carried libraries fill the gaps.
	export LD_LIBRARY_PATH="${dirs:+$dirs:}$tmp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	{
		echo "== $(date -u +%FT%TZ) $(uname -m)"
		nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>&1
		echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
		ldd "$tmp/worker" | grep -E "cublas|cudart|openblas|not found"
	} 2>&1 | tee "$out/env.txt"
	if ldd "$tmp/worker" | grep -q "not found"; then
		echo "bin/worker cannot find a library (above)" >&2
		exit 1
	fi
	local rc=0
	echo "== selftest (kernels, then the transformers goldens)"
	"$tmp/worker" selftest --backend cuda --goldens testdata/golden 2>&1 | tee "$out/selftest.txt"
	[[ ${PIPESTATUS[0]} == 0 ]] || rc=1
	echo "== selftest in batch-invariant mode (bf16)"
	"$tmp/worker" selftest --backend cuda --dtype bf16 --goldens testdata/golden --batch-invariant \
		>"$out/selftest_invariant.txt" 2>&1 || rc=1
	echo "== goldens with each model's layers split over three handles of this GPU (--devices 0,0,0)"
	"$tmp/worker" selftest --backend cuda --devices 0,0,0 --only matmul --goldens testdata/golden \
		>"$out/selftest_split.txt" 2>&1 || rc=1
	echo "== draftbench bench (cuda, bf16, random weights)"
	bench8b bench_draftbench
	echo "== draftbench bench with step graphs (--graphs)"
	bench8b bench_graphs --graphs --bandwidth=false
	echo "== draftbench bench reading every logit row to the host (--greedy=false)"
	bench8b bench_logits --greedy=false --bandwidth=false
	echo "== draftbench bench with sampled steps (--temperature 0.8)"
	bench8b bench_sampled --temperature 0.8 --bandwidth=false
	echo "== selftest with tuned products (cuBLASLt, --tune-gemm)"
	"$tmp/worker" selftest --backend cuda --only matmul --goldens testdata/golden --tune-gemm \
		>"$out/selftest_tuned.txt" 2>&1 || rc=1
	echo "== draftbench bench with tuned products (--tune-gemm)"
	bench8b bench_tuned --tune-gemm --bandwidth=false
	echo "== draftbench bench with tuned products and step graphs (--tune-gemm --graphs)"
	bench8b bench_best --tune-gemm --graphs --bandwidth=false
	echo "== draftbench bench in batch-invariant mode"
	bench8b bench_invariant --batch-invariant --bandwidth=false
	echo "== where the time goes (bench --profile-ops: synchronized after every op)"
	"$tmp/worker" bench --backend cuda --model "$MODEL" --random-weights --batch 1,32 --prompt-len "$PROMPT" \
		--new-tokens 8 --profile-ops --bandwidth=false --json >"$out/profile.json" 2>"$out/profile.txt" || rc=1
	echo "== PyTorch device-to-device copy"
	PYTHONUNBUFFERED=1 python3 - >"$out/copy_torch.json" <<'PY' || rc=1
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
		PYTHONUNBUFFERED=1 python3 scripts/golden/bench_hf.py "$MODEL" --device cuda --dtype bf16 --random-weights \
			--batch "$BATCH" --prompt-len "$PROMPT" --new-tokens "$NEW" >"$out/bench_hf.json" 2>"$out/bench_hf.log" || {
			rc=1
			tail -20 "$out/bench_hf.log"
		}
	fi
	echo "== quickstart end to end on the GPU (controller, NATS, worker stages on CUDA, NVML monitor)"
	"$tmp/worker" tinymodel --out "$tmp/models/tiny-target" --drafter-out "$tmp/models/tiny-drafter" --drafter-layers 2 >"$out/quickstart.log" 2>&1 &&
		TARGET_MODEL="$tmp/models/tiny-target" DRAFTER_MODEL="$tmp/models/tiny-drafter" \
			timeout 180 "$tmp/controller" run hcl/quickstart.hcl --out "$out/quickstart" >>"$out/quickstart.log" 2>&1 || {
		rc=1
		tail -30 "$out/quickstart.log"
	}
	echo "== the quickstart again with step graphs and tuned products in the stages (--cuda-graphs --tune-gemm)"
	TARGET_MODEL="$tmp/models/tiny-target" DRAFTER_MODEL="$tmp/models/tiny-drafter" \
		timeout 180 "$tmp/controller" run hcl/quickstart.hcl --out "$out/quickstart_fast" --cuda-graphs --tune-gemm \
		>"$out/quickstart_fast.log" 2>&1 || {
		rc=1
		tail -30 "$out/quickstart_fast.log"
	}
	cat "$out/profile.txt"
	table "$out" | tee "$out/table.txt"
	grep -E "^selftest cuda|^goldens cuda|^outputs cuda|^invariance cuda|^step graphs|^FAIL" "$out/selftest.txt"
	echo "batch-invariant mode:"
	grep -E "^selftest cuda|^goldens cuda|^invariance cuda|^step graphs|^FAIL" "$out/selftest_invariant.txt"
	echo "tuned products:"
	grep -E "^selftest cuda|^goldens cuda|^step graphs|^FAIL" "$out/selftest_tuned.txt"
	echo "layers split over three handles of one GPU:"
	grep -E "^selftest cuda|^goldens cuda|^split |^FAIL|error" "$out/selftest_split.txt"
	if [[ -n ${OUT:-} ]]; then
		cp "$out/table.txt" "$OUT/" 2>/dev/null
		tar czf "$OUT/gpu-check.tgz" -C "$(dirname "$out")" "$(basename "$out")"
	fi
	return $rc
}

case "${1:-run}" in
pack) pack ;;
run) run ;;
table) table "${2:?usage: scripts/gpu-check.sh table DIR}" ;;
*)
	echo "usage: scripts/gpu-check.sh [pack|run|table DIR]" >&2
	exit 2
	;;
esac
