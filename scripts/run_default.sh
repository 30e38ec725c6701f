#!/usr/bin/env bash
# The embedded default run: offline, CPU, 2 cores. Extra arguments go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/snakemake --cores "${CORES:-2}" "$@"
.venv/bin/snakemake --report reports/report.html
