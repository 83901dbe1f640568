#!/usr/bin/env bash
# Engine benchmark (make bench): a SmolLM2-135M-shaped model with random bf16
# weights, timed by draftbench's CPU engine and by Hugging Face transformers
# (PyTorch CPU, eager, f32, same threads) in one run; a table last.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CACHE:-$HOME/.cache/draftbench}"
PY="$CACHE/venv/bin/python"
THREADS="${THREADS:-$(nproc)}"
BATCH="${BATCH:-1,8}"
PROMPT="${PROMPT:-128}"
NEW="${NEW:-32}"
M=build/models/smollm2-135m-shape
if [[ ! -f $M/config.json ]]; then
	bin/worker tinymodel --out "$M" --arch LlamaForCausalLM --hidden 576 --layers 30 --heads 9 --kv-heads 3 \
		--head-dim 64 --intermediate 1536 --tokenizer-vocab 1024 --vocab-pad $((49152 - 1027)) --dtype BF16 --tied >/dev/null
fi
bin/worker inspect --model "$M" | sed -n '2,6p'
ours=$(bin/worker bench --model "$M" --batch "$BATCH" --prompt-len "$PROMPT" --new-tokens "$NEW" --threads "$THREADS" --json)
theirs=$("$PY" scripts/golden/bench_hf.py "$M" --batch "$BATCH" --prompt-len "$PROMPT" --new-tokens "$NEW" --threads "$THREADS" 2>/dev/null)
"$PY" - "$ours" "$theirs" <<'PYEOF'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"threads: draftbench {ours['threads']}, {theirs['engine']} {theirs['threads']}")
print(f"{'batch':>5} {'prompt':>6} | {'prefill tok/s':>14} {'HF':>8} {'ratio':>6} | {'decode tok/s':>12} {'HF':>8} {'ratio':>6} | {'step ms':>8} {'floor ms':>8} {'GB/s':>6}")
for o, t in zip(ours["rows"], theirs["rows"]):
    print(f"{o['batch']:>5} {o['prompt_len']:>6} | {o['prefill_tok_per_s']:>14.1f} {t['prefill_tok_per_s']:>8.1f} {o['prefill_tok_per_s']/t['prefill_tok_per_s']:>6.2f} | "
          f"{o['decode_tok_per_s']:>12.1f} {t['decode_tok_per_s']:>8.1f} {o['decode_tok_per_s']/t['decode_tok_per_s']:>6.2f} | "
          f"{o['decode_step_ms']:>8.2f} {o.get('bandwidth_floor_step_ms', 0):>8.2f} {o.get('measured_bandwidth_gb_per_s', 0):>6.1f}")
PYEOF
