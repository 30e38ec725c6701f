"""The layer-importance profile (config ``layer_profile``): how much each single layer matters.

The cells ``layer<i>-k1`` drop only layer i (1-based) and are fine-tuned and evaluated like any cell.
From the summary:

- **importance** of layer i on a task: the fall in ``task_score`` when it alone is removed, per seed
  ``baseline(seed) - layer<i>(seed)`` (the same seed: same data order and head initialisation), then
  the mean and 95% t-interval over seeds (``stats.seed_interval``). Positive: dropping it hurts.
- **lower vs upper half** (the paper's first claim, "the lower layers are the most critical"): per
  seed, the mean importance of layers 1..floor(L/2) minus that of the top floor(L/2) layers (the middle
  layer of an odd L in neither), then its mean and t-interval over seeds; per task, and over all tasks
  (per seed the mean of the tasks' differences). The lower half is more critical when the whole
  interval is above 0, the upper half when it is below 0; otherwise the run cannot tell.
- **rank correlations** between each cheap score of ``profile_scores`` and the mean importance over
  seeds, per (model, task), over the n = L layers: Spearman's rho with a permutation p-value (exact over
  all n! orderings for n <= 8, else 100,000 seeded random orderings, p = (1 + #) / (1 + 100,000)) and
  Kendall's tau with scipy's p-value (exact for small n without ties). Both two-sided, not adjusted
  for the several scores and tasks. Positive: the cheap score predicts the damage.
- **withheld**: where the full model is at chance or degenerate on a task (``dropbench.report.claims``, the
  statuses the tables use), no layer of that task is ranked, no verdict, most important layer or rank
  correlation is drawn from it, and the task is left out of the verdict over all tasks; the report says why.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from dropbench.report import claims, stats
from dropbench.prune import strategy_names
from dropbench.runtime.atomic import atomic_file
from dropbench.plan.grid import BASELINE

METRIC = "task_score"
ALL_TASKS = "all"
EXACT_UP_TO = 8
RESAMPLES = 100_000


# ---- measured importance


def seed_importance(summary: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """One row per (model, task, layer, seed) with a result for both the ``layer<i>-k1`` cell and the
    baseline of the same seed: ``baseline``, ``score`` and ``importance`` = baseline - score."""
    rows = summary[(summary["metric"] == metric) & summary["value"].notna()]
    base = {(m, t, int(s)): v for m, t, s, v in
            rows.loc[rows["strategy"] == BASELINE, ["model", "task", "seed", "value"]].itertuples(index=False)}
    out = []
    for model, strategy, k, task, seed, value in rows[["model", "strategy", "k", "task", "seed", "value"]].itertuples(index=False):
        layer = strategy_names.single_layer_number(strategy)
        reference = base.get((model, task, int(seed)))
        if layer is None or int(k) != 1 or reference is None:
            continue
        out.append({"model": model, "task": task, "layer": layer, "seed": int(seed), "baseline": float(reference),
                    "score": float(value), "importance": float(reference) - float(value)})
    return pd.DataFrame(out, columns=["model", "task", "layer", "seed", "baseline", "score", "importance"])


def importance_table(per_seed: pd.DataFrame, depths: Mapping[str, int], tasks: Iterable[str],
                     withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Per (model, task, layer 1..L): seeds, mean baseline and cell score, mean importance with its
    sd and 95% t-interval, and ``rank`` (1 = most important; empty without a result, and for the
    (model, task) pairs in ``withheld``, whose full model is at chance or degenerate)."""
    rows = []
    tasks = list(tasks)
    for model, depth in depths.items():
        for task in tasks:
            for layer in range(1, depth + 1):
                sel = per_seed[(per_seed["model"] == model) & (per_seed["task"] == task) & (per_seed["layer"] == layer)]
                interval = stats.seed_interval(sel["importance"].tolist())
                rows.append({"model": model, "task": task, "layer": layer, "num_layers": depth,
                             "baseline_mean": _mean(sel["baseline"]), "score_mean": _mean(sel["score"]),
                             "importance": interval["mean"], **{k: interval[k] for k in ("n_seeds", "sd", "ci_low", "ci_high")}})
    table = pd.DataFrame(rows, columns=["model", "task", "layer", "num_layers", "n_seeds", "baseline_mean", "score_mean",
                                        "importance", "sd", "ci_low", "ci_high"])
    table["rank"] = table.groupby(["model", "task"])["importance"].rank(ascending=False, method="min").astype("Int64")
    unranked = [(m, t) in (withheld or {}) for m, t in zip(table["model"], table["task"])]
    table.loc[unranked, "rank"] = pd.NA
    return table


