#!/usr/bin/env python3
"""Summarize a bench/gpu/run.sh run: OUT/summary.md and OUT/results.jsonl.

Reads run.sh's work folder: status.tsv (one line per command: name, status,
seconds, command) and each command's NAME.out (stdout). results.jsonl gets one
line per JSON object a command printed, {"check", "status", "wall_s",
"result"}, and one {"check", "status", "wall_s", "command"} line for a command
that printed none. Standard library only.
"""

import argparse
import datetime
import json
import os


def read_status(work):
    rows = []
    with open(os.path.join(work, "status.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            rows.append({"check": parts[0], "status": parts[1], "wall_s": int(parts[2] or 0),
                         "command": parts[3]})
    return rows


def json_lines(path):
    """Every JSON object printed one per line (other lines are ignored)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out


def text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def gib(n):
    return "-" if n is None else f"{n / 2 ** 30:.1f} GiB"


def params(n):
    if not n:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n:,}"


def num(x, fmt):
    """x formatted, "-" when missing; as it is when not a number (gpucheck
    prints a value JSON cannot hold, NaN or Inf, as a string)."""
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, fmt)
    return str(x)


def verdict(work, name, status):
    """compare_losses.py's last line, or why there is none."""
    st = status.get(name)
    if st is None:
        return "not run"
    lines = [l for l in text(os.path.join(work, name + ".out")).splitlines() if l.strip()]
    if lines and lines[-1].startswith("max relative difference"):
        return lines[-1]
    return f"FAIL ({st['status']})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="gpu")
    p.add_argument("--seq-lens", required=True)
    p.add_argument("--runs", required=True, help="the 1-worker device run, the CPU run, the 2-worker run")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--budget", type=int, default=0)
    p.add_argument("--elapsed", type=int, default=0)
    a = p.parse_args()
    rows = read_status(a.work)
    status = {r["check"]: r for r in rows}

    # results.jsonl
    outputs = {}
    with open(os.path.join(a.out, "results.jsonl"), "w") as f:
        for r in rows:
            objs = [] if r["check"].endswith("gpus-json") else json_lines(os.path.join(a.work, r["check"] + ".out"))
            outputs[r["check"]] = objs
            base = {"check": r["check"], "status": r["status"], "wall_s": r["wall_s"]}
            if not objs:
                f.write(json.dumps(dict(base, command=r["command"])) + "\n")
            for o in objs:
                f.write(json.dumps(dict(base, result=o)) + "\n")

    lens = [int(s) for s in a.seq_lens.split(",") if s]
    torus = {}
    for L in lens:
        objs = outputs.get(f"d-torus-{L}", [])
        if objs:
            torus[L] = objs[-1]
    torch = {o.get("seq_len"): o for o in outputs.get("d-pytorch", [])}
    r1, rcpu, r2 = a.runs.split(",")
    dev = r1.split("-")[0]
    manifest = text(os.path.join(os.getcwd(), ".gpu", "MANIFEST")).splitlines()

    md = []
    w = md.append
    title = "torus GPU checks" if a.mode == "gpu" else "torus GPU checks, run on the CPU (--cpu: a test of the scripts, tiny sizes)"
    w(f"# {title}\n")
    w(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {a.elapsed} s of a {a.budget} s budget."
      + (f" Build: {manifest[0]}." if manifest else ""))
    any_t = next(iter(torus.values()), None)
    if any_t:
        w(f"torus: {any_t.get('backend')}.")
    any_p = next(iter(torch.values()), None)
    if any_p:
        w(f"PyTorch {any_p.get('torch_version')} on {any_p.get('gpu', any_p.get('device'))}"
          + (f", CUDA {any_p['cuda_version']}" if any_p.get("cuda_version") else "") + ".")
    w("")

    # (d)
    w("## (d) Training step: torus against PyTorch\n")
    if any_t:
        m = any_t.get("model", {})
        w(f"Preset {any_t.get('preset')} (dim {m.get('dim')}, {m.get('layers')} layers, {m.get('heads')} heads, "
          f"{m.get('kv_heads')} kv heads, mlp {m.get('mlp')}, vocab {m.get('vocab')}; "
          f"{params(any_t.get('params'))} parameters), torus dtype {any_t.get('dtype')}"
          f"{' (bf16 compute, float32 weights and AdamW)' if any_t.get('dtype') == 'bfloat16' else ''}, "
          f"one sequence per step, recompute {any_t.get('recompute')}, attention blocks "
          f"{any_t.get('block_q')}x{any_t.get('block_k')}; median of {len(any_t.get('step_seconds_all', []))} "
          f"timed steps after {any_t.get('warmup')} untimed (compilation).")
    if any_p:
        w(f"PyTorch: {any_p.get('dtype')}, attention {any_p.get('attention_backend', any_p.get('sdpa_backend', '?'))}"
          f"{'/' + any_p['gqa'] if any_p.get('gqa') else ''}, AdamW {any_p.get('adamw')}, median of "
          f"{len(any_p.get('step_seconds_all') or [])} timed steps.")
    w("")
    w("| seq_len | torus step (s) | PyTorch step (s) | torus tokens/s | PyTorch tokens/s | torus/PyTorch tokens/s "
      "| torus MFU | PyTorch MFU | torus peak device memory | PyTorch peak memory |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for L in lens:
        t, q = torus.get(L), torch.get(L)
        if t is None:
            st = status.get(f"d-torus-{L}", {}).get("status", "not run")
            t = {}
            notes.append(f"torus at {L}: {st}")
        if q is None:
            notes.append(f"PyTorch at {L}: {status.get('d-pytorch', {}).get('status', 'not run')}")
            q = {}
        elif q.get("status") != "ok":
            notes.append(f"PyTorch at {L}: {q.get('status')}: {q.get('message', '')}")
        tt, qt = t.get("tokens_per_s"), q.get("tokens_per_s")
        ratio = tt / qt if tt and qt else None
        qmem = q.get("peak_memory_reserved_bytes")
        qmem_s = gib(qmem) if qmem is not None else "-"
        if q.get("peak_memory_bytes") is not None:
            qmem_s += f" ({gib(q['peak_memory_bytes'])} allocated)"
        w(f"| {L} | {num(t.get('step_seconds_median'), '.3f')} | {num(q.get('step_seconds'), '.3f')} "
          f"| {num(tt, ',.0f')} | {num(qt, ',.0f')} | {num(ratio, '.3f')} "
          f"| {num(t.get('mfu'), '.1%')} | {num(q.get('mfu'), '.1%')} "
          f"| {gib(t.get('device_memory_peak_bytes'))} | {qmem_s} |")
        if t and q and t.get("flops_per_step") and q.get("flops_per_step"):
            rel = abs(t["flops_per_step"] - q["flops_per_step"]) / q["flops_per_step"]
            if rel > 1e-9:
                notes.append(f"at {L} the two count different FLOPs per step: torus {t['flops_per_step']:.4g}, "
                             f"PyTorch {q['flops_per_step']:.4g}")
    w("")
    if any_t:
        pk = any_t.get("peak_flops")
        w(f"MFU: model FLOPs (model.StepFLOPs, the same formula in torch_llama.py) / step time / "
          f"{num(pk and pk / 1e12, '.4g')} TFLOP/s ({any_t.get('peak_from')}), for both. "
          "Peak device memory: torus, NVML's figure for its process (XLA's reserve and the CUDA context"
          + ("" if any_t.get("device_memory_own", True) else "; NVML did not list the process: the whole GPU's used memory")
          + "); PyTorch, the caching allocator's max_memory_reserved (max_memory_allocated beside it).")
    for t in torus.values():
        ls = t.get("losses") or []
        if ls:
            w(f"torus losses at {t['seq_len']}: {' '.join(f'{x:.4f}' for x in ls)}.")
    for n in notes:
        w(f"- {n}")
    w("")

    # (b), (c)
    w("## (b), (c) Per-step losses, the bundled example, float32\n")
    w(f"- (b) {r1} against {rcpu}, {a.steps} steps: {verdict(a.work, 'b-compare', status)}")
    w(f"- (c) {r2} against {r1}, {a.steps} steps: {verdict(a.work, 'c-compare', status)}")
    for r in (r1, rcpu, r2):
        st = status.get(r)
        if st and st["status"] != "ok":
            w(f"- run {r}: {st['status']} (logs.txt)")
    w("")

    # (e)
    w("## (e) gpucheck\n")
    gc = outputs.get("e-gpucheck", [])
    if not gc:
        w(f"- no output: {status.get('e-gpucheck', {}).get('status', 'not run')}")
    for o in gc:
        c = o.get("check")
        err = f" **error**: {o['error'][:300]}" if o.get("error") else ""
        if c == "backend":
            w(f"- {o.get('describe')}")
        elif c == "matmul":
            w(f"- matmul {o.get('dtype')} {o.get('n')}^3: {num(o.get('tflops'), '.4g')} TFLOP/s{err}")
        elif c == "fused_attention_agrees":
            w(f"- fused attention agrees with the decomposed one: {o.get('ok')} (max abs diff "
              f"{num(o.get('max_abs_diff_vs_f32_output_and_grads'), '.3g')}, lse {o.get('max_abs_lse_diff')}){err}")
        elif c == "attention":
            w(f"- attention {'fused' if o.get('fused') else 'decomposed'} at {o.get('seq_len')}: forward "
              f"{num(o.get('fwd_tflops'), '.4g')} TFLOP/s, forward+backward {num(o.get('fwd_bwd_tflops'), '.4g')} TFLOP/s{err}")
        else:
            w(f"- {json.dumps(o)}")
    if gc and status.get("e-gpucheck", {}).get("status") != "ok":
        w(f"- gpucheck: {status['e-gpucheck']['status']}")
    w("")

    # (a)
    w("## (a) GPUs (torus gpus)\n")
    w("```")
    w((text(os.path.join(a.work, "a-gpus.out")).strip() or status.get("a-gpus", {}).get("status", "not run")))
    w("```\n")

    w("## Every command\n")
    w("| check | status | seconds |")
    w("|---|---|---:|")
    for r in rows:
        w(f"| {r['check']} | {r['status']} | {r['wall_s']} |")
    w("\nCommands, their stderr and stdout: logs.txt. Every JSON line: results.jsonl.")
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
