#!/usr/bin/env python3
"""Compare the per-step losses of two training runs (e.g. torus and PyTorch).

Each input is a metrics.jsonl: one JSON object per line with at least "step"
and "loss" (other fields and lines without a loss are ignored, so torus's own
metrics files can be given as they are). Only the steps both runs logged are
compared. Prints, per step, both losses and their relative difference
|a - b| / max(|a|, |b|), then one verdict line:

    max relative difference X at step N over K steps (limit L): PASS|FAIL

Exits 0 on PASS, 1 on FAIL (also when no step is common: nothing agreed),
2 on unreadable input. Standard library only.
"""

import argparse
import json
import math
import sys


def read_losses(path):
    """step -> loss; a step logged twice keeps its last value (a resumed run rewrites it)."""
    losses = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not JSON: {e}") from None
            if not isinstance(rec, dict) or "step" not in rec or rec.get("loss") is None:
                continue
            losses[int(rec["step"])] = float(rec["loss"])
    return losses


def rel_diff(a, b):
    # Symmetric, so swapping the files never changes the verdict; NaN on either
    # side is an infinite difference, never a pass.
    if math.isnan(a) or math.isnan(b):
        return math.inf
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="first metrics.jsonl")
    p.add_argument("b", help="second metrics.jsonl")
    p.add_argument("--limit", type=float, default=1e-3, help="largest relative difference that passes")
    p.add_argument("--skip", type=int, default=0, help="ignore the first N common steps")
    a = p.parse_args()
    try:
        la, lb = read_losses(a.a), read_losses(a.b)
    except OSError as e:
        print(f"compare_losses: {e}", file=sys.stderr)
        sys.exit(2)
    common = sorted(set(la) & set(lb))[a.skip:]
    for name, mine, other in ((a.a, la, lb), (a.b, lb, la)):
        only = sorted(set(mine) - set(other))
        if only:
            print(f"note: {len(only)} steps only in {name} (first {only[0]}), not compared")
    print(f"{'step':>6} {'loss A':>14} {'loss B':>14} {'rel diff':>10}")
    worst, worst_step = -1.0, None
    for s in common:
        d = rel_diff(la[s], lb[s])
        print(f"{s:>6} {la[s]:>14.6f} {lb[s]:>14.6f} {d:>10.3e}")
        if d > worst:
            worst, worst_step = d, s
    if not common:
        print(f"max relative difference n/a at step n/a over 0 steps (limit {a.limit:g}): FAIL")
        sys.exit(1)
    ok = worst <= a.limit
    print(f"max relative difference {worst:.3e} at step {worst_step} over {len(common)} steps "
          f"(limit {a.limit:g}): {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
