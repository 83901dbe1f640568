#!/usr/bin/env python3
"""Times Hugging Face transformers (PyTorch CPU, eager attention, f32) on a
model folder with the same protocol as `worker bench`: prefill of each
sequence alone, then batched greedy-free decode steps with the KV cache.

Usage: bench_hf.py MODEL_DIR --batch 1,8 --prompt-len 128 --new-tokens 32 --threads 2
Prints one JSON object like `worker bench --json`.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager").eval()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    rows = []
    with torch.inference_mode():
        for b in [int(x) for x in a.batch.split(",")]:
            prompts = torch.randint(0, vocab, (b, a.prompt_len), generator=gen)
            prefill = 0.0
            caches = []
            for i in range(b):
                cache = DynamicCache()
                t = time.perf_counter()
                model(prompts[i:i + 1], past_key_values=cache, use_cache=True)
                prefill += time.perf_counter() - t
                caches.append(cache)
            # Equal prompt lengths: the per-sequence caches stack into one batch cache.
            cache = DynamicCache()
            for layer in range(model.config.num_hidden_layers):
                k = torch.cat([c.layers[layer].keys for c in caches])
                v = torch.cat([c.layers[layer].values for c in caches])
                cache.update(k, v, layer)
            elapsed = 0.0
            for step in range(a.warmup + a.new_tokens):
                ids = torch.randint(0, vocab, (b, 1), generator=gen)
                t = time.perf_counter()
                model(ids, past_key_values=cache, use_cache=True)
                if step >= a.warmup:
                    elapsed += time.perf_counter() - t
            rows.append({"batch": b, "prompt_len": a.prompt_len,
                         "prefill_tok_per_s": b * a.prompt_len / prefill,
                         "decode_tok_per_s": b * a.new_tokens / elapsed,
                         "decode_step_ms": elapsed * 1000 / a.new_tokens})
    print(json.dumps({"model": a.model, "threads": torch.get_num_threads(), "engine":
                      "transformers %s torch %s" % (transformers.__version__, torch.__version__), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
