#!/bin/sh
# Idempotent: installs Debian's PyTorch (python3-torch, 1.13 on bookworm) for the
# system python (/usr/bin/python3, never the pyenv python on PATH), plus what the
# benchmark needs, only when missing:
#   - OpenBLAS (libopenblas0-pthread). With --no-install-recommends, python3-torch
#     pulls in only the netlib reference BLAS (libblas3), which runs float32 matmul
#     at ~6 GFLOP/s instead of ~300: the peer would be handicapped 50x.
#   - time (/usr/bin/time -v) and prlimit (util-linux) for run.sh.
set -eu
PY=/usr/bin/python3
need=""
"$PY" -c 'import torch' >/dev/null 2>&1 || need="$need python3-torch"
blas="$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)"
case "$blas" in *openblas*) ;; *) need="$need libopenblas0-pthread" ;; esac
[ -x /usr/bin/time ] || need="$need time"
command -v prlimit >/dev/null 2>&1 || need="$need util-linux"
if [ -n "$need" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $need
fi
"$PY" -c 'import torch; print("torch", torch.__version__)'
echo "libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
