"""Loads a torus Hugging Face export and prints its logits for token ids, as JSON.

    python3 check.py DIR 1,7,3,...   ->   {"impl": ..., "logits": [[...], ...]}

With transformers installed, the folder is loaded by LlamaForCausalLM.from_pretrained
(float32, eager attention) and any missing, unexpected or mismatched tensor is an
error. Without it, by `reference`: a torch LlamaForCausalLM written after
transformers' modeling_llama (the same module tree, so the same state_dict names and
shapes, loaded with strict=True), fed by a plain safetensors reader that follows the
index of a sharded folder. model/hfcheck_test.go compares the logits with torus's.
"""

import json
import math
import os
import struct
import sys

import torch
from torch import nn


def main():
    folder, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
    try:
        import transformers  # noqa: F401
    except ImportError:
        impl, model = "reference", load_reference(folder)
    else:
        impl, model = "transformers " + transformers.__version__, load_transformers(folder)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))
    json.dump({"impl": impl, "logits": logits[0].tolist()}, sys.stdout)


def load_transformers(folder):
    from transformers import LlamaForCausalLM

    model, info = LlamaForCausalLM.from_pretrained(
        folder, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit(f"{folder}: from_pretrained: {bad}")
    model.eval()
    return lambda ids: model(ids).logits


# The safetensors format: 8-byte little-endian header length, JSON header, data.
ST_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    if header.pop("__metadata__", {}).get("format") != "pt":
        sys.exit(f'{path}: __metadata__ lacks "format": "pt" (from_pretrained refuses the file)')
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = ST_DTYPES[info["dtype"]]
        raw = bytearray(data[begin:end])
        if dtype in (torch.float16, torch.bfloat16):  # read the bits, then view them
            t = torch.frombuffer(raw, dtype=torch.int16).view(dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype)
        out[name] = t.reshape(info["shape"]).float()
    return out


def read_weights(folder):
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):  # from_pretrained's order: the single file first
        return read_safetensors(single)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        index = json.load(f)
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        part = read_safetensors(os.path.join(folder, shard))
        for name in part:
            if index["weight_map"].get(name) != shard:
                sys.exit(f"{shard}: holds {name}, which the index puts in {index['weight_map'].get(name)}")
        state.update(part)
    return state


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c["heads"], c["kv_heads"], c["head_dim"]
        self.q_proj = nn.Linear(c["dim"], self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c["dim"], self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c["dim"], self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c["dim"], bias=False)

    def forward(self, x, cos, sin):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        g = self.heads // self.kv_heads  # repeat_kv
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        s = q @ k.transpose(2, 3) / math.sqrt(self.head_dim)
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        o = torch.softmax(s, dim=-1, dtype=torch.float32) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["dim"], c["mlp_dim"], bias=False)
        self.up_proj = nn.Linear(c["dim"], c["mlp_dim"], bias=False)
        self.down_proj = nn.Linear(c["mlp_dim"], c["dim"], bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["dim"], c["eps"])
        self.post_attention_layernorm = RMSNorm(c["dim"], c["eps"])

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["dim"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["dim"], c["eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Model(c)
        if not c["tied"]:  # a tied head is the embedding, not a tensor of its own
            self.lm_head = nn.Linear(c["dim"], c["vocab"], bias=False)

    def forward(self, ids):
        c = self.c
        inv_freq = 1.0 / (c["theta"] ** (torch.arange(0, c["head_dim"], 2, dtype=torch.int64).float() / c["head_dim"]))
        freqs = torch.arange(ids.shape[1]).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        h = self.model.norm(h)
        w = self.model.embed_tokens.weight if c["tied"] else self.lm_head.weight
        return h @ w.T


def load_reference(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("architectures") != ["LlamaForCausalLM"] or cfg.get("model_type") != "llama":
        sys.exit(f"{folder}: config.json is not a LlamaForCausalLM's: {cfg.get('architectures')} {cfg.get('model_type')}")
    for key, want in (("hidden_act", "silu"), ("rope_scaling", None), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, want) != want:
            sys.exit(f"{folder}: config.json {key} = {cfg[key]!r}, the reference handles {want!r} only")
    with open(os.path.join(folder, "generation_config.json")) as f:
        json.load(f)
    heads = cfg["num_attention_heads"]
    c = {
        "vocab": cfg["vocab_size"],
        "dim": cfg["hidden_size"],
        "mlp_dim": cfg["intermediate_size"],
        "layers": cfg["num_hidden_layers"],
        "heads": heads,
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "eps": cfg.get("rms_norm_eps", 1e-6),
        "theta": cfg.get("rope_theta", 10000.0),
        "tied": cfg.get("tie_word_embeddings", False),  # LlamaConfig's default
    }
    model = LlamaForCausalLM(c)
    model.load_state_dict(read_weights(folder), strict=True)  # names and shapes, exactly
    model.eval()
    return model


if __name__ == "__main__":
    main()
