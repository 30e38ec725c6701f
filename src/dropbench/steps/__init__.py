"""One function per rule: what the rule's job runs, given Snakemake's ``snakemake`` object (here ``job``).

Every rule's script is the same two lines (``workflow/scripts/<env>_step.py``: ``run(snakemake)`` of the
module for its conda env), so a script never changes and Snakemake's code trigger never re-runs a finished
job for an edit here: ``job_params.STAGE_VERSIONS`` alone decides what a code change re-runs, and the report
rules' params hold a digest of their modules and of their step module (README "What re-runs when").
One module per conda env, so each env holds every package its steps import (tests/test_envs.py):
``models`` (envs/pytorch.yaml), ``reports`` (envs/report.yaml), ``exports`` (envs/export.yaml) and
``tracking`` (envs/tracking.yaml). Each module's ``run`` calls the function named as the job's rule.

The logging (``log_to``), failure records, device threads and GPU slots around each step are here, once per
kind of step; the dropbench modules the functions call do the work and never see Snakemake.
"""

import gc
import importlib

from dropbench.runtime.jobs import log_to


def run_step(job, steps: dict, libraries: tuple[str, ...] = ()) -> None:
    """The step of ``job``'s rule from ``steps`` (name -> function), its output logged to the job's log.
    ``libraries``: modules the step will import, imported first by ``import_settled``."""
    with log_to(job.log[0]):
        import_settled(libraries)
        steps[job.rule](job)
    # The job's process ends next. Freezing the heap spares the interpreter's last garbage collections over the
    # millions of objects torch and transformers made: ~0.6 s of a tiny test job's ~3.5 s (negligible beside a
    # real fine-tune, but the test suite runs hundreds of tiny jobs).
    gc.freeze()


def import_settled(modules: tuple[str, ...]) -> None:
    """Import ``modules`` with the cyclic garbage collector paused, then freeze what they made. Importing torch and
    transformers' model classes makes about a million long-lived objects: collecting while they are made costs
    ~6 full collections (~0.4 s of a tiny job), and every later full collection would walk them again."""
    if not modules:
        return
    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        gc.enable()
    gc.freeze()
