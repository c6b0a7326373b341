#!/usr/bin/env bash
# The GPU checks (issue 16), run on the GPU machine from the repository root
# with .gpu/ (bench/gpu/build.sh) beside it:
#
#   bash bench/gpu/run.sh OUTDIR         # one CUDA GPU, about 3-5 minutes
#   bash bench/gpu/run.sh --cpu OUTDIR   # the same on the CPU, tiny sizes: a test of this script
#
#   (a) torus gpus, and --json
#   (b) the bundled example (examples/recipes/byte-lm-go.yaml), 50 steps, float32:
#       backend cuda against backend cpu, per-step losses within 1e-3 (relative)
#   (c) the same with 2 workers on cuda against 1 worker on cuda, within 1e-3
#       (b)'s cpu run, and (c)'s, run beside the 1-worker cuda run
#   (d) stepbench, preset llama1b (1.1B parameters), bfloat16, at 8192 and 32768
#       tokens (one process each), and PyTorch (torch_llama.py) on the same model
#   (e) gpucheck: bf16/float32 matmul rates, cuDNN fused attention
#
# Every command runs under timeout, within a budget for the whole script
# (GPU_BUDGET_S, default 335 s; compilation counts). OUTDIR gets at most 8 files:
#   summary.md       the (d) table, the (b) and (c) verdicts, the GPUs, every step's status
#   results.jsonl    every JSON line the commands printed, tagged with its check
#   logs.txt         every command's stderr and stdout, in order
#   gpus.json        torus gpus --json
#   metrics-*.jsonl  the (b) and (c) runs' metrics
# Knobs (environment): GPU_BUDGET_S; for stepbench, TORUS_DTYPE (--dtype, default
# bfloat16), TORUS_ATTENTION (--attention: auto, cuDNN's fused
# kernel in bf16 on cuda, or blockwise), TORUS_BLOCK (the blockwise kernel's block,
# default 4096); GPU_SEQ_LENS (default 8192,32768).
set -uo pipefail

usage() {
	echo "usage: bash bench/gpu/run.sh [--cpu] OUTDIR" >&2
	exit 2
}
CPU=0
OUTDIR=""
for arg in "$@"; do
	case "$arg" in
	--cpu) CPU=1 ;;
	-h | --help) usage ;;
	-*) usage ;;
	*) [[ -z "$OUTDIR" ]] || usage; OUTDIR="$arg" ;;
	esac
done
[[ -n "$OUTDIR" ]] || usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
mkdir -p "$OUTDIR" && OUTDIR="$(cd "$OUTDIR" && pwd)" || exit 1
START=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/torus-gpu.XXXXXX")" || exit 1
trap 'rm -rf "$WORK"' EXIT
LOG="$OUTDIR/logs.txt"
: >"$LOG"
: >"$WORK/status.tsv"

# --------------------------------------------------------------- settings
if ((CPU)); then
	MODE=cpu DEV=cpu BUDGET=${GPU_BUDGET_S:-900}
	TRAIN_STEPS=5 TRAIN_SETS=(--set schedule.warmup_steps=1)
	PRESET=tiny DTYPE=${TORUS_DTYPE:-bfloat16} BLOCK=${TORUS_BLOCK:-64}
	BENCH_ARGS=(--device-resident) # the step's GPU path, on the CPU backend
	SEQ_LENS=${GPU_SEQ_LENS:-128,256} BENCH_WARMUP=1 BENCH_STEPS=3
	TORCH_ARGS=(--device cpu --dim 64 --layers 2 --heads 4 --kv-heads 2 --mlp 128 --vocab 256
		--warmup 1 --steps 2 --matmul-size 512)
	GPUCHECK_ARGS=(--backend cpu --matmul-n 256 --attn-seq-lens 256 --heads 4 --kv-heads 2 --head-dim 16)
	CAP_TRAIN=400 CAP_BENCH=(150) CAP_TORCH=150 CAP_GPUCHECK=150
else
	MODE=gpu DEV=cuda BUDGET=${GPU_BUDGET_S:-335}
	TRAIN_STEPS=50 TRAIN_SETS=()
	PRESET=llama1b DTYPE=${TORUS_DTYPE:-bfloat16} BLOCK=${TORUS_BLOCK:-4096}
	BENCH_ARGS=()
	SEQ_LENS=${GPU_SEQ_LENS:-8192,32768} BENCH_WARMUP=1 BENCH_STEPS=3
	TORCH_ARGS=(--device cuda --warmup 2 --steps 5)
	GPUCHECK_ARGS=()
	CAP_TRAIN=120 CAP_BENCH=(100 130) CAP_TORCH=75 CAP_GPUCHECK=45
fi
DEADLINE=$((START + BUDGET))
# What each later check keeps of the budget while an earlier one runs.
MIN_BENCH=60 MIN_TORCH=45 MIN_GPUCHECK=30
ATTN=${TORUS_ATTENTION:-auto}
IFS=, read -r -a LENS <<<"$SEQ_LENS"