def halves(num_layers: int) -> tuple[list[int], list[int]]:
    """The lower and upper floor(L/2) layers, 1-based (an odd L's middle layer is in neither)."""
    half = num_layers // 2
    return list(range(1, half + 1)), list(range(num_layers - half + 1, num_layers + 1))


def verdict(interval: Mapping) -> str:
    if interval["n_seeds"] == 0:
        return "no result"
    if interval["n_seeds"] == 1:
        return "no interval (1 seed)"
    if interval["ci_low"] > 0:
        return "lower half more critical"
    if interval["ci_high"] < 0:
        return "upper half more critical"
    return "not distinguishable (interval contains 0)"


def ranking(means: Mapping[int, float]) -> str:
    """Layers from most to least important, e.g. '1 > 3 > 2'; layers without a result left out."""
    known = [(layer, value) for layer, value in means.items() if not math.isnan(value)]
    return " > ".join(str(layer) for layer, _ in sorted(known, key=lambda item: (-item[1], item[0])))


def lower_vs_upper(per_seed: pd.DataFrame, depths: Mapping[str, int], tasks: Iterable[str],
                   withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Per (model, task) and per model over all tasks (task ``all``): the lower-minus-upper-half mean
    importance over seeds with its 95% t-interval, the verdict, and the ranking of the layers.
    A seed counts only where every layer (and, for ``all``, every task) has a result. A (model, task)
    in ``withheld`` gets no verdict, ranking or most important layer (column ``withheld`` says why) and
    is left out of ``all`` (column ``tasks``: those it averages)."""
    rows = []
    tasks = list(tasks)
    withheld = withheld or {}
    for model, depth in depths.items():
        lower, upper = halves(depth)
        differences, layer_means = {}, {}
        for task in tasks:
            sel = per_seed[(per_seed["model"] == model) & (per_seed["task"] == task)]
            by_seed = sel.pivot_table(index="seed", columns="layer", values="importance")
            by_seed = by_seed.reindex(columns=range(1, depth + 1)).dropna()
            differences[task] = (by_seed[lower].mean(axis=1) - by_seed[upper].mean(axis=1)).to_dict()
            layer_means[task] = {layer: _mean(sel.loc[sel["layer"] == layer, "importance"]) for layer in range(1, depth + 1)}
            rows.append(_halves_row(model, task, depth, differences[task], by_seed[lower].mean(axis=1).mean(),
                                    by_seed[upper].mean(axis=1).mean(), layer_means[task], [task], withheld.get((model, task))))
        if len(tasks) > 1:
            usable = [task for task in tasks if (model, task) not in withheld]
            reason = None if usable else "; ".join(withheld[(model, task)] for task in tasks)
            used = usable or tasks
            seeds = set.intersection(*(set(differences[task]) for task in used))
            overall = {seed: float(np.mean([differences[task][seed] for task in used])) for seed in sorted(seeds)}
            means = {layer: float(np.mean([layer_means[task][layer] for task in used])) for layer in range(1, depth + 1)}
            rows.append(_halves_row(model, ALL_TASKS, depth, overall, np.mean([means[i] for i in lower]),
                                    np.mean([means[i] for i in upper]), means, used, reason))
    return pd.DataFrame(rows)


def _halves_row(model, task, depth, differences: Mapping[int, float], lower_mean, upper_mean, layer_means,
                tasks: list[str], withheld: str | None) -> dict:
    lower, upper = halves(depth)
    interval = stats.seed_interval(list(differences.values()))
    known = {layer: value for layer, value in layer_means.items() if not math.isnan(value)} if not withheld else {}
    return {"model": model, "task": task, "tasks": " ".join(tasks), "num_layers": depth,
            "lower_layers": f"1-{lower[-1]}", "upper_layers": f"{upper[0]}-{depth}",
            "n_seeds": interval["n_seeds"], "lower_mean": float(lower_mean), "upper_mean": float(upper_mean),
            "difference": interval["mean"], "sd": interval["sd"], "ci_low": interval["ci_low"], "ci_high": interval["ci_high"],
            "verdict": "withheld" if withheld else verdict(interval), "ranking": ranking(known),
            "most_important": max(known, key=lambda layer: (known[layer], -layer)) if known else None,
            "withheld": withheld or ""}


def _mean(values) -> float:
    values = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.mean(values)) if values else math.nan


# ---- rank correlations with the cheap scores


def spearman_permutation(x, y, exact_up_to: int = EXACT_UP_TO, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Spearman's rho (average ranks for ties) and its two-sided permutation p-value: exact over all
    n! orderings of y for n <= ``exact_up_to``, else over ``resamples`` seeded random orderings with
    p = (1 + #{|rho*| >= |rho|}) / (1 + resamples). rho and p are NaN when x or y is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need two equally long 1-D sequences of at least 3 values, got shapes {x.shape} and {y.shape}")
    rx, ry = sps.rankdata(x) - (len(x) + 1) / 2, sps.rankdata(y) - (len(y) + 1) / 2
    n = len(x)
    if not rx.any() or not ry.any():
        return {"rho": math.nan, "p": math.nan, "p_method": "undefined (constant values)"}
    scale = math.sqrt((rx**2).sum() * (ry**2).sum())
    rho = float(rx @ ry / scale)
    if n <= exact_up_to:
        orders = np.array(list(itertools.permutations(range(n))))
        replicates = ry[orders] @ rx / scale
        p = float(np.mean(np.abs(replicates) >= abs(rho) - 1e-12))
        method = f"exact ({len(orders)} orderings)"
    else:
        orders = np.argsort(np.random.default_rng(seed).random((resamples, n)), axis=1)
        replicates = ry[orders] @ rx / scale
        p = float((1 + np.sum(np.abs(replicates) >= abs(rho) - 1e-12)) / (1 + resamples))
        method = f"permutation ({resamples} random orderings)"
    return {"rho": rho, "p": min(1.0, p), "p_method": method}


def rank_correlations(importance: pd.DataFrame, score_records: Iterable[Mapping],
                      withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Per (model, task, cheap score): n layers, Spearman rho and p, Kendall tau and p between the
    score and the mean importance; empty values where a layer has no importance yet, and where the
    (model, task) is in ``withheld`` (column ``withheld`` says why)."""
    rows = []
    withheld = withheld or {}
    for record in score_records:
        model, task = record["model"], record["task"]
        sel = importance[(importance["model"] == model) & (importance["task"] == task)].sort_values("layer")
        measured = sel["importance"].to_numpy(dtype=float)
        for name in record["scores"]:  # the cheap scores profile_scores wrote, in its order (SCORES)
            score = np.asarray(record["scores"][name], dtype=float)
            row = {"model": model, "task": task, "score": name, "n_layers": len(score),
                   "spearman_rho": math.nan, "spearman_p": math.nan, "spearman_p_method": "",
                   "kendall_tau": math.nan, "kendall_p": math.nan, "withheld": withheld.get((model, task), "")}
            if not row["withheld"] and len(measured) == len(score) >= 3 and not np.isnan(measured).any():
                spearman = spearman_permutation(score, measured)
                kendall = sps.kendalltau(score, measured)
                row.update(spearman_rho=spearman["rho"], spearman_p=spearman["p"], spearman_p_method=spearman["p_method"],
                           kendall_tau=float(kendall.statistic), kendall_p=float(kendall.pvalue))
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "task", "score", "n_layers", "spearman_rho", "spearman_p",
                                       "spearman_p_method", "kendall_tau", "kendall_p", "withheld"])


