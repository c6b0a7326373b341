#!/bin/bash
# torus across 4 Slurm nodes, 2 workers (one per GPU) on each: sbatch examples/slurm.sh
#
# srun starts one `torus launch` per node; it reads SLURM_NODEID, SLURM_NNODES and
# SLURM_JOB_NODELIST, so node 0 (the first host of the node list) serves the
# rendezvous on port 29400. The run directory must be on a shared filesystem.
#SBATCH --job-name=torus
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=2
#SBATCH --time=04:00:00
set -euo pipefail

# The cluster secret: every node reads the same file (keep it private: chmod 600).
KEY=$HOME/.torus/cluster.key
[ -s "$KEY" ] || { mkdir -p "$(dirname "$KEY")"; head -c 32 /dev/urandom | base64 > "$KEY"; chmod 600 "$KEY"; }

srun --kill-on-bad-exit=1 torus launch examples/recipes/byte-lm-go.yaml \
  --workers-per-node 2 \
  --set parallel.workers=$((SLURM_NNODES * 2)) \
  --key-file "$KEY" \
  --out "$PWD/runs/torus-$SLURM_JOB_ID"

# One task per worker works too: `#SBATCH --ntasks-per-node=2` and no --workers-per-node;
# each task is then the worker SLURM_PROCID.