# Python: PyTorch's venv on the GPU machine, else a python3 that has torch; the
# comparator and the summary need only the standard library.
TORCH_PY=""
if [[ -x /opt/torch/.venv/bin/python ]]; then
	TORCH_PY=/opt/torch/.venv/bin/python
else
	for p in python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
			TORCH_PY="$p"
			break
		fi
	done
fi
PY=python3
command -v python3 >/dev/null 2>&1 || PY="${TORCH_PY:-python3}"

log() { printf '%s\n' "$*" >>"$LOG"; }
say() { printf 'run.sh [%3ds] %s\n' "$(($(date +%s) - START))" "$*" >&2; }

# tmo CAP RESERVE: the timeout of the next command: CAP seconds, less where the
# budget must keep RESERVE seconds for the commands after it; at least 10.
tmo() {
	local t=$((DEADLINE - $(date +%s) - $2))
	((t > $1)) && t=$1
	((t < 10)) && t=10
	echo "$t"
}

# step NAME TIMEOUT CMD...: runs CMD under timeout, stdout to $WORK/NAME.out,
# stderr to $WORK/NAME.err, and records NAME, its status and seconds.
step() {
	local name=$1 t=$2 t0 rc st
	shift 2
	t0=$(date +%s)
	timeout --kill-after=15 "$t" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
	rc=$?
	st=ok
	if ((rc == 124 || rc == 137)); then
		st="timeout ($t s)"
	elif ((rc != 0)); then
		st="exit $rc"
	fi
	printf '%s\t%s\t%s\t%s\n' "$name" "$st" "$(($(date +%s) - t0))" "$*" >>"$WORK/status.tsv"
	say "$name: $st, $(($(date +%s) - t0)) s"
	return "$rc"
}

# collect NAME: the step's record, stderr and stdout into logs.txt (each cut to
# its last 2 MiB: the file has to come back).
collect() {
	local name=$1
	log ""
	log "==== $name: $(awk -F'\t' -v n="$name" '$1 == n {print $2 ", " $3 " s: " $4}' "$WORK/status.tsv")"
	for s in err out; do
		if [[ -s "$WORK/$name.$s" ]]; then
			log "---- std$s"
			tail -c 2097152 "$WORK/$name.$s" >>"$LOG"
		fi
	done
}

# --------------------------------------------------------------- unpack
unxz() {
	if command -v xz >/dev/null 2>&1; then
		xz -dc -- "$1"
	else
		"$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
	fi
}
say "mode $MODE, budget $BUDGET s, work in $WORK"
log "run.sh $MODE $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -nrm), $(nproc) cores; budget $BUDGET s"
log "torch python: ${TORCH_PY:-none}"
if [[ ! -f .gpu/MANIFEST ]]; then
	echo "run.sh: no .gpu/ here: run bench/gpu/build.sh on the build machine and carry .gpu/" | tee -a "$LOG" >&2
	exit 1
fi
log "---- .gpu/MANIFEST"
cat .gpu/MANIFEST >>"$LOG"
BIN="$WORK/bin"
mkdir -p "$BIN" "$WORK/goroot"
for b in torus stepbench gpucheck; do
	if ! unxz ".gpu/$b.xz" >"$BIN/$b"; then
		echo "run.sh: cannot unpack .gpu/$b.xz" | tee -a "$LOG" >&2
		exit 1
	fi
	chmod +x "$BIN/$b"
done
if ! unxz .gpu/goroot-src.tar.xz | tar -x -C "$WORK/goroot"; then
	echo "run.sh: cannot unpack .gpu/goroot-src.tar.xz" | tee -a "$LOG" >&2
	exit 1
fi
export GOROOT="$WORK/goroot" # the bundled example reads $GOROOT/src
say "unpacked"

# --------------------------------------------------------------- (a) GPUs
step a-gpus 20 "$BIN/torus" gpus
step a-gpus-json 20 "$BIN/torus" gpus --json
cp "$WORK/a-gpus-json.out" "$OUTDIR/gpus.json"

