"""dropbench.steps.run_step: what every rule's script calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A job as Snakemake's script object shows it (rule, log), run in its own process like a rule's script.
JOB = """
import gc, json, sys, types
from dropbench.steps import run_step

job = types.SimpleNamespace(rule="hello", log=[sys.argv[1]])
run_step(job, {"hello": lambda job: print("step ran for", job.rule)})
print(json.dumps({"frozen": gc.get_freeze_count()}), file=sys.__stdout__)
"""


def test_a_step_logs_to_its_job_log_and_leaves_the_heap_frozen(tmp_path):
    """The step's output goes to the job's log; afterwards the heap is frozen, so the interpreter's exit skips its
    last collections over torch's objects (~0.6 s of each tiny job's ~3.5 s on the 2-core VM)."""
    log = tmp_path / "logs" / "hello.log"
    result = subprocess.run([sys.executable, "-c", JOB, str(log)], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=True)
    assert "step ran for hello" in log.read_text()
    assert json.loads(result.stdout)["frozen"] > 1000
