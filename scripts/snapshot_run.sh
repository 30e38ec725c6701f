#!/usr/bin/env bash
# Copy a finished run's tables, statistics, figures (PNG + the CSV each draws) and latency records into
# a committed snapshot folder, e.g. reports/offline12_cpu. Usage: scripts/snapshot_run.sh RUN_DIR DEST
set -euo pipefail
run=${1:?usage: snapshot_run.sh RUN_DIR DEST}
dest=${2:?usage: snapshot_run.sh RUN_DIR DEST}
[ -f "$run/results/summary.csv" ] || { echo "no $run/results/summary.csv: is $run a finished run?" >&2; exit 2; }
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cp "$run"/results/summary.csv "$run"/results/stats.csv "$run"/results/diverged.csv "$dest"/
cp "$run"/reports/tables/*.md "$dest"/
cp "$run"/reports/paper_comparison.md "$run"/reports/paper_comparison.csv "$dest"/
for png in "$run"/reports/figures/*.png; do
  cp "$png" "$dest"/
  csv="${png%.png}.csv"
  [ -f "$csv" ] && cp "$csv" "$dest"/
done
(cd "$run/results/latency" && find . -name '*.json' | while read -r f; do
  mkdir -p "$dest/latency/$(dirname "$f")"; cp "$f" "$dest/latency/$f"; done)
echo "snapshot of $run written to $dest"
