"""Chance levels of each official metric, from the dev labels, and when a score counts as at chance.

A "percent of the full model" is meaningless when the full model itself scores at chance (e.g. a
majority-class predictor on MRPC keeps "100%" of nothing). Chance levels per metric:

- accuracy: the majority-class rate of the dev set;
- f1 (binary, class 1): the F1 of always predicting class 1, ``2p / (1 + p)`` for a positive rate ``p``
  (the best constant predictor's F1; MRPC's majority class is the positive one);
- matthews_correlation, pearson, spearmanr: 0.

A score is *at chance* when it is missing or ``<= chance + CHANCE_MARGINS[metric]``: accuracy and F1 at
most 1 point above, MCC <= 0, a correlation below 0.1. The same test flags diverged seeds (``stats``).
"""

from __future__ import annotations

import math

import numpy as np

CHANCE_MARGINS = {"accuracy": 0.01, "f1": 0.01, "matthews_correlation": 0.0, "pearson": 0.1, "spearmanr": 0.1}


def base_metric(name: str) -> str:
    """``validation_matched_accuracy`` -> ``accuracy``: the metric behind a (split-prefixed) record key."""
    return next(metric for metric in CHANCE_MARGINS if name == metric or name.endswith(f"_{metric}"))


def chance_levels(metric_names, labels: np.ndarray) -> dict[str, float]:
    """Chance level of each metric (``accuracy``, ``f1``, ...) on one dev split's labels."""
    labels = np.asarray(labels)
    levels = {}
    for name in metric_names:
        if name == "accuracy":
            levels[name] = float(np.bincount(labels.astype(np.int64)).max() / len(labels))
        elif name == "f1":
            positive = float(np.mean(labels == 1))
            levels[name] = 2 * positive / (1 + positive)
        else:
            levels[name] = 0.0
    return levels


def at_chance(metric: str, value, chance: float) -> bool:
    """True when ``value`` (of a metric key such as ``f1`` or ``validation_matched_accuracy``) is missing
    or within the metric's margin above ``chance``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return value <= chance + CHANCE_MARGINS[base_metric(metric)]
