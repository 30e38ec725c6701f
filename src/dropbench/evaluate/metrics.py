"""GLUE dev-set metrics, computed directly.

Jobs use ``compute`` (numpy, ``BATCH_METRICS``, the one implementation the statistics use too):
importing `evaluate` costs an evaluate job 5-9 s, as its package import pulls in much of `transformers`.
The official implementation through the bundled `evaluate` module is the cross-check of
``dropbench.evaluate.evaluate_metric`` (tests only), so importing this module never needs `evaluate`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dropbench.data.tasks import get_task



# ---- every GLUE metric over replicates: preds (R, n), refs (n,) -> (R,), the one implementation that
# `compute` (one replicate) and the paired tests and bootstrap intervals of dropbench.report.stats (many) use


def _accuracy(preds, refs):
    return (preds == refs).mean(axis=1)


def _f1(preds, refs):
    # binary F1 of class 1 (GLUE's "duplicate"/"equivalent"); 0 when undefined, as sklearn's zero_division=0
    tp = ((preds == 1) & (refs == 1)).sum(axis=1)
    wrong = (preds != refs).sum(axis=1)
    denominator = 2 * tp + wrong
    return np.divide(2 * tp, denominator, out=np.zeros(len(preds)), where=denominator > 0)


def _matthews(preds, refs):
    # multi-class MCC from counts (Gorodkin 2004), 0 when undefined, as sklearn
    classes = int(max(preds.max(), refs.max())) + 1
    n = refs.shape[0]
    correct = (preds == refs).sum(axis=1).astype(float)
    predicted = np.stack([(preds == c).sum(axis=1) for c in range(classes)], axis=1).astype(float)
    true = np.bincount(refs, minlength=classes).astype(float)
    numerator = correct * n - predicted @ true
    denominator = np.sqrt((n**2 - (predicted**2).sum(axis=1)) * (n**2 - (true**2).sum()))
    return np.divide(numerator, denominator, out=np.zeros(len(preds)), where=denominator > 0)


def _pearson(preds, refs):
    # NaN for a constant prediction or reference (no defined correlation; a collapsed model must not crash)
    p = preds - preds.mean(axis=1, keepdims=True, dtype=np.float64)
    r = refs - refs.mean(dtype=np.float64)
    denominator = np.sqrt((p**2).sum(axis=1) * (r**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (p @ r) / denominator, np.nan)


def _ranks(values):
    """Ranks along the last axis, ties averaged (as scipy's rankdata); one argsort when there are none."""
    order = np.argsort(values, axis=-1)
    if np.any(np.diff(np.take_along_axis(values, order, axis=-1), axis=-1) == 0):
        from scipy.stats import rankdata  # here: scipy.stats costs each evaluate job ~0.4 s to import

        return rankdata(values, axis=-1)
    ranks = np.empty(values.shape)
    np.put_along_axis(ranks, order, np.arange(1.0, values.shape[-1] + 1), axis=-1)
    return ranks


def _spearman(preds, refs):
    return _pearson(_ranks(preds), _ranks(refs))


BATCH_METRICS = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
    "spearmanr": _spearman,
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
    return {name: float(BATCH_METRICS[name](preds[np.newaxis, :], refs)[0]) for name in get_task(task).metrics}
