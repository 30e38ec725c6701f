"""Statistics of a grid: intervals over seeds, paired tests over dev examples, Holm's correction,
and the test for a diverged fine-tune. Pure numpy/scipy; the methods are described in README.md
("Statistics").

Task knowledge comes in as a ``layout``: the (dev split, metric, name in the metrics record) of each
official metric (``significance.metric_layout``), so that this module needs no task table.

Arrays of predictions are 2-D, (replicates, examples): every metric is recomputed on each replicate
from its predictions, never averaged per example, so F1, MCC and correlations are tested as what
they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from dropbench.evaluate import chance
from dropbench.evaluate.metrics import BATCH_METRICS


CONFIDENCE = 0.95
# "clearly above" for diverged runs: at least this much higher task score (0-1 scale)
CLEARLY_ABOVE = 0.05


# ---- intervals over seeds


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """n, mean, sample sd and the two-sided Student-t interval of the mean over seeds.

    With one seed there is no spread to estimate: sd and the interval are NaN (shown empty).
    """
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(values)
    if n == 0:
        return {"n_seeds": 0, "mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(values.mean())
    if n == 1:
        return {"n_seeds": 1, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    sd = float(values.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return {"n_seeds": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


# ---- metrics over replicates: one implementation of every GLUE metric, dropbench.evaluate.metrics.BATCH_METRICS


Layout = Sequence[tuple[str, str, str]]  # (dev split, metric, name in the metrics record)


def splits_of(layout: Layout) -> list[str]:
    return list(dict.fromkeys(split for split, _, _ in layout))


def run_metrics(layout: Layout, preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The task's official metrics and ``task_score`` (their mean) per replicate, named as in the
    metrics record (``<split>_<metric>`` when the task has several dev splits)."""
    out = {
        recorded: BATCH_METRICS[name](np.atleast_2d(preds[split]), labels[split])
        for split, name, recorded in layout
    }
    out["task_score"] = np.mean(np.stack(list(out.values())), axis=0)
    return out


# ---- paired tests


def paired_permutation_test(
    layout: Layout,
    a_runs: Sequence[Mapping[str, Mapping[str, np.ndarray]]],
    b_runs: Sequence[Mapping[str, Mapping[str, np.ndarray]]],
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Paired approximate-randomisation test of A against B on the same dev examples, pooled over seeds.

    ``a_runs[i]`` and ``b_runs[i]`` are the predictions of one seed (``{split: {"prediction",
    "label"}}``, as predictions.load returns). Statistic: the mean over seeds of metric(A) - metric(B).
    Under the null hypothesis A's and B's predictions of an example are exchangeable, so each
    replicate swaps them independently with probability 1/2 per (seed, example) and recomputes the
    metrics. Two-sided p = (1 + #{|replicate| >= |observed|}) / (1 + replicates), over the replicates
    where the metric is defined. Returns ``{metric: (delta, p)}``.
    """
    if len(a_runs) != len(b_runs) or not a_runs:
        raise ValueError(f"paired test needs the same, non-zero number of seeds on both sides, got {len(a_runs)} and {len(b_runs)}")
    rng = np.random.default_rng(seed)
    splits = splits_of(layout)
    observed = {}
    for a, b in zip(a_runs, b_runs):
        labels = {s: a[s]["label"] for s in splits}
        ma = run_metrics(layout, {s: a[s]["prediction"] for s in splits}, labels)
        mb = run_metrics(layout, {s: b[s]["prediction"] for s in splits}, labels)
        for name in ma:
            observed.setdefault(name, []).append(ma[name][0] - mb[name][0])
    observed = {name: float(np.mean(deltas)) for name, deltas in observed.items()}

    rows = sum(len(a[s]["label"]) for a in a_runs for s in splits)
    chunk = max(1, min(resamples, 4_000_000 // rows))
    extreme = {name: 0 for name in observed}
    defined = {name: 0 for name in observed}
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        deltas = {name: np.zeros(size) for name in observed}
        for a, b in zip(a_runs, b_runs):
            pa, pb, labels = {}, {}, {}
            for s in splits:
                swap = rng.random((size, len(a[s]["label"]))) < 0.5
                pa[s] = np.where(swap, b[s]["prediction"], a[s]["prediction"])
                pb[s] = np.where(swap, a[s]["prediction"], b[s]["prediction"])
                labels[s] = a[s]["label"]
            ma, mb = run_metrics(layout, pa, labels), run_metrics(layout, pb, labels)
            for name in deltas:
                deltas[name] += (ma[name] - mb[name]) / len(a_runs)
        for name, values in deltas.items():
            finite = np.isfinite(values)
            defined[name] += int(finite.sum())
            # a relative tolerance, so that replicates equal to the observed value up to rounding count
            extreme[name] += int((np.abs(values[finite]) >= abs(observed[name]) - 1e-12).sum())
        done += size
    return {
        name: (observed[name], (1 + extreme[name]) / (1 + defined[name]) if math.isfinite(observed[name]) and defined[name] else math.nan)
        for name in observed
    }


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control under any dependence); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


# ---- diverged runs


def chance_levels(layout: Layout, labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``dropbench.evaluate.chance`` levels of every metric of the record (``task_score`` excluded)."""
    return {recorded: chance.chance_levels([name], labels[split])[name] for split, name, recorded in layout}


def at_chance(metrics: Mapping[str, float], levels: Mapping[str, float]) -> bool:
    """Every official metric at its chance level, by ``dropbench.evaluate.chance.at_chance`` (NaN: at chance)."""
    return all(chance.at_chance(name, metrics[name], level) for name, level in levels.items())


def diverged(metrics: Mapping[str, float], levels: Mapping[str, float], task_score: float, reference_scores: Sequence[float]) -> bool:
    """At chance, while a reference run (another seed of the cell, or the unpruned model) scores at
    least CLEARLY_ABOVE higher on task_score."""
    task_score = -math.inf if math.isnan(task_score) else task_score
    return at_chance(metrics, levels) and any(r >= task_score + CLEARLY_ABOVE for r in reference_scores if not math.isnan(r))
