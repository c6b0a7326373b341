#!/usr/bin/env python3
"""PyTorch peer for torus's GPU training benchmark.

Trains a LLaMA-style decoder the way torus does and prints one JSON line per
sequence length on stdout (progress goes to stderr), so the two can be set
side by side on the same GPU.

Model (Hugging Face Llama layout and math): token embedding -> N x [RMSNorm ->
GQA causal attention (q/k/v/o projections, rotate-half RoPE) -> residual,
RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> untied lm_head. No
biases. Initialised as torus initialises (model.Init): norms at 1, matrices
normal(0, 0.02), o_proj and down_proj scaled by 1/sqrt(2*layers).

Step (CUDA): batch 1 of seq_len seeded random tokens, targets the tokens
shifted by one; float32 master weights under bf16 autocast; attention by
scaled_dot_product_attention(is_causal=True) with the flash backend forced
(falling back, and saying so, when flash refuses); cross-entropy on float32
logits; clipping by global norm 1.0; AdamW (fused when this torch has it, the
peer's best setting), with no weight decay on norms and the embedding (torus's
defaults, decay_norms and decay_embeddings false).

On a CPU (--device cpu, a smoke test of the script itself) the step runs in
float32 with the math attention backend, or with attention written out by hand
when this torch predates scaled_dot_product_attention (Debian's 1.13).

Only torch and the standard library: the GPU machine has no network.

    /opt/torch/.venv/bin/python bench/gpu/torch_llama.py                # H200, 8k and 32k
    /opt/torch/.venv/bin/python bench/gpu/torch_llama.py --sdpa cudnn   # Hopper's other kernel
    /usr/bin/python3 bench/gpu/torch_llama.py --device cpu --dim 64 --layers 2 --heads 4 \
        --kv-heads 2 --mlp 128 --vocab 256 --seq-lens 128 --warmup 1 --steps 2   # smoke test
"""

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
try:  # torch >= 2.3: the supported way to force one SDPA backend
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:
    SDPBackend = sdpa_kernel = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- attention


class AttentionImpl:
    """How attention runs: which SDPA backend, and how kv heads meet query heads.

    The backend has to be forced around the backward too, not only the
    forward: with --checkpoint-layers the forward is recomputed inside
    backward(), and it must take the same kernel it took the first time.
    """

    def __init__(self, backend, gqa):
        self.backend = backend  # "flash", "cudnn", "efficient", "math" or "manual"
        self.gqa = gqa          # "enable_gqa" (kernel reads shared kv heads) or "repeat_kv"

    def context(self):
        if self.backend == "manual":
            return contextlib.nullcontext()
        if sdpa_kernel is not None:
            return sdpa_kernel(_SDP_BACKENDS[self.backend])
        # torch 2.0-2.2: only the older flag-style context exists (no cuDNN).
        b = self.backend
        return torch.backends.cuda.sdp_kernel(
            enable_flash=b == "flash", enable_mem_efficient=b == "efficient",
            enable_math=b == "math")

    def __call__(self, q, k, v):
        """q [b,h,l,hd], k and v [b,kv,l,hd] -> [b,h,l,hd], causal."""
        if self.gqa == "repeat_kv":
            k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])
        if self.backend == "manual":
            return manual_attention(q, k, v)
        if self.gqa == "enable_gqa":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def describe(self):
        return {"sdpa_backend": self.backend, "gqa": self.gqa}


_SDP_BACKENDS = {}
if SDPBackend is not None:
    _SDP_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION,
                     "efficient": SDPBackend.EFFICIENT_ATTENTION,
                     "math": SDPBackend.MATH}
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        _SDP_BACKENDS["cudnn"] = SDPBackend.CUDNN_ATTENTION


def repeat_kv(x, heads):
    """HF repeat_kv: query head i reads kv head i // (heads / kv_heads)."""
    b, kv, l, hd = x.shape
    rep = heads // kv
    if rep == 1:
        return x
    return x[:, :, None].expand(b, kv, rep, l, hd).reshape(b, heads, l, hd)


