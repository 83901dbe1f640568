#!/usr/bin/env python3
"""Times Hugging Face transformers on a model folder with the same protocol
as `worker bench`: prefill of each sequence alone, then batched greedy-free
decode steps with the KV cache.

Usage: bench_hf.py MODEL_DIR --batch 1,8 --prompt-len 128 --new-tokens 32 --threads 2
       bench_hf.py MODEL_DIR --device cuda --dtype bf16 --random-weights --batch 1,8,32
The default is PyTorch CPU, eager attention, f32. On a GPU (--device cuda)
attention is PyTorch's SDPA unless --attn says otherwise, and every timed
region ends with a device synchronisation. --random-weights needs only
config.json (the model is initialised from it, on the device).
Prints one JSON object like `worker bench --json`.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--attn", default="", help="attention implementation (default: eager on cpu, sdpa on cuda)")
    ap.add_argument("--random-weights", action="store_true", help="initialise from config.json instead of loading weights")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dtype = DTYPES[a.dtype]
    attn = a.attn or ("eager" if dev.type == "cpu" else "sdpa")
    if a.random_weights:
        config = AutoConfig.from_pretrained(a.model)
        torch.manual_seed(1)
        with dev:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation=attn).to(dev).eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    rows = []
    with torch.inference_mode():
        # One untimed prefill and decode step first: the first calls pay for
        # CUDA's and cuBLAS's start-up, which is no part of either speed.
        warm = DynamicCache()
        model(torch.randint(0, vocab, (1, a.prompt_len), generator=gen).to(dev), past_key_values=warm, use_cache=True,
              logits_to_keep=1)
        model(torch.randint(0, vocab, (1, 1), generator=gen).to(dev), past_key_values=warm, use_cache=True)
        sync()
        del warm
        for b in [int(x) for x in a.batch.split(",")]:
            prompts = torch.randint(0, vocab, (b, a.prompt_len), generator=gen).to(dev)
            prefill = 0.0
            caches = []
            for i in range(b):
                cache = DynamicCache()
                sync()
                t = time.perf_counter()
                # Only the last position's logits, as worker bench computes.
                model(prompts[i:i + 1], past_key_values=cache, use_cache=True, logits_to_keep=1)
                sync()
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
                ids = torch.randint(0, vocab, (b, 1), generator=gen).to(dev)
                sync()
                t = time.perf_counter()
                model(ids, past_key_values=cache, use_cache=True)
                sync()
                if step >= a.warmup:
                    elapsed += time.perf_counter() - t
            rows.append({"batch": b, "prompt_len": a.prompt_len,
                         "prefill_tok_per_s": b * a.prompt_len / prefill,
                         "decode_tok_per_s": b * a.new_tokens / elapsed,
                         "decode_step_ms": elapsed * 1000 / a.new_tokens})
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(json.dumps({"model": a.model, "threads": torch.get_num_threads(), "engine":
                      "transformers %s torch %s %s %s" % (transformers.__version__, torch.__version__, a.dtype, attn),
                      "device": device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
