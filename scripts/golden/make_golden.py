#!/usr/bin/env python3
"""Reference oracle: tiny random models written by Hugging Face transformers,
and the logits and greedy continuations transformers computes for them.

Each model folder (config.json, safetensors, generation_config.json) is made by
transformers' own save_pretrained, so the Go loader is tested on files it did
not write. For every model the script records, for a few fixed prompts:
  - prefill: the logits of every prompt position,
  - greedy: the tokens generate() picks and the raw logits of every step.
bf16 models are saved in bf16 and evaluated in f32 (weights upcast), which is
what the CPU backend computes.

Usage: make_golden.py OUT_DIR   (make golden: OUT_DIR = testdata/golden)
"""
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

VOCAB = 384
NEW_TOKENS = 12

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    initializer_range=0.15,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)

CASES = [
    # name, config class, extra config, dtype on disk, max shard size
    ("llama", transformers.LlamaConfig, dict(
        rope_theta=500000.0, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16)), torch.float32, "150KB"),
    ("mistral", transformers.MistralConfig, dict(
        rope_theta=10000.0, sliding_window=6, tie_word_embeddings=False, head_dim=16), torch.float32, None),
    ("qwen2", transformers.Qwen2Config, dict(
        rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False), torch.float32, None),
    ("qwen3", transformers.Qwen3Config, dict(
        rope_theta=1000000.0, tie_word_embeddings=True, head_dim=32, attention_bias=False), torch.float32, None),
    ("qwen3-bf16", transformers.Qwen3Config, dict(
        rope_theta=1000000.0, tie_word_embeddings=False, head_dim=32, attention_bias=False), torch.bfloat16, None),
]

PROMPTS = [
    [1, 17, 250, 33, 99, 7, 380],
    [5, 5, 5, 64, 200, 13, 300, 2, 45, 46, 47, 48],
    [42, 3],
]


def perturb(model, gen):
    """HF initialises norms to 1 and biases to 0; make them random so the test
    would notice a norm or bias applied wrongly (or not at all)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def rows(t):
    return [[float("%.7g" % v) for v in row] for row in t.tolist()]


def main(out):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(out, exist_ok=True)
    for seed, (name, cls, extra, dtype, shard) in enumerate(CASES):
        torch.manual_seed(1000 + seed)
        gen = torch.Generator().manual_seed(2000 + seed)
        cfg = cls(**{**COMMON, **extra})
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
        perturb(model, gen)
        folder = os.path.join(out, "models", name)
        shutil.rmtree(folder, ignore_errors=True)
        kw = {"max_shard_size": shard} if shard else {}
        model.to(dtype).save_pretrained(folder, **kw)
        # Evaluate exactly what is on disk, in f32.
        ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        golden = {"model": name, "architecture": cfg.architectures[0] if cfg.architectures else type(ref).__name__,
                  "transformers": transformers.__version__, "torch": torch.__version__,
                  "disk_dtype": str(dtype).replace("torch.", ""), "prompts": []}
        for prompt in PROMPTS:
            ids = torch.tensor([prompt])
            with torch.no_grad():
                prefill = ref(ids).logits[0]
                gen_out = ref.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                       output_logits=True, return_dict_in_generate=True, pad_token_id=0)
            tokens = gen_out.sequences[0, len(prompt):].tolist()
            steps = torch.stack([l[0] for l in gen_out.logits])
            golden["prompts"].append({"tokens": prompt, "prefill_logits": rows(prefill),
                                      "greedy": tokens, "step_logits": rows(steps)})
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(golden, f, separators=(",", ":"))
        print("wrote", name, "greedy", [p["greedy"][:6] for p in golden["prompts"]])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "testdata/golden")