def manual_attention(q, k, v):
    """Exact causal attention without SDPA, for torches older than 2.0 (CPU smoke only)."""
    l, hd = q.shape[-2], q.shape[-1]
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)
    mask = torch.ones(l, l, dtype=torch.bool, device=q.device).triu_(1)
    s = s.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(s.float(), dim=-1).to(v.dtype), v)


def choose_attention(a, dev, dtype, seq_len):
    """The first attention that runs forward and backward at this shape.

    Tried on the real shape because a backend's eligibility depends on head
    dim, dtype, length and GPU; a refusal (no kernel, or out of memory for the
    math backend at long lengths) moves on to the next. Native GQA is tried
    before repeat_kv because it skips materialising the repeated k and v.
    """
    if not HAS_SDPA:
        return AttentionImpl("manual", "repeat_kv"), []
    if dev.type != "cuda":
        order = ["math"]
    else:
        order = [a.sdpa] + [b for b in ("flash", "cudnn", "efficient", "math") if b != a.sdpa]
    if sdpa_kernel is not None:
        order = [b for b in order if b in _SDP_BACKENDS]
    else:
        order = [b for b in order if b != "cudnn"]
    hd = a.dim // a.heads
    refused = []
    for backend in order:
        for gqa in ("enable_gqa", "repeat_kv"):
            impl = AttentionImpl(backend, gqa)
            try:
                q = torch.randn(1, a.heads, seq_len, hd, device=dev, dtype=dtype, requires_grad=True)
                k = torch.randn(1, a.kv_heads, seq_len, hd, device=dev, dtype=dtype, requires_grad=True)
                v = torch.randn(1, a.kv_heads, seq_len, hd, device=dev, dtype=dtype, requires_grad=True)
                with impl.context():
                    impl(q, k, v).sum().backward()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                return impl, refused
            except (RuntimeError, TypeError) as e:  # TypeError: no enable_gqa before 2.5
                refused.append(f"{backend}/{gqa}: {str(e).splitlines()[0][:200]}")
            finally:
                q = k = v = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
    raise RuntimeError("no attention backend runs: " + "; ".join(refused))


