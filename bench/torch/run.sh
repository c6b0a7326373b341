#!/bin/bash
# Usage: bench/torch/run.sh [step.py options] SEQ_LEN...
#   e.g. bench/torch/run.sh 1024 4096
#        bench/torch/run.sh --steps 3 --timeout-s 300 16384
# Prints one JSON line per length on stdout (step.py's diagnostics go to stderr).
#
# Gives the PyTorch peer its best settings, in this command only (see
# shared/GOMLX-NOTES.md "The machine itself"):
#   GLIBC_TUNABLES=glibc.malloc.hugetlb=1   malloc backs big buffers with huge pages
#                                           (2-6x faster on this VM, where faulting
#                                           4 KiB pages costs ~25 us each)
#   OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE    unset, so OpenBLAS picks its AVX-512
#                                           kernels (the machine sets both)
#   TORCH_BENCH_KEEP_OPENBLAS_ENV=1 keeps the two OPENBLAS_* variables (for comparison).
#
# Memory cap: address space (prlimit --as) of TORCH_BENCH_MEM_GIB, default 20 GiB,
# below the machine's 24 GiB and with no swap, so an oversized run fails inside
# torch with an allocation error (reported as status "oom") instead of swapping or
# waking the kernel OOM killer. A run killed anyway (signal) still gets a JSON line.
# Wall limit per length: TORCH_BENCH_WALL_S, default (warmup+steps+1)*timeout+60 s.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
PY=/usr/bin/python3
mem_gib="${TORCH_BENCH_MEM_GIB:-20}"

opts=() lens=()
while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) opts+=("$1"); shift ;;
    --*) opts+=("$1" "${2-}"); shift 2 ;;
    *) lens+=("$1"); shift ;;
  esac
done
[ ${#lens[@]} -gt 0 ] || { echo "usage: $0 [step.py options] SEQ_LEN..." >&2; exit 2; }

# Wall limit from the options' warmup/steps/timeout (defaults 1/5/600).
warmup=1 steps=5 tmo=600
for ((i = 0; i < ${#opts[@]}; i++)); do
  case "${opts[i]}" in
    --warmup) warmup="${opts[i+1]}" ;; --warmup=*) warmup="${opts[i]#*=}" ;;
    --steps) steps="${opts[i+1]}" ;; --steps=*) steps="${opts[i]#*=}" ;;
    --timeout-s) tmo="${opts[i+1]}" ;; --timeout-s=*) tmo="${opts[i]#*=}" ;;
  esac
done
wall="${TORCH_BENCH_WALL_S:-$(awk -v w="$warmup" -v s="$steps" -v t="$tmo" 'BEGIN{printf "%d", (w+s+1)*t+60}')}"

unset_env=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
[ "${TORCH_BENCH_KEEP_OPENBLAS_ENV:-0}" = 1 ] && unset_env=()

rc_all=0
for L in "${lens[@]}"; do
  out="$(mktemp)"
  env "${unset_env[@]}" GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    prlimit --as=$((mem_gib * 1024 * 1024 * 1024)) \
    timeout --kill-after=30 "$wall" \
    "$PY" "$here/step.py" "${opts[@]}" --seq-len "$L" >"$out"
  rc=$?
  line="$(grep -m1 '^{' "$out")"
  rm -f "$out"
  if [ $rc -eq 0 ] && [ -n "$line" ]; then
    echo "$line"
    continue
  fi
  rc_all=1
  case $rc in
    124) st=timeout msg="wall limit ${wall}s reached (timeout(1))" ;;
    137) st=oom msg="killed by SIGKILL (exit 137): OOM killer or timeout --kill-after" ;;
    *) if [ $rc -gt 128 ]; then st=killed msg="killed by signal $((rc - 128))"
       else st=killed msg="exited $rc without a result line"; fi ;;
  esac
  printf '{"impl":"pytorch","seq_len":%s,"status":"%s","exit_code":%d,"message":"%s","mem_cap_gib":%s}\n' \
    "$L" "$st" "$rc" "$msg" "$mem_gib"
done
exit $rc_all
