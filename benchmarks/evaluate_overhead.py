"""What an evaluate job costs beyond loading the model and predicting, on a tiny model.

Two kinds of fresh Python process, side by side, each run ``--repeats`` times (fastest kept):
- `bare`: imports torch and transformers, loads the fine-tuned model, predicts the dev rows in batches:
  the least any evaluate job must do;
- `job`: what the evaluate step (dropbench.steps.models.evaluate) runs (Snakemake's script preamble import, then
  ``dropbench.evaluate.evaluation.write_cell_metrics``: metrics, chance levels, statuses, predictions file,
  record check, atomic writes).
The tiny model is the tests' 4-layer BERT (hidden 32) with 64 SST-2 rows (tests/tiny.py), pruned to 3
layers. Prints the two wall times, then `evaluate_overhead_s: X` (job - bare; target <= 4).

    python benchmarks/evaluate_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

sys.path.insert(0, str(REPO / "tests"))
from tiny import tiny_train_inputs  # noqa: E402

from dropbench.data import features  # noqa: E402
from dropbench.prune import step as prune

BARE = """
import sys, torch
from transformers import AutoModelForSequenceClassification
from dropbench.data import features
torch.set_num_threads(1)
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], use_safetensors=True).eval()
split = features.load(sys.argv[2])
with torch.inference_mode():
    for start in range(0, len(split), 128):
        model(**split.batch(list(range(start, min(start + 128, len(split)))), 0)).logits.argmax(-1)
"""
JOB = """
import sys
import snakemake.script  # the preamble of every Snakemake script job
from dropbench.runtime.device import set_threads
from dropbench.evaluate.evaluation import write_cell_metrics
from dropbench.plan.cells import Cell
set_threads(1)
cell = Cell.of({"model": "tiny", "strategy": "top", "k": 1, "task": "sst2", "seed": 1})
write_cell_metrics(cell, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], 128, sys.argv[5], sys.argv[6])
"""


def wall_seconds(code: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dropbench-bench-"))
    model_dir, features_dir = tiny_train_inputs(work)
    pruned = work / "pruned"
    prune.prune_checkpoint(model_dir, pruned, "top", 1)
    train_log = work / "train_log.json"
    train_log.write_text(json.dumps({"train_seconds": 0.0, "device": "cpu"}))
    dev = features.split_path(features_dir, "validation")
    job_args = [str(pruned), str(pruned), str(features_dir), str(train_log), str(work / "metrics.json"), str(work / "predictions.npz")]

    bare, job = [], []
    for _ in range(args.repeats):  # alternated, so that both see the same machine
        bare.append(wall_seconds(BARE, [str(pruned), str(dev)]))
        job.append(wall_seconds(JOB, job_args))
    record = json.loads((work / "metrics.json").read_text())
    print(f"tiny model, {sum(record['dev_rows'].values())} dev rows, fastest of {args.repeats} alternated runs, one thread")
    print(f"bare (import torch + transformers, load, predict): {min(bare):.2f} s")
    print(f"job (the evaluate step (dropbench.steps.models.evaluate)'s work): {min(job):.2f} s")
    print(f"evaluate_overhead_s: {min(job) - min(bare):.2f}")


if __name__ == "__main__":
    main()
