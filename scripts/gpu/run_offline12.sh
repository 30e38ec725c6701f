#!/usr/bin/env bash
# The offline12 GPU run in one device command (docs/gpu_run.md). Run from the repository root, after
# every part of .gpu_parts/ has been carried (scripts/gpu/gpu_parts.py make prints the call plan):
#
#   OUT=<folder that comes back> bash scripts/gpu/run_offline12.sh
#
# 1. checks every part, the reassembled payload and every file in it against .gpu_parts/manifest.json
#    and unpacks it into .gpu_payload/ (exit 3, before any training, if anything does not match);
# 2. makes the Python environment: the device's python3 has torch with CUDA but no Snakemake, and
#    nothing can be fetched there, so the wheels carried in the payload are installed into
#    /tmp/dropbench-site (exit 4 if Snakemake still cannot be imported, or if CUDA is missing);
# 3. runs config/offline12_gpu.yaml with DROPBENCH_JOBS_PER_GPU fine-tunes sharing the GPU, in three
#    time-boxed Snakemake phases inside GPU_BUDGET_S: fine-tune and evaluate every cell; time every
#    architecture (one job at a time); tables, figures, statistics and the paper comparison (of the
#    finished cells only, `partial_summary`, if a phase ran out of time);
# 4. packs tables, figures, summary CSV, stats, paper comparison, per-cell records, logs, hardware
#    (nvidia-smi) and wall times into $OUT and checks its limits (8 files, 16 MiB each).
# Run again on the same warm machine to resume: finished jobs are kept, the payload is not unpacked twice.
#
# Settings (environment): GPU_BUDGET_S (seconds for the whole command, default 450), GPU_LATENCY_S and
# GPU_REPORT_S (seconds kept for those phases; default 5 s per architecture to time + 20, and 60), GPU_CONFIG,
# GPU_WORKDIR (Snakemake's work directory, default the repository), GPU_PARTS, GPU_PAYLOAD, GPU_CORES
# (default nproc), DROPBENCH_JOBS_PER_GPU (default 8), GPU_ALLOW_CPU=1 (rehearse on a machine without
# CUDA), GPU_PYTHON (default python3), GPU_SITE (where carried wheels are installed, default
# /tmp/dropbench-site).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${OUT:?set OUT to the folder whose files come back}"
START=$(date +%s)
BUDGET=${GPU_BUDGET_S:-450}
WORKDIR=$(cd "${GPU_WORKDIR:-$REPO}" && pwd)
CONFIG=${GPU_CONFIG:-$REPO/config/offline12_gpu.yaml}
PARTS=${GPU_PARTS:-$WORKDIR/.gpu_parts}
PAYLOAD=${GPU_PAYLOAD:-$WORKDIR/.gpu_payload}
CORES=${GPU_CORES:-$(nproc)}
PY=${GPU_PYTHON:-python3}
SITE=${GPU_SITE:-/tmp/dropbench-site}
RUN_DIR=$WORKDIR/gpu_run
export DROPBENCH_JOBS_PER_GPU=${DROPBENCH_JOBS_PER_GPU:-8}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH=$SITE:$REPO/src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT" "$RUN_DIR"

