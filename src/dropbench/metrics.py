"""GLUE dev-set metrics: computed directly, or through the bundled `evaluate` module.

Jobs use ``compute`` (sklearn/scipy/numpy): importing `evaluate` costs an evaluate job 5-9 s, as its
package import pulls in much of `transformers`. ``evaluate_task`` stays as the cross-check in tests.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from dropbench.glue import get_task

METRIC_SCRIPT = Path(__file__).resolve().parent / "glue_metric" / "glue_metric.py"


def _accuracy(preds: np.ndarray, refs: np.ndarray) -> float:
    return float(np.mean(preds == refs))


def _f1(preds: np.ndarray, refs: np.ndarray) -> float:
    # Binary F1 of class 1 (GLUE's "duplicate"/"equivalent"); 0.0 rather than a warning if undefined.
    return float(f1_score(refs, preds, zero_division=0.0))


def _matthews(preds: np.ndarray, refs: np.ndarray) -> float:
    return float(matthews_corrcoef(refs, preds))


def _correlation(fn, preds: np.ndarray, refs: np.ndarray) -> float:
    # A constant prediction (e.g. a collapsed model) has no defined correlation: report NaN, don't crash.
    if np.all(preds == preds[0]) or np.all(refs == refs[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(preds, refs)[0])


_METRICS = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": lambda p, r: _correlation(pearsonr, p, r),
    "spearmanr": lambda p, r: _correlation(spearmanr, p, r),
}


def _as_array(task, name: str, values: Sequence, regression: bool, num_labels: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"task {task}: {name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if regression:
        if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
            raise ValueError(f"task {task}: {name} must be finite numbers (regression), got dtype {arr.dtype}")
        return arr.astype(np.float64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"task {task}: {name} must be integer class indices, got dtype {arr.dtype}")
    bad = arr[(arr < 0) | (arr >= num_labels)]
    if bad.size:
        raise ValueError(f"task {task}: {name} holds {bad[0].item()!r}; allowed class indices 0..{num_labels - 1}")
    return arr.astype(np.int64)


def _checked(task: str, predictions: Sequence, references: Sequence) -> tuple[np.ndarray, np.ndarray]:
    spec = get_task(task)
    preds = _as_array(task, "predictions", predictions, spec.is_regression, spec.num_labels)
    refs = _as_array(task, "references", references, spec.is_regression, spec.num_labels)
    if preds.shape != refs.shape:
        raise ValueError(f"task {task}: {len(preds)} predictions but {len(refs)} references")
    return preds, refs


def compute(task: str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """The task's official metrics on one dev split, e.g. {"f1": ..., "accuracy": ...}.

    Classification takes integer class indices; STS-B takes float scores.
    """
    preds, refs = _checked(task, predictions, references)
    return {name: _METRICS[name](preds, refs) for name in get_task(task).metrics}


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
