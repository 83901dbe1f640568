#!/usr/bin/env python3
"""How far transformers itself lands from the f32 goldens when it runs in bf16.

For every golden in DIR (testdata/golden), the model is loaded by transformers
in bf16 and run teacher-forced over the same tokens the golden holds (prompt,
then its greedy tokens); the worst row's relative error
||logits - golden|| / ||golden|| is written to DIR/bf16_yardstick.json. A bf16
backend is judged against this yardstick (pkg/golden): tiny random models have
small, crowded logits, so bf16 rounding alone moves them by a few per cent.

Usage: bf16_yardstick.py DIR   (make golden runs it after make_golden.py)
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def main(d):
    out = {"_about": "max relative logit error of transformers " + transformers.__version__
           + " (torch " + torch.__version__ + ", CPU) in bf16 against these f32 goldens; written by "
           "scripts/golden/bf16_yardstick.py"}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".json") or f == "bf16_yardstick.json":
            continue
        name = f[:-5]
        with open(os.path.join(d, f)) as fh:
            g = json.load(fh)
        m = AutoModelForCausalLM.from_pretrained(os.path.join(d, "models", name), dtype=torch.bfloat16).eval()
        worst = 0.0
        for p in g["prompts"]:
            ids = torch.tensor([p["tokens"] + p["greedy"][:-1]])
            with torch.no_grad():
                got = m(ids).logits[0].float().numpy().astype(np.float64)
            # rows: every prompt position, then steps 1.. (step 0 is the last prompt row)
            want = np.array(p["prefill_logits"] + p["step_logits"][1:], dtype=np.float64)
            for a, b in zip(got, want):
                worst = max(worst, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
        out[name] = round(worst, 6)
        print(f"{name}: transformers bf16 max rel err {worst:.3g}")
    with open(os.path.join(d, "bf16_yardstick.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
