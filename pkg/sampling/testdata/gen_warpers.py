#!/usr/bin/env python3
"""Writes warpers.json: golden distributions for sampling.Probs.

An independent reference written in plain Python (no torch needed) that follows
transformers' sampling path line by line: draftbench's vocab mask, then
TemperatureLogitsWarper (scores / t), TopKLogitsWarper
(scores < topk(scores, k)[0][..., -1]), TopPLogitsWarper (ascending stable sort,
cumsum of softmax, drop cumulative <= 1 - top_p, keep the last one), softmax.

Run from this folder: python3 gen_warpers.py > warpers.json
"""
import json
import math

NEG = float("-inf")


def softmax(s):
    m = max(s)
    e = [0.0 if v == NEG else math.exp(v - m) for v in s]
    z = sum(e)
    return [v / z for v in e]


def warp(logits, temperature, top_k, top_p, vocab_limit):
    s = [NEG if (vocab_limit > 0 and i >= vocab_limit) else float(v)
         for i, v in enumerate(logits)]
    s = [v / temperature for v in s]
    if top_k > 0:
        k = min(top_k, len(s))
        thr = sorted(s, reverse=True)[k - 1]
        s = [NEG if v < thr else v for v in s]
    if 0 < top_p < 1:
        order = sorted(range(len(s)), key=lambda i: s[i])  # stable, ascending
        probs = softmax([s[i] for i in order])
        cum, remove = 0.0, set()
        for pos, i in enumerate(order):
            cum += probs[pos]
            if cum <= 1 - top_p and pos != len(order) - 1:
                remove.add(i)
        s = [NEG if i in remove else v for i, v in enumerate(s)]
    return softmax(s)


CASES = [
    ("temperature 1", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 1.0, 0, 0.0, 0),
    ("temperature 0.5 sharpens", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 0.5, 0, 0.0, 0),
    ("temperature 2 flattens", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 2.0, 0, 0.0, 0),
    ("top-k 3", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 1.0, 3, 0.0, 0),
    ("top-k keeps ties with the k-th", [1.0, 2.0, 1.0, 0.0, 1.0], 1.0, 2, 0.0, 0),
    ("top-k larger than vocab", [0.3, -0.2, 0.1], 1.0, 10, 0.0, 0),
    ("top-p 0.8", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 1.0, 0, 0.8, 0),
    ("top-p 0.05 keeps the top token", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 1.0, 0, 0.05, 0),
    ("top-p ties drop the lower id first", [1.0, 1.0, 1.0, 0.0], 1.0, 0, 0.5, 0),
    ("top-p after temperature", [2.0, 1.0, 0.5, -1.0, 0.0, 3.0], 1.7, 0, 0.9, 0),
    ("top-k then top-p on the renormalised rest", [2.0, 1.9, 1.8, 1.7, -3.0, 0.0, 1.0], 0.9, 4, 0.6, 0),
    ("vocab limit masks padding rows", [0.1, 0.2, 0.3, 9.0, 9.0], 1.0, 0, 0.0, 3),
    ("vocab limit then top-k and top-p", [1.5, -0.5, 0.7, 0.2, 30.0, 30.0, 30.0], 0.8, 3, 0.7, 4),
    ("large logits stay finite", [1000.0, 999.0, 998.0, -1000.0], 1.0, 0, 0.0, 0),
    ("masked input logits", [NEG, 0.0, 1.0, NEG], 1.0, 0, 0.0, 0),
]


def enc(v):
    return "-inf" if v == NEG else v


out = []
for name, logits, t, k, p, lim in CASES:
    out.append({
        "name": name,
        "logits": [enc(v) for v in logits],
        "temperature": t, "top_k": k, "top_p": p, "vocab_limit": lim,
        "probs": warp(logits, t, k, p, lim),
    })
print(json.dumps(out, indent=1))
