"""dropbench.steps.run_step: what every rule's script calls."""

from __future__ import annotations

import json
import subprocess
import sys

from tiny import REPO

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


SETTLED = """
import gc, json, sys
from dropbench.steps import import_settled

import_settled(("torch", "transformers.modeling_utils"))
settled = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "imported": "transformers.modeling_utils" in sys.modules}
try:
    import_settled(("no_such_module_here",))
except ImportError:
    settled["enabled_after_a_failed_import"] = gc.isenabled()
print(json.dumps(settled))
"""


def test_the_model_libraries_are_imported_settled_and_the_collector_runs_again(tmp_path):
    """A model step's libraries are imported with the collector paused and then frozen; it is on again after,
    even when an import fails."""
    result = subprocess.run([sys.executable, "-c", SETTLED], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src")}, check=True)
    settled = json.loads(result.stdout)
    assert settled["enabled"] and settled["imported"] and settled["enabled_after_a_failed_import"]
    assert settled["frozen"] > 100_000  # torch's and transformers' objects


def test_the_model_steps_are_steps():
    from dropbench.steps import models

    assert models.MODEL_STEPS <= set(models.STEPS) and "prepare_task" not in models.MODEL_STEPS


def test_snakemakes_own_process_exits_frozen(tmp_path):
    """common.smk registers the same freeze for Snakemake's process (~0.25 s of every invocation): a handler
    registered before it (atexit runs them last-in, first-out) sees the heap frozen."""
    from tiny import tiny_config, write_config
    from workflow_runner import snakemake

    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('FROZEN', gc.get_freeze_count(), file=sys.__stderr__))\n")
    write_config(tmp_path, tiny_config(tmp_path))
    result = snakemake(tmp_path, "-n", env={"PYTHONPATH": str(probe)})
    frozen = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("FROZEN")]
    assert len(frozen) == 1 and frozen[0] > 10_000
