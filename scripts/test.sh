#!/usr/bin/env bash
# The test suite (CPU, offline) on two pytest-xdist workers. Extra arguments go to pytest, e.g. `-k slurm`,
# or `-n 0` for one process.
# --dist loadfile: a file's tests stay on one worker, in order (a module's finished run is made once), and
# the tests that start a SLURM cluster, all in tests/test_slurm_cluster.py, never run at the same time.
# OMP_NUM_THREADS=1: torch's default of one thread per core in each worker would oversubscribe the CPUs
# (the workflow's jobs set their own thread count).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