# ---- the paired tests against the full model, from results/stats.csv


def tests_against_full(stats_table: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """(model, task, layer) -> p_adjusted and significant of ``layer<i>-k1`` against ``none-k0``."""
    rows = stats_table[(stats_table["comparison"] == f"{BASELINE}-k0") & (stats_table["metric"] == metric)].copy()
    rows["layer"] = [strategy_names.single_layer_number(s) for s in rows["strategy"]]
    rows = rows[rows["layer"].notna() & (rows["k"] == 1)]
    return rows.assign(layer=rows["layer"].astype(int))[["model", "task", "layer", "p_adjusted", "significant"]]


# ---- the markdown report


def _points(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:+.1f}"


def _interval(row) -> str:
    if row["n_seeds"] == 0:
        return "missing"
    if math.isnan(row["ci_low"]):
        return f"{_points(row['importance'] if 'importance' in row else row['difference'])} (1 seed)"
    value = row["importance"] if "importance" in row else row["difference"]
    return f"{_points(value)} [{_points(row['ci_low'])}, {_points(row['ci_high'])}]"


def _p(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def markdown(importance: pd.DataFrame, halves_table: pd.DataFrame, correlations: pd.DataFrame, tests: pd.DataFrame) -> str:
    tests = {(m, t, int(l)): p for m, t, l, p in tests[["model", "task", "layer", "p_adjusted"]].itertuples(index=False)}
    lines = [
        "# Layer-importance profile",
        "",
        "Importance of layer i: the task score of the full model minus that of the model fine-tuned with only layer i",
        "dropped (cell `layer<i>-k1`), x 100, paired by seed; mean [95% t-interval over seeds]; positive = dropping it hurts.",
        "`p_adj`: the paired permutation test of the cell against the full model from `results/stats.csv` (Holm-adjusted).",
        "Lower vs upper half: per seed, the mean importance of the lower floor(L/2) layers minus that of the upper floor(L/2)",
        "(an odd L's middle layer in neither); the lower half is more critical when the whole interval is above 0.",
        "",
    ]
    for model, table in importance.groupby("model", sort=False):
        depth = int(table["num_layers"].iloc[0])
        tasks = list(dict.fromkeys(table["task"]))
        lines += [f"## {model} ({depth} layers)", "", "| layer | " + " | ".join(f"{t} importance | {t} p_adj" for t in tasks) + " |",
                  "|---|" + "---|---|" * len(tasks)]
        for layer in range(1, depth + 1):
            cells = []
            for task in tasks:
                row = table[(table["task"] == task) & (table["layer"] == layer)].iloc[0]
                cells += [_interval(row), _p(tests.get((model, task, layer)))]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        model_halves = halves_table[halves_table["model"] == model]
        lines += ["", "| task | seeds | lower half | upper half | lower - upper [95% CI] | verdict | ranking (most important first) |",
                  "|---|---|---|---|---|---|---|"]
        for row in model_halves.to_dict("records"):
            lines.append(f"| {row['task']} | {row['n_seeds']} | {row['lower_layers']}: {_points(row['lower_mean'])} | "
                         f"{row['upper_layers']}: {_points(row['upper_mean'])} | {_interval(row)} | {row['verdict']} | {row['ranking']} |")
        reasons = {(model, row["task"]): row["withheld"] for row in model_halves.to_dict("records")
                   if row["withheld"] and row["task"] != ALL_TASKS}
        overall = model_halves.iloc[-1]
        lines += ["", *claims.notes(reasons), *([""] if reasons else []), _claim(model, overall, bool(reasons)), ""]
    lines += [
        "## Does a cheap score predict the damage?",
        "",
        "Rank correlation over the n = L layers between each cheap score of the unpruned model (higher = the layer changes",
        "its input more; measured on the task's train inputs, `dropbench.prune.profile_scores`) and the mean measured importance.",
        "Spearman p: permutation test (exact over all n! orderings for n <= 8); Kendall p: scipy (exact for small n without",
        "ties). Two-sided, not adjusted for the several scores and tasks. With n = 6 the smallest possible two-sided Spearman",
        "p is 2/720 = 0.003 and |rho| must reach about 0.89 for p < 0.05: only a near-perfect ranking is evidence.",
        "`angular_distance` is a monotone function of `contribution` for a single layer, so their ranks are equal.",
        "",
        "| model | task | score | n | Spearman rho | p | Kendall tau | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in correlations.to_dict("records"):
        if row["withheld"]:
            lines.append(f"| {row['model']} | {row['task']} | {row['score']} | {row['n_layers']} | withheld | | withheld | |")
            continue
        lines.append(f"| {row['model']} | {row['task']} | {row['score']} | {row['n_layers']} | {_rho(row['spearman_rho'])} | "
                     f"{_p(row['spearman_p'])} | {_rho(row['kendall_tau'])} | {_p(row['kendall_p'])} |")
    if correlations["withheld"].astype(bool).any():
        lines += ["", "withheld: the full model is at chance or degenerate on the task (see the model's section above)."]
    return "\n".join(lines) + "\n"


def _claim(model: str, overall: Mapping, some_withheld: bool) -> str:
    head = f"**The paper's first claim (the lower layers are the most critical), {model}**: "
    if overall["withheld"]:
        return head + f"withheld: {overall['withheld']}; no verdict and no most important layer."
    scope = overall["task"]
    if scope == ALL_TASKS:
        scope = f"the tasks not withheld ({overall['tasks']})" if some_withheld else "all tasks"
    return (head + f"{overall['verdict']} over {scope} "
            f"(lower - upper = {_interval(overall)} points; most important layer: {overall['most_important']}).")


def _rho(value) -> str:
    return "" if math.isnan(value) else f"{value:+.2f}"


# ---- the rule's function


def write_layer_profile(summary_csv, stats_csv, score_jsons: Iterable[str | Path], depths: Mapping[str, int],
                        tasks: Iterable[str], outputs: Mapping[str, str], style: Mapping | None = None) -> None:
    """Write the importance, halves and correlation CSVs, the markdown and the two figures
    (``outputs`` keys: importance_csv, halves_csv, correlations_csv, md, and the figure keys)."""
    from dropbench.report import profile_plots

    tasks = list(tasks)
    summary = pd.read_csv(summary_csv)
    withheld = claims.withheld_tasks(summary, depths, tasks)
    per_seed = seed_importance(summary)
    importance = importance_table(per_seed, depths, tasks, withheld)
    tests = tests_against_full(pd.read_csv(stats_csv))
    importance = importance.merge(tests, on=["model", "task", "layer"], how="left")
    halves_table = lower_vs_upper(per_seed, depths, tasks, withheld)
    records = [json.loads(Path(path).read_text()) for path in score_jsons]
    correlations = rank_correlations(importance, records, withheld)
    for key, table in (("importance_csv", importance), ("halves_csv", halves_table), ("correlations_csv", correlations)):
        with atomic_file(outputs[key]) as tmp:
            table.to_csv(tmp, index=False)
    with atomic_file(outputs["md"]) as tmp:
        tmp.write_text(markdown(importance, halves_table, correlations, tests))
    profile_plots.plot_profile(importance, correlations, outputs, style)
