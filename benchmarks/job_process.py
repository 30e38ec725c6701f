"""What a model step's process costs before it does any work: the imports, the garbage collections they cause, and
the interpreter's exit.

Two kinds of fresh Python process, side by side, alternated ``--repeats`` times (least CPU time kept), each
importing what the prune, finetune, evaluate and latency steps import (Snakemake's script preamble, torch,
transformers' model classes, dropbench's train loop and evaluation) and exiting:
- `plain`: plain imports and a plain exit (the steps before issue 23's last round);
- `steps`: as ``dropbench.steps`` runs them now: ``import_settled(MODEL_LIBRARIES)`` (the collector paused while
  torch and transformers import, then frozen) and ``gc.freeze()`` before the exit.
Prints the CPU seconds of each, then `job_process_cpu_ratio: X` (steps / plain; target <= 0.8). Hundreds of
such processes make the test suite's runs of tiny grids, where the work itself takes milliseconds.

    python benchmarks/job_process.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

from common import REPO

IMPORTS = "import snakemake.script\nimport dropbench.train.loop, dropbench.evaluate.evaluation\n"
PLAIN = "import torch, transformers.modeling_utils\n" + IMPORTS
STEPS = ("import gc\nfrom dropbench.steps import import_settled\nfrom dropbench.steps.models import MODEL_LIBRARIES\n"
         "import_settled(MODEL_LIBRARIES)\n" + IMPORTS + "gc.freeze()\n")


def cpu_seconds(code: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plain, steps = [], []
    for _ in range(args.repeats):  # alternated, so that both see the same machine
        plain.append(cpu_seconds(PLAIN))
        steps.append(cpu_seconds(STEPS))
    print(f"a model step's process without its work, least CPU time of {args.repeats} alternated runs")
    print(f"plain (imports, exit): {min(plain):.2f} s")
    print(f"steps (import_settled, gc.freeze before the exit): {min(steps):.2f} s")
    print(f"job_process_cpu_ratio: {min(steps) / min(plain):.2f}")


if __name__ == "__main__":
    main()