# -------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: statistics in float32 whatever the input dtype."""

    def __init__(self, dim, eps, device):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_tables(seq_len, head_dim, theta, device):
    """HF's default rotary tables, in float32 (cast to the activations' dtype at use)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
                                / head_dim))
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    emb = torch.cat((torch.outer(t, inv_freq),) * 2, dim=-1)  # [L, head_dim]
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads, head_dim, device):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False, device=device)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False, device=device)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False, device=device)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False, device=device)
        self.impl = None  # set per sequence length by choose_attention

    def forward(self, x, cos, sin):
        b, l, _ = x.shape
        h, kv, hd = self.heads, self.kv_heads, self.head_dim
        q = self.q_proj(x).view(b, l, h, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, l, kv, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, l, kv, hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # as HF: rotate in the activations' dtype
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = self.impl(q, k, v)
        return self.o_proj(o.transpose(1, 2).reshape(b, l, h * hd))


class MLP(nn.Module):
    def __init__(self, dim, inner, device):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=False, device=device)
        self.up_proj = nn.Linear(dim, inner, bias=False, device=device)
        self.down_proj = nn.Linear(inner, dim, bias=False, device=device)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a, device):
        super().__init__()
        hd = a.dim // a.heads
        self.input_layernorm = RMSNorm(a.dim, a.eps, device)
        self.self_attn = Attention(a.dim, a.heads, a.kv_heads, hd, device)
        self.post_attention_layernorm = RMSNorm(a.dim, a.eps, device)
        self.mlp = MLP(a.dim, a.mlp, device)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, a, device):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab, a.dim, device=device)
        self.layers = nn.ModuleList([Block(a, device) for _ in range(a.layers)])
        self.norm = RMSNorm(a.dim, a.eps, device)
        self.lm_head = nn.Linear(a.dim, a.vocab, bias=False, device=device)
        self.checkpoint = a.checkpoint_layers
        self._rope = None

    def init_like_torus(self, std=0.02):
        """torus's model.Init (its RNG differs, so the weights do too, not their law)."""
        scaled = std / math.sqrt(2 * self.a.layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if isinstance(self.get_submodule(name.rsplit(".", 1)[0]), RMSNorm):
                    p.fill_(1.0)
                elif name.endswith(("o_proj.weight", "down_proj.weight")):
                    p.normal_(0.0, scaled)
                else:
                    p.normal_(0.0, std)

    def set_attention(self, impl):
        for blk in self.layers:
            blk.self_attn.impl = impl

    def forward(self, tokens):
        l = tokens.shape[1]
        if self._rope is None or self._rope[0] != l:
            self._rope = (l,) + rope_tables(l, self.a.dim // self.a.heads, self.a.theta,
                                            tokens.device)
        _, cos, sin = self._rope
        x = self.embed_tokens(tokens)
        for blk in self.layers:
            if self.checkpoint:
                # Non-reentrant: works with autocast and with inputs that need no grad.
                x = torch.utils.checkpoint.checkpoint(blk, x, cos, sin, use_reentrant=False)
            else:
                x = blk(x, cos, sin)
        return self.lm_head(self.norm(x))


# ---------------------------------------------------------------- measuring


def step_flops(a, seq_len):
    """torus's StepFLOPs (bench/stepbench/flops.go), so MFU means the same on both sides:
    projections and MLP plus causal attention at its half, times 3 for forward and
    backward, recompute not counted."""
    d, hd, f = a.dim, a.dim // a.heads, a.mlp
    h, kv = a.heads, a.kv_heads
    per_token_layer = 2 * (d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f)
    attn = 2 * 2 * h * hd * seq_len / 2
    per_token = a.layers * (per_token_layer + attn) + 2 * d * a.vocab
    return 3 * per_token * seq_len


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak_tflops(dev, n):
    """Best rate of an n x n x n matmul in the step's matmul dtype: the ceiling this
    GPU really reaches, beside the datasheet's, for a second MFU."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    x = torch.randn(n, n, device=dev, dtype=dtype)
    y = torch.randn(n, n, device=dev, dtype=dtype)
    out = torch.empty(n, n, device=dev, dtype=dtype)
    for _ in range(3):  # clocks up, cuBLAS heuristics picked
        torch.mm(x, y, out=out)
    sync(dev)
    reps = 20 if dev.type == "cuda" else 3
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(x, y, out=out)
        sync(dev)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * n ** 3 / best / 1e12


def make_optimizer(model, a, dev):
    """AdamW as torus sets it up: decay on matrices only, norms and embedding excluded."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_norm = p.ndim == 1
        (no_decay if is_norm or name.startswith("embed_tokens") else decay).append(p)
    groups = [{"params": decay, "weight_decay": a.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    # fused (one kernel for the whole update) is the fastest CUDA AdamW; foreach
    # (a few kernels per tensor list) is next, and the only fast one older torches have.
    tries = [("fused", {"fused": True}), ("foreach", {"foreach": True}), ("for-loop", {})]
    if dev.type != "cuda":
        tries = tries[1:]
    for impl, extra in tries:
        try:
            return torch.optim.AdamW(groups, **kw, **extra), impl
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("AdamW: no implementation accepted")


def tokens_for(step, seq_len, a, dev):
    """Seeded tokens on the CPU (the same on every device), seq_len+1 so targets shift."""
    g = torch.Generator().manual_seed(a.seed * 1_000_003 + (0 if a.fixed_batch else step))
    t = torch.randint(0, a.vocab, (1, seq_len + 1), generator=g).to(dev)
    return t[:, :-1], t[:, 1:]


def is_oom(e):
    m = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in m or "can't allocate" in m


def run_config(a, dev, seq_len, env):
    out = dict(env)
    out.update({"seq_len": seq_len, "batch": 1, "checkpoint_layers": a.checkpoint_layers,
                "compile": a.compile, "fixed_batch": a.fixed_batch,
                "lr": a.lr, "weight_decay": a.weight_decay, "grad_clip": 1.0})
    flops = step_flops(a, seq_len)
    out["flops_per_step"] = flops
    losses, norms, times = [], [], []
    status, msg = "ok", None
    model = opt = None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)

    def autocast():
        if dev.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()  # CPU smoke test: plain float32
    try:
        # A fresh model per length, same seed: every configuration starts from the
        # same weights, and its peak memory is its own.
        torch.manual_seed(a.seed)
        model = Llama(a, dev)
        model.init_like_torus()
        out["params"] = sum(p.numel() for p in model.parameters())
        opt, out["adamw"] = make_optimizer(model, a, dev)
        impl, refused = choose_attention(
            a, dev, torch.bfloat16 if dev.type == "cuda" else torch.float32, seq_len)
        out.update(impl.describe())
        if refused:
            out["sdpa_refused"] = refused
            log(f"seq {seq_len}: attention fell back to {impl.backend}/{impl.gqa}: {refused}")
        model.set_attention(impl)
        fwd = torch.compile(model) if a.compile else model
        params = [p for p in model.parameters()]

        def one_step(inp, tgt):
            with impl.context():
                with autocast():
                    logits = fwd(inp)
                # float32 cross-entropy, mean over all target tokens (torus's loss).
                loss = F.cross_entropy(logits.float().view(-1, a.vocab), tgt.reshape(-1))
                loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach(), norm.detach()

        for i in range(a.warmup + a.steps):
            inp, tgt = tokens_for(i, seq_len, a, dev)
            sync(dev)
            t0 = time.perf_counter()
            loss, norm = one_step(inp, tgt)
            sync(dev)
            dt = time.perf_counter() - t0
            # .item() only after the clock stopped: no extra sync inside the timed step.
            losses.append(loss.item())
            norms.append(norm.item())
            warm = i < a.warmup
            if not warm:
                times.append(dt)
            log(f"seq {seq_len} step {i + 1} ({'warmup' if warm else 'timed'}): {dt:.4f}s "
                f"loss {losses[-1]:.4f} grad_norm {norms[-1]:.3f}")
    except (RuntimeError, MemoryError) as e:
        status = "oom" if is_oom(e) else "error"
        msg = f"{type(e).__name__}: {e}"[:800]
        log(f"seq {seq_len}: {msg}")
    if times:
        med = statistics.median(times)
        achieved = flops / med
        out.update({"step_seconds": med, "step_seconds_min": min(times),
                    "step_seconds_all": times, "tokens_per_s": seq_len / med,
                    "tflops": achieved / 1e12,
                    "mfu": achieved / (a.peak_tflops * 1e12)})
        if env.get("matmul_tflops"):
            out["mfu_vs_matmul"] = achieved / (env["matmul_tflops"] * 1e12)
    else:
        out.update({"step_seconds": None, "tokens_per_s": None, "mfu": None})
    out.update({"losses": losses, "grad_norms": norms, "status": status})
    if dev.type == "cuda":
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(dev)
        out["peak_memory_gib"] = out["peak_memory_bytes"] / 2 ** 30
        # What the caching allocator held at most: the figure closest to what
        # NVML reports for a process (torus's device_memory_peak_bytes), less
        # the CUDA context's few hundred MiB.
        out["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved(dev)
    if msg:
        out["message"] = msg
    if a.metrics_dir and losses:
        os.makedirs(a.metrics_dir, exist_ok=True)
        path = os.path.join(a.metrics_dir, f"metrics-seq{seq_len}.jsonl")
        with open(path, "w") as f:
            for i, l in enumerate(losses):  # 1-based, as torus's metrics.jsonl
                f.write(json.dumps({"step": i + 1, "loss": l, "grad_norm": norms[i]}) + "\n")
    print(json.dumps(out), flush=True)
    # Drop this configuration's state before the next one allocates its own.
    model = opt = None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return status


def environment(a, dev):
    env = {"impl": "pytorch", "device": dev.type, "torch_version": torch.__version__,
           "python": platform.python_version(),
           "dtype": "bf16-autocast/fp32-master" if dev.type == "cuda" else "float32",
           "model": {"dim": a.dim, "layers": a.layers, "heads": a.heads,
                     "kv_heads": a.kv_heads, "mlp": a.mlp, "vocab": a.vocab,
                     "eps": a.eps, "rope_theta": a.theta},
           "peak_tflops": a.peak_tflops}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        env.update({"cuda_version": torch.version.cuda,
                    "cudnn_version": torch.backends.cudnn.version(),
                    "gpu": p.name, "gpu_memory_bytes": p.total_memory,
                    "compute_capability": f"{p.major}.{p.minor}"})
        try:  # the driver's version, without nvidia-ml-py
            with open("/proc/driver/nvidia/version") as f:
                env["driver"] = f.readline().strip()
        except OSError:
            pass
    else:
        env["threads"] = torch.get_num_threads()
    if a.matmul_size != 0:
        n = a.matmul_size if a.matmul_size > 0 else (8192 if dev.type == "cuda" else 512)
        env["matmul_size"] = n
        env["matmul_tflops"] = matmul_peak_tflops(dev, n)
        log(f"matmul {n}^3 {'bf16' if dev.type == 'cuda' else 'fp32'}: "
            f"{env['matmul_tflops']:.1f} TFLOP/s")
    return env


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--mlp", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--eps", type=float, default=1e-5, help="RMSNorm epsilon")
    p.add_argument("--theta", type=float, default=10000.0, help="RoPE theta")
    p.add_argument("--seq-lens", default="8192,32768", help="comma-separated; one JSON line each")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixed-batch", action="store_true",
                   help="the same tokens every step (loss must fall: a check that it trains)")
    p.add_argument("--sdpa", default="flash", choices=("flash", "cudnn", "efficient", "math"),
                   help="SDPA backend to force first; the others are fallbacks (CUDA only). "
                        "flash is the brief's; cudnn ran 32k steps ~20%% faster on an H200")
    p.add_argument("--checkpoint-layers", action="store_true",
                   help="recompute each layer in backward (torch.utils.checkpoint)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="datasheet peak for MFU (H100/H200 SXM bf16 dense: 989)")
    p.add_argument("--matmul-size", type=int, default=-1,
                   help="size of the matmul timed for a measured peak; -1 auto "
                        "(8192 on CUDA, 512 on CPU), 0 skips it")
    p.add_argument("--metrics-dir", default="",
                   help="also write metrics-seq<L>.jsonl (step, loss) here, for compare_losses.py")
    a = p.parse_args()
    if a.dim % a.heads or a.heads % a.kv_heads or (a.dim // a.heads) % 2:
        p.error("need dim % heads == 0, heads % kv_heads == 0 and an even head dim")
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available to this torch; use --device cpu for a smoke test")
    if dev.type == "cuda":
        if dev.index is None:  # "cuda" alone: pin the current device, for set_device and stats
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    env = environment(a, dev)
    log(f"torch {torch.__version__} on {env.get('gpu', dev.type)}, sdpa "
        f"{'yes' if HAS_SDPA else 'no (manual attention)'}")
    failed = 0
    for s in a.seq_lens.split(","):
        failed += run_config(a, dev, int(s), env) != "ok"
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
