#!/usr/bin/env bash
# make longctx: the long-context example pair, end to end.
#   1. train a base model at seq_len 1024 (examples/recipes/longctx-base.yaml);
#   2. extend it to 4096 with LoRA + YaRN RoPE scaling (x4) + trainable embed and
#      norms, passkey samples mixed into the data (examples/recipes/longctx-extend.yaml);
#   3. evaluate both: passkey retrieval at 1k, 4k and 8k (8k: never trained at) by
#      depth, and perplexity by position on the same held-out documents to 8k.
# Everything lands in $OUT (default runs/longctx): the two runs, eval-base/ and
# eval-extend/ (JSON reports and PNG heatmaps), and summary.txt with every table.
set -euo pipefail
cd "$(dirname "$0")/.."
T=./bin/torus
OUT=${OUT:-runs/longctx}
SAMPLES=${SAMPLES:-8} # passkey samples per (length, depth) cell
# STEPS_BASE / STEPS_EXTEND shorten the two trainings (a smoke run of the pipeline).
base_sets=() ext_sets=()
[ -n "${STEPS_BASE:-}" ] && base_sets=(--set schedule.steps="$STEPS_BASE" --set schedule.warmup_steps=1)
[ -n "${STEPS_EXTEND:-}" ] && ext_sets=(--set schedule.steps="$STEPS_EXTEND" --set schedule.warmup_steps=1)
rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[longctx $(($(date +%s) - start))s] $*" >&2; }

stamp "1/3 base model at seq_len 1024"
$T train examples/recipes/longctx-base.yaml --out "$OUT/base" --progress plain "${base_sets[@]}"
stamp "2/3 extension to 4096: LoRA + YaRN RoPE scaling (x4)"
$T train examples/recipes/longctx-extend.yaml --out "$OUT/extend" --set model.from="$OUT/base/final" --progress plain "${ext_sets[@]}"

stamp "3/3 evaluation"
summary="$OUT/summary.txt"
: >"$summary"
for m in base extend; do
	$T eval "$OUT/$m/final" --task passkey --lengths 1k,4k,8k --depths 0,0.25,0.5,0.75,1 \
		--samples "$SAMPLES" --out "$OUT/eval-$m" | tee -a "$summary"
	echo | tee -a "$summary"
	# The same held-out documents for both: the two recipes share their text
	# source and seed, and passkey samples are never held out.
	$T eval "$OUT/$m/final" --task ppl --recipe "$OUT/extend/recipe.yaml" --length 8k \
		--buckets 0,1k,2k,4k,8k --out "$OUT/eval-$m" | tee -a "$summary"
	echo | tee -a "$summary"
done
stamp "done in $(($(date +%s) - start))s; tables in $summary, heatmaps in $OUT/eval-*/"
