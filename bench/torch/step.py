#!/usr/bin/python3
"""PyTorch reference for torus's side-by-side CPU benchmark.

One training step of a LLaMA-style decoder (the same reference model torus
trains), plain PyTorch, CPU, float32. Prints exactly one JSON line on stdout;
diagnostics go to stderr.

Model: token embedding -> N x [RMSNorm -> GQA causal attention with rotary
embeddings (Hugging Face rotate-half convention) -> residual, RMSNorm ->
SwiGLU MLP -> residual] -> final RMSNorm -> untied lm_head. No biases.

Step: forward on batch 1 of seq_len random tokens, cross-entropy over all
positions, backward, AdamW(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
step, zero_grad. All activations are kept for backward (PyTorch's default,
no checkpointing).

Attention uses torch.nn.functional.scaled_dot_product_attention when this
torch has it (2.0+); otherwise (Debian's 1.13) the fastest exact plain path:
one fused baddbmm (scaled QK^T plus an additive causal mask), softmax, bmm.
The "attention" field of the output says which ran.

Run it with /usr/bin/python3 (Debian's python3-torch); see run.sh for the
environment that gives it its best speed.
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_tables(seq_len, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    t = torch.arange(seq_len, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [L, head_dim]
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads, head_dim):
        super().__init__()
        assert heads % kv_heads == 0
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, l, _ = x.shape
        h, kvh, hd = self.heads, self.kv_heads, self.head_dim
        q = self.q_proj(x).view(b, l, h, hd).transpose(1, 2)  # [b,h,l,hd]
        k = self.k_proj(x).view(b, l, kvh, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, l, kvh, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = h // kvh
        if rep > 1:  # GQA: query head i uses kv head i // rep (HF repeat_kv)
            k = k[:, :, None].expand(b, kvh, rep, l, hd).reshape(b, h, l, hd)
            v = v[:, :, None].expand(b, kvh, rep, l, hd).reshape(b, h, l, hd)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            qf = q.reshape(b * h, l, hd)
            kt = k.reshape(b * h, l, hd).transpose(1, 2)
            vf = v.reshape(b * h, l, hd)
            # scores = mask + scale * q @ k^T in one kernel; mask is [l, l],
            # 0 on/below the diagonal and -inf above, broadcast over heads.
            s = torch.baddbmm(mask, qf, kt, beta=1.0, alpha=1.0 / math.sqrt(hd))
            p = torch.softmax(s, dim=-1)
            o = torch.bmm(p, vf).view(b, h, l, hd)
        o = o.transpose(1, 2).reshape(b, l, h * hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.up_proj = nn.Linear(dim, inner, bias=False)
        self.down_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads, head_dim, mlp, eps):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = Attention(dim, heads, kv_heads, head_dim)
        self.mlp_norm = RMSNorm(dim, eps)
        self.mlp = MLP(dim, mlp)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    def __init__(self, vocab, dim, layers, heads, kv_heads, mlp, eps=1e-5, theta=10000.0):
        super().__init__()
        assert dim % heads == 0
        self.head_dim = dim // heads
        self.theta = theta
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, kv_heads, self.head_dim, mlp, eps) for _ in range(layers)])
        self.norm = RMSNorm(dim, eps)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self._tables = None

    def tables(self, l):
        if self._tables is None or self._tables[0] != l:
            cos, sin = rope_tables(l, self.head_dim, self.theta)
            mask = None
            if not HAS_SDPA:
                mask = torch.full((l, l), float("-inf")).triu_(1)
            self._tables = (l, cos, sin, mask)
        return self._tables[1:]

    def forward(self, tokens):
        cos, sin, mask = self.tables(tokens.shape[1])
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


def step_flops(a, seq_len):
    """Rough FLOPs of one training step: 6 * matmul params * tokens, plus
    attention scores/values: forward 4*L^2*heads*head_dim per layer (the
    naive path computes the full square, masked half included), backward 2x."""
    hd = a.dim // a.heads
    per_layer = (a.dim * a.heads * hd + 2 * a.dim * a.kv_heads * hd + a.heads * hd * a.dim
                 + 3 * a.dim * a.mlp)
    mm_params = a.layers * per_layer + a.vocab * a.dim  # lm_head; embedding is a lookup
    dense = 6 * mm_params * seq_len
    attn = 12 * seq_len * seq_len * a.heads * hd * a.layers
    return dense, attn


def rusage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_maxrss * 1024, r.ru_minflt, r.ru_majflt


def is_oom(e):
    m = str(e).lower()
    return isinstance(e, MemoryError) or any(
        s in m for s in ("out of memory", "can't allocate", "cannot allocate",
                         "not enough memory", "bad_alloc", "bad alloc"))


def mode_step(a):
    out = {"impl": "pytorch", "torch_version": torch.__version__,
           "attention": "sdpa" if HAS_SDPA else "matmul", "seq_len": a.seq_len,
           "threads": torch.get_num_threads(),
           "model": {"vocab": a.vocab, "dim": a.dim, "layers": a.layers, "heads": a.heads,
                     "kv_heads": a.kv_heads, "mlp": a.mlp}}
    times, cpu_util = [], []
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    status, msg = "ok", None
    try:
        torch.manual_seed(0)
        model = Decoder(a.vocab, a.dim, a.layers, a.heads, a.kv_heads, a.mlp)
        out["params"] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95),
                                weight_decay=0.1)
        g = torch.Generator().manual_seed(1)
        data = torch.randint(0, a.vocab, (1, a.seq_len + 1), generator=g)
        inp, tgt = data[:, :-1], data[:, 1:]

        def one_step():
            logits = model(inp)
            loss = F.cross_entropy(logits.reshape(-1, a.vocab), tgt.reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss.item()

        for i in range(a.warmup + a.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = one_step()
            dt = time.perf_counter() - t0
            util = (time.process_time() - c0) / dt
            warm = i < a.warmup
            log(f"step {i} ({'warmup' if warm else 'timed'}): {dt:.3f}s "
                f"cpu {util:.2f} cores loss {loss:.4f}")
            if not warm:
                times.append(dt)
                cpu_util.append(round(util, 2))
            out["loss"] = loss
            if dt > a.timeout_s:
                status = "timeout"
                msg = (f"{'warm-up' if warm else 'timed'} step {i} took {dt:.1f}s "
                       f"> timeout {a.timeout_s}s")
                break
    except (MemoryError, RuntimeError) as e:
        status = "oom" if is_oom(e) else "error"
        msg = f"{type(e).__name__}: {e}"[:500]
        log(msg)
    rss, minflt, majflt = rusage()
    dense, attn = step_flops(a, a.seq_len)
    out.update({"flops_per_step_est": dense + attn, "attn_flops_share": round(attn / (dense + attn), 3)})
    if times:
        med = statistics.median(times)
        out.update({"step_seconds_median": med, "step_seconds_min": min(times),
                    "step_seconds_all": times,
                    "tokens_per_s": a.seq_len / med, "gflops_est": (dense + attn) / med / 1e9})
    else:
        out.update({"step_seconds_median": None, "step_seconds_all": times,
                    "tokens_per_s": None})
    out.update({"peak_rss_bytes": rss, "minor_faults": minflt, "major_faults": majflt,
                "wall_seconds": time.perf_counter() - t_start,
                # CPU time / wall time per timed step: ~threads when the process had
                # the cores to itself; lower means other load on the machine.
                "cpu_cores_used": cpu_util,
                "loadavg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
                "status": status})
    if msg:
        out["message"] = msg
    print(json.dumps(out), flush=True)


def mode_matmul_peak(a):
    res = {}
    for n in (1024, 2048, 4096):
        x = torch.randn(n, n)
        y = torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(x, y, out=c)  # warm up
        reps = max(1, int(8 * (2048 / n) ** 3))
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(x, y, out=c)
            best = min(best, (time.perf_counter() - t0) / reps)
        res[str(n)] = 2 * n ** 3 / best / 1e9
        log(f"matmul {n}: {res[str(n)]:.1f} GFLOP/s")
    print(json.dumps({"impl": "pytorch", "torch_version": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "matmul_gflops": res["2048"],
                      "matmul_gflops_by_size": res}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("step", "matmul-peak"), default="step")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout-s", type=float, default=600.0,
                   help="stop (status timeout) once any step, warm-up included, takes longer")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=688)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"attention {'sdpa' if HAS_SDPA else 'matmul'}, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")
    if a.mode == "matmul-peak":
        mode_matmul_peak(a)
    else:
        mode_step(a)


if __name__ == "__main__":
    main()
