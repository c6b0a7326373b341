"""RoPE tables from a config.json, by the formulas of transformers'
modeling_rope_utils.py (default, linear, dynamic, yarn, llama3), in float64 where
transformers computes in float32, so that model/hfrope_test.go (TORUS_ROPE_CHECK=1)
can compare torus's tables with them to 1e-12.

stdin:  [{"config": "path/config.json", "positions": [0, 5, ...]}, ...]
stdout: [{"inv_freq": [...], "attention": a, "cos": [[...]], "sin": [[...]]}, ...]

Written from the formulas, independently of torus's Go; transformers itself is
not needed (only torch).
"""

import json
import math
import sys

import torch

F64 = torch.float64


def rope_parameters(cfg):
    """The rope dict as transformers standardizes it (v4 rope_scaling or v5 rope_parameters)."""
    p = dict(cfg.get("rope_scaling") or cfg.get("rope_parameters") or {})
    p.setdefault("rope_type", p.get("type", "default"))
    p.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    if p["rope_type"] in ("llama3", "yarn"):
        p.setdefault("original_max_position_embeddings", cfg["max_position_embeddings"])
    return p


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def plain(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=F64) / dim))


def rope_default(cfg, p, seq_len):
    return plain(p["rope_theta"], head_dim(cfg)), 1.0


def rope_linear(cfg, p, seq_len):
    return plain(p["rope_theta"], head_dim(cfg)) / p["factor"], 1.0


def rope_dynamic(cfg, p, seq_len):
    dim, factor = head_dim(cfg), p["factor"]
    original = cfg["max_position_embeddings"]
    n = original if seq_len is None else max(seq_len, original)
    base = p["rope_theta"] * ((factor * n / original) - (factor - 1)) ** (dim / (dim - 2))
    return plain(base, dim), 1.0


def rope_yarn(cfg, p, seq_len):
    dim, base, factor = head_dim(cfg), p["rope_theta"], p["factor"]
    original = p["original_max_position_embeddings"]
    attention = p.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0
    fast = p.get("beta_fast") or 32
    slow = p.get("beta_slow") or 1

    def dim_turning(rotations):  # the dimension that turns `rotations` times over `original`
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_turning(fast)), 0)
    high = min(math.ceil(dim_turning(slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=F64) - low) / (high - low), 0, 1)
    extrapolate = 1 - ramp
    freqs = base ** (torch.arange(0, dim, 2, dtype=F64) / dim)
    inv = (1.0 / (factor * freqs)) * (1 - extrapolate) + (1.0 / freqs) * extrapolate
    return inv, attention


def rope_llama3(cfg, p, seq_len):
    inv = plain(p["rope_theta"], head_dim(cfg))
    factor, lo, hi = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    original = p["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > original / lo, inv / factor, inv)
    smooth = (original / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / hi) & ~(wavelen > original / lo)
    return torch.where(medium, smoothed, scaled), 1.0


ROPE = {"default": rope_default, "linear": rope_linear, "dynamic": rope_dynamic,
        "yarn": rope_yarn, "llama3": rope_llama3}


def tables(cfg, positions):
    p = rope_parameters(cfg)
    fn = ROPE[p["rope_type"]]
    inv, attention = fn(cfg, p, None)  # at construction
    seq_len = max(positions) + 1
    # dynamic grows its frequencies in forward once the positions pass the cache.
    if p["rope_type"] == "dynamic" and seq_len > cfg["max_position_embeddings"]:
        inv, attention = fn(cfg, p, seq_len)
    pos = torch.tensor(positions, dtype=F64)
    angles = torch.outer(pos, inv)
    emb = torch.cat((angles, angles), dim=-1)
    return {"inv_freq": inv.tolist(), "attention": attention,
            "cos": (emb.cos() * attention).tolist(), "sin": (emb.sin() * attention).tolist()}


def main():
    out = []
    for q in json.load(sys.stdin):
        with open(q["config"]) as f:
            cfg = json.load(f)
        out.append(tables(cfg, q["positions"]))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