# --------------------------------------------------------------- (b), (c)
# Three runs at once: 1 worker on DEV (the reference of both checks), 1 on the
# CPU, 2 workers on DEV.
R1="$DEV-1worker" RCPU="cpu-1worker" R2="$DEV-2workers"
[[ "$DEV" == cpu ]] && RCPU="cpu-ref-1worker" # --cpu: R1 is on the CPU too
train() { # NAME BACKEND WORKERS
	local name=$1
	step "$name" "$(tmo "$CAP_TRAIN" $((${#LENS[@]} * MIN_BENCH + MIN_TORCH + MIN_GPUCHECK)))" "$BIN/torus" train examples/recipes/byte-lm-go.yaml \
		--out "$WORK/$name" --progress plain \
		--set schedule.steps="$TRAIN_STEPS" ${TRAIN_SETS[@]+"${TRAIN_SETS[@]}"} --set model.dtype=float32 \
		--set backend="$2" --set parallel.workers="$3"
}
train "$R1" "$DEV" 1 &
train "$RCPU" cpu 1 &
train "$R2" "$DEV" 2 &
wait
compare() { # NAME A B
	local name=$1
	if [[ -s "$WORK/$2/metrics.jsonl" && -s "$WORK/$3/metrics.jsonl" ]]; then
		step "$name" 30 "$PY" bench/gpu/compare_losses.py --limit 1e-3 "$WORK/$2/metrics.jsonl" "$WORK/$3/metrics.jsonl"
	else
		printf '%s\t%s\t0\t%s\n' "$name" "not run: no metrics from $2 or $3" "compare_losses.py $2 $3" >>"$WORK/status.tsv"
	fi
}
compare b-compare "$R1" "$RCPU"
compare c-compare "$R2" "$R1"
for name in "$R1" "$RCPU" "$R2"; do
	[[ -f "$WORK/$name/metrics.jsonl" ]] && cp "$WORK/$name/metrics.jsonl" "$OUTDIR/metrics-$name.jsonl"
done

# --------------------------------------------------------------- (d)
# torus first, one process per length; PyTorch then gets torus's peak FLOP/s,
# so both MFUs have one denominator. stepbench times fewer steps (at least one)
# rather than run past its timeout: setup and the compiling warm-up step come first.
n=${#LENS[@]}
for i in "${!LENS[@]}"; do
	L=${LENS[$i]}
	cap=${CAP_BENCH[$i]:-${CAP_BENCH[-1]}}
	t=$(tmo "$cap" $(((n - 1 - i) * MIN_BENCH + MIN_TORCH + MIN_GPUCHECK)))
	step "d-torus-$L" "$t" "$BIN/stepbench" --backend "$DEV" --preset "$PRESET" \
		--dtype "$DTYPE" --seq-len "$L" --warmup "$BENCH_WARMUP" --steps "$BENCH_STEPS" --budget-s $((t > 20 ? t - 10 : t / 2)) \
		--block-q "$BLOCK" --block-k "$BLOCK" --attention "$ATTN" --recompute layer ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}
done
outs=()
for L in "${LENS[@]}"; do outs+=("$WORK/d-torus-$L.out"); done
peak=$("$PY" -c 'import json, sys
for path in sys.argv[1:]:
    try:
        p = json.loads(open(path).read().strip().splitlines()[-1]).get("peak_flops")
    except Exception:
        continue
    if p:
        print(p / 1e12)
        break' "${outs[@]}" 2>/dev/null)
[[ -n "$peak" ]] && TORCH_ARGS+=(--peak-tflops "$peak")
if [[ -n "$TORCH_PY" ]]; then
	step d-pytorch "$(tmo "$CAP_TORCH" "$MIN_GPUCHECK")" "$TORCH_PY" bench/gpu/torch_llama.py "${TORCH_ARGS[@]}" --seq-lens "$SEQ_LENS"
else
	printf '%s\t%s\t0\t%s\n' d-pytorch "not run: no python with torch" "torch_llama.py" >>"$WORK/status.tsv"
fi

# --------------------------------------------------------------- (e)
step e-gpucheck "$(tmo "$CAP_GPUCHECK" 0)" "$BIN/gpucheck" ${GPUCHECK_ARGS[@]+"${GPUCHECK_ARGS[@]}"}

# --------------------------------------------------------------- out
while IFS=$'\t' read -r name _; do
	collect "$name"
done <"$WORK/status.tsv"
for name in "$R1" "$RCPU" "$R2"; do
	log ""
	log "==== $name: run directory"
	ls -l "$WORK/$name" >>"$LOG" 2>&1
done
"$PY" bench/gpu/summarize.py --mode "$MODE" --work "$WORK" --out "$OUTDIR" --seq-lens "$SEQ_LENS" \
	--runs "$R1,$RCPU,$R2" --steps "$TRAIN_STEPS" \
	--budget "$BUDGET" --elapsed "$(($(date +%s) - START))" >>"$LOG" 2>&1 || {
	rc=$?
	log "summarize.py failed: exit $rc"
	{
		echo "# torus GPU checks: summarize.py failed (exit $rc; its error is at the end of logs.txt)"
		echo
		echo '| check | status | seconds | command |'
		echo '|---|---|---:|---|'
		awk -F'\t' '{print "| " $1 " | " $2 " | " $3 " | `" $4 "` |"}' "$WORK/status.tsv"
		for c in b-compare c-compare; do
			[[ -s "$WORK/$c.out" ]] && echo "- $c: $(tail -n 1 "$WORK/$c.out")"
		done
	} >"$OUTDIR/summary.md"
}
say "done: $OUTDIR/summary.md"
cat "$OUTDIR/summary.md" 2>/dev/null