say() { echo "[run_offline12 +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# 1. the payload
say "checking the parts in $PARTS against their manifest"
if ! "$PY" "$REPO/scripts/gpu/gpu_parts.py" assemble --parts "$PARTS" --dest "$PAYLOAD"; then
  say "the weights did not arrive intact; nothing was trained. Carry the parts named above again."
  exit 3
fi

# 2. the environment. transformers and huggingface_hub at this repository's pins go into $SITE/pins,
# used only if they import with the device's torch and tokenizers (else the device's own are used).
if [ -d "$PAYLOAD/wheels" ] && [ ! -f "$SITE/.installed" ]; then
  say "installing $(ls "$PAYLOAD"/wheels/*.whl | wc -l) carried wheels into $SITE (no index, no dependencies)"
  shopt -s nullglob
  pinned=("$PAYLOAD"/wheels/transformers-*.whl "$PAYLOAD"/wheels/huggingface_hub-*.whl)
  others=()
  for wheel in "$PAYLOAD"/wheels/*.whl; do
    case " ${pinned[*]} " in *" $wheel "*) ;; *) others+=("$wheel") ;; esac
  done
  shopt -u nullglob
  pip_install() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$@"; }
  { [ ${#others[@]} = 0 ] || pip_install "$SITE" "${others[@]}"; } &&
    { [ ${#pinned[@]} = 0 ] || pip_install "$SITE/pins" "${pinned[@]}"; } && touch "$SITE/.installed"
fi
if [ -d "$SITE/pins" ] && PYTHONPATH=$SITE/pins:$PYTHONPATH "$PY" -c "import transformers, huggingface_hub" 2>/dev/null; then
  export PYTHONPATH=$SITE/pins:$PYTHONPATH
elif [ -d "$SITE/pins" ]; then
  say "the carried transformers/huggingface_hub do not import here; using the device's own (see hardware.txt)"
fi
if ! "$PY" -c "import snakemake, torch, transformers, dropbench" 2>"$RUN_DIR/import_error.txt"; then
  cat "$RUN_DIR/import_error.txt"
  say "python3 lacks Snakemake (or torch/transformers); the device has no package index: carry the wheels of" \
      "scripts/gpu/device_requirements.txt in the payload (scripts/gpu/download_wheels.sh, then gpu_parts.py make --wheels .whl)"
  exit 4
fi
if [ "${GPU_ALLOW_CPU:-0}" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  say "torch sees no CUDA device; set GPU_ALLOW_CPU=1 to rehearse on CPU"
  exit 4
fi
{
  echo "# date"; date -u
  echo "# nvidia-smi"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  echo "# nvidia-smi --query-gpu"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 || true
  echo "# cpu"; nproc; grep -m1 "model name" /proc/cpuinfo; free -g 2>/dev/null | head -2
  echo "# python"
  "$PY" -c "import sys, torch, transformers, snakemake; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'snakemake', snakemake.__version__); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
  echo "# settings"; echo "config $CONFIG, cores $CORES, jobs per GPU $DROPBENCH_JOBS_PER_GPU, budget ${BUDGET}s"
} > "$RUN_DIR/hardware.txt" 2>&1
say "$(tail -3 "$RUN_DIR/hardware.txt" | head -1)"

# 3. the grid, in time-boxed phases; a later phase keeps the time it needs (GPU_LATENCY_S, GPU_REPORT_S)
SNAKEMAKE=("$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORKDIR" --configfile "$CONFIG"
           --cores "$CORES" --keep-going --nolock --rerun-incomplete)
phase() {  # phase NAME SECONDS ARGS...: one Snakemake run killed after SECONDS; records rc and wall time
  local name=$1 seconds=$2; shift 2
  local begin rc
  begin=$(date +%s)
  if [ "$seconds" -lt 10 ]; then
    say "phase $name skipped: ${seconds}s left"; rc=124
  else
    say "phase $name: up to ${seconds}s"
    timeout --signal=TERM --kill-after=15 "$seconds" "${SNAKEMAKE[@]}" "$@" >"$RUN_DIR/phase_$name.log" 2>&1
    rc=$?
    grep -E "steps \([0-9]+%\) done|Exiting|Error in rule|Nothing to be done" "$RUN_DIR/phase_$name.log" | tail -3
  fi
  echo "$name $rc $(( $(date +%s) - begin ))" >>"$RUN_DIR/phases.txt"
  say "phase $name: exit $rc after $(( $(date +%s) - begin ))s"
  return "$rc"
}
: >"$RUN_DIR/phases.txt"
# The latency phase keeps ~5 s per architecture still to be timed (start-up bound) unless GPU_LATENCY_S
# says otherwise: 180 s on a first run, little on a retry that only has cells left to train.
pending=$("${SNAKEMAKE[@]}" -n --until measure_latency 2>&1 | awk '$1 == "measure_latency" {print $2; exit}')
LATENCY_S=${GPU_LATENCY_S:-$(( ${pending:-0} * 5 + 20 ))}
say "${pending:-0} architectures to time; the latency phase keeps ${LATENCY_S}s"
REPORT_S=${GPU_REPORT_S:-60}
phase train $(( $(left) - LATENCY_S - REPORT_S )) --until evaluate; train=$?
phase latency $(( $(left) - REPORT_S )) --until measure_latency; latency=$?
if [ "$train" = 0 ] && [ "$latency" = 0 ]; then
  phase report $(( $(left) - 15 ))
else
  phase report $(( $(left) - 15 )) --config partial_summary=true -- report_only
fi
report=$?

# 4. what comes back
"$PY" - "$RUN_DIR" "$WORKDIR" "$START" "$BUDGET" "$CONFIG" <<'EOF'
import json, sys, time
from pathlib import Path
run_dir, workdir, start, budget, config = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
phases = [line.split() for line in (run_dir / "phases.txt").read_text().splitlines()]
record = {
    "config": config, "budget_s": budget, "wall_s": round(time.time() - start),
    "phases": [{"phase": name, "exit": int(rc), "wall_s": int(seconds)} for name, rc, seconds in phases],
    "cells_finished": len(list(workdir.glob("results/cells/**/metrics.json"))),
    "architectures_timed": len(list(workdir.glob("results/latency/**/*.json"))),
    "complete": all(int(rc) == 0 for _, rc, _ in phases),
}
(run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
with open(run_dir / "runs.jsonl", "a") as runs:  # every command on this machine, a retry after the first
    runs.write(json.dumps(record) + "\n")
print(json.dumps(record))
EOF
"$PY" "$REPO/scripts/gpu/gpu_parts.py" pack --workdir "$WORKDIR" --out "$OUT" --run-dir "$RUN_DIR" || exit 5
say "done"
[ "$train" = 0 ] && [ "$latency" = 0 ] && [ "$report" = 0 ]
