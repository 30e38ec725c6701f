"""The GLUE metrics through the bundled `evaluate` module (its official implementation): the cross-check of
``dropbench.evaluate.metrics.compute`` in tests/test_metrics.py. Kept apart so that the report rules, which import
``dropbench.evaluate.metrics`` through ``dropbench.report.stats``, never need `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dropbench.data.tasks import get_task
from dropbench.evaluate.metrics import _checked

METRIC_SCRIPT = Path(__file__).resolve().parent / "glue_metric" / "glue_metric.py"


def load_glue_metric(task: str):
    """The bundled `evaluate` GLUE metric for `task`, loaded from a local script (no network)."""
    get_task(task)  # unknown task -> ValueError listing the known ones, before the slow import
    import evaluate

    # keep_in_memory: no Arrow cache files or locks under ~/.cache for each evaluation.
    return evaluate.load(str(METRIC_SCRIPT), config_name=task, keep_in_memory=True)


def evaluate_task(task: str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """`compute`, but through the `evaluate` module (as a consumer of `evaluate.load` would)."""
    # Check first: evaluate's Arrow encoding would silently cast e.g. float predictions to int.
    preds, refs = _checked(task, predictions, references)
    return load_glue_metric(task).compute(predictions=preds, references=refs)
