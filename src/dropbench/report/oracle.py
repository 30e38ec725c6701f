"""How far is each strategy from the best possible layers? (issue 25 item 4, the dev-set half.)

Given the cells of config ``subsets`` (every set of k layers dropped, ``drop_<i>_<j>...``; ``layer<i>`` at
k = 1), per (model, task, k):

- every subset's mean dev task score and 95% t-interval over seeds;
- the best subset **on dev**: an optimistic bound, since it is chosen on the rows it is scored on;
- the **honest oracle**: the subset with the best mean score on the rows held out from the train split
  (config ``tuning``; evaluate scores every cell on them, metrics.json ``held_out``), and its dev score and
  rank; withheld, with the reason, where a subset of that k has no held-out scores;
- every other strategy of the grid at that k (the heuristics; a [CLS] threshold cell at the k it produced): its rank among the subsets (1 = best), the
  share of subsets it scores at least as well as, the subset that drops the same layers, and its gap to
  the best subset on dev and to the honest oracle: the mean over seeds of the per-seed difference with a
  t-interval, and the paired permutation test's Holm-adjusted p from ``results/stats.csv`` (both cells'
  seeds, same dev examples);
- the greedy searches (strategy ``greedy``): each step's choice beside the honest oracle of its k;
- whether layer effects add up: with the single-layer cells (k = 1) of the same model and task, the sum of
  the dropped layers' single-layer losses (full - layer<i>) against each subset's measured loss (full -
  subset), Spearman's rank correlation and its p-value.

No claim is drawn for a (model, task) whose full model is at chance or degenerate (``dropbench.report.claims``).
Scores are task scores x 100 (the GLUE-style mean of a task's metrics).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from dropbench.report import claims, stats
from dropbench.report.aggregate import HAS_RESULT, RETRIED
from dropbench.plan.cells import BASELINE, CELL_KEYS, Cell, variant_name
from dropbench.plan.records import read_cell_metrics
from dropbench.prune.strategy_names import subset_layers

SUBSET_COLUMNS = ["model", "task", "k", "strategy", "dropped", "n_seeds", "mean", "ci_low", "ci_high", "rank", "best_on_dev",
                  "held_out_mean", "chosen_on_held_out"]
HEURISTIC_COLUMNS = ["model", "task", "k", "strategy", "dropped", "same_as", "n_seeds", "mean", "rank", "of", "at_least_as_good_as",
                     "gap_to_best_on_dev", "gap_ci_low", "gap_ci_high", "gap_seeds", "p_adjusted", "best_on_dev",
                     "chosen_on_held_out", "gap_to_chosen", "chosen_gap_ci_low", "chosen_gap_ci_high", "p_adjusted_chosen"]
ADDITIVITY_COLUMNS = ["model", "task", "k", "subsets", "spearman", "p_value"]


def per_seed_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """model, strategy, k, task, seed, value (task score x 100), dropped (1-based layers, e.g. "1 4") of
    every cell with a result; runs replaced by a retry left out."""
    rows = summary[(summary["metric"] == "task_score") & summary["status"].isin(HAS_RESULT) & (summary["status"] != RETRIED)]
    rows = rows.dropna(subset=["value"])
    dropped = [" ".join(str(int(i) + 1) for i in str(d).split()) if pd.notna(d) else "" for d in rows["dropped_layers"]]
    return rows.assign(value=100 * rows["value"].astype(float), dropped=dropped)[
        ["model", "strategy", "k", "task", "seed", "value", "dropped"]].reset_index(drop=True)


def is_subset(strategy: str, k: int) -> bool:
    layers = subset_layers(strategy)
    return layers is not None and len(layers) == k


def held_out_scores(metrics_paths) -> pd.DataFrame:
    """model, strategy, k, task, seed, held_out (task score x 100 on the held-out train rows) of every
    metrics.json that has them (metrics.json ``held_out``, config ``tuning``)."""
    rows = []
    for path in metrics_paths:
        record = read_cell_metrics(path)
        score = (record.get("held_out") or {}).get("task_score")
        if score is not None:
            rows.append(Cell.of(record).as_dict() | {"held_out": 100 * score})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "held_out"])


def _gap(a: pd.Series, b: pd.Series | None) -> dict:
    """Mean over the seeds both have of a - b, with its t-interval (series indexed by seed); NaN without b."""
    if b is None:
        return {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0}
    seeds = a.index.intersection(b.index)
    return stats.seed_interval(list(a[seeds] - b[seeds]))


def _held_out_choice(held_out: pd.DataFrame | None, model: str, task: str, k: int, subsets: Iterable[str]):
    """(held-out mean per subset, the subset with the best, or None and why not)."""
    subsets = list(subsets)
    if held_out is None or held_out.empty:
        return {}, None, None
    rows = held_out[(held_out["model"] == model) & (held_out["task"] == task) & (held_out["k"] == k)]
    means = rows.groupby("strategy")["held_out"].mean().reindex(subsets)
    lacking = [s for s in subsets if pd.isna(means.get(s))]
    if lacking:
        return means.dropna().to_dict(), None, (f"no honest oracle for {model}, {task}, k = {k}: {len(lacking)} of "
                                                f"{len(subsets)} subsets have no held-out scores (e.g. `{lacking[0]}`)")
    return means.to_dict(), means.sort_values(ascending=False, kind="stable").index[0], None


def _p_adjusted(tests: pd.DataFrame | None, model: str, task: str, strategy: str, k: int, other: str) -> float:
    """The Holm-adjusted p of the paired test between two strategies at k (either direction), else NaN."""
    if tests is None or tests.empty:
        return float("nan")
    rows = tests[(tests["model"] == model) & (tests["task"] == task) & (tests["k"] == k) & (tests["metric"] == "task_score")]
    hit = rows[((rows["strategy"] == strategy) & (rows["comparison"] == variant_name(other, k)))
               | ((rows["strategy"] == other) & (rows["comparison"] == variant_name(strategy, k)))]
    return float(hit["p_adjusted"].iloc[0]) if len(hit) else float("nan")


def oracle_tables(summary: pd.DataFrame, tests: pd.DataFrame | None = None, held_out: pd.DataFrame | None = None):
    """(subsets, heuristics, additivity, notes): see the module docstring. ``tests``: results/stats.csv;
    ``held_out``: ``held_out_scores`` of the cells (the honest oracle; none without)."""
    scores = per_seed_scores(summary)
    # a strategy that decides k itself (the [CLS] thresholds: cells at k = 0) stands among the subsets of the k it produced
    decided = (scores["k"] == 0) & (scores["strategy"] != BASELINE)
    scores.loc[decided, "k"] = scores.loc[decided, "dropped"].str.split().str.len()
    subset_rows, heuristic_rows, additivity_rows = [], [], []
    reasons = {}
    for (model, task), group in scores.groupby(["model", "task"], sort=False):
        reason = claims.withheld(summary, model, task)
        if reason:
            reasons[(model, task)] = reason
            continue
        by_cell = {key: cell.set_index("seed")["value"] for key, cell in group.groupby(["strategy", "k"], sort=False)}
        dropped = dict(zip(zip(group["strategy"], group["k"]), group["dropped"]))
        full = by_cell.get((BASELINE, 0))
        for k in sorted({k for s, k in by_cell if is_subset(s, k)}):
            subsets = {s: values for (s, kk), values in by_cell.items() if kk == k and is_subset(s, kk)}
            means = pd.Series({s: v.mean() for s, v in subsets.items()}).sort_values(ascending=False, kind="stable")
            best = means.index[0]
            ranks = means.rank(ascending=False, method="min").astype(int)
            held_out_means, chosen, missing = _held_out_choice(held_out, model, task, k, means.index)
            if missing:
                reasons[(model, task, k)] = missing
            for strategy in means.index:
                interval = stats.seed_interval(list(subsets[strategy]))
                subset_rows.append({"model": model, "task": task, "k": k, "strategy": strategy, "dropped": dropped[(strategy, k)],
                                    "n_seeds": interval["n_seeds"], "mean": interval["mean"], "ci_low": interval["ci_low"],
                                    "ci_high": interval["ci_high"], "rank": int(ranks[strategy]), "best_on_dev": strategy == best,
                                    "held_out_mean": held_out_means.get(strategy, np.nan), "chosen_on_held_out": strategy == chosen})
            for (strategy, kk), values in by_cell.items():
                if kk != k or is_subset(strategy, kk) or strategy == BASELINE:
                    continue
                mean = values.mean()
                same = [s for s in subsets if dropped[(s, k)] == dropped[(strategy, k)]]
                to_best, to_chosen = _gap(values, subsets[best]), _gap(values, subsets[chosen] if chosen else None)
                heuristic_rows.append({
                    "model": model, "task": task, "k": k, "strategy": strategy, "dropped": dropped[(strategy, k)],
                    "same_as": same[0] if same else "", "n_seeds": len(values), "mean": mean,
                    "rank": int((means > mean).sum()) + 1, "of": len(means),
                    "at_least_as_good_as": float((means <= mean).mean()),
                    "gap_to_best_on_dev": to_best["mean"], "gap_ci_low": to_best["ci_low"],
                    "gap_ci_high": to_best["ci_high"], "gap_seeds": to_best["n_seeds"],
                    "p_adjusted": _p_adjusted(tests, model, task, strategy, k, best),
                    "best_on_dev": best, "chosen_on_held_out": chosen or "",
                    "gap_to_chosen": to_chosen["mean"], "chosen_gap_ci_low": to_chosen["ci_low"],
                    "chosen_gap_ci_high": to_chosen["ci_high"],
                    "p_adjusted_chosen": _p_adjusted(tests, model, task, strategy, k, chosen) if chosen else np.nan})
            if k >= 2 and full is not None:
                additivity_rows.append(_additivity(model, task, k, subsets, by_cell, full))
    return (pd.DataFrame(subset_rows, columns=SUBSET_COLUMNS), pd.DataFrame(heuristic_rows, columns=HEURISTIC_COLUMNS),
            pd.DataFrame(additivity_rows, columns=ADDITIVITY_COLUMNS),
            claims.notes({key: r for key, r in reasons.items() if len(key) == 2}) + [r for key, r in reasons.items() if len(key) == 3])


def _additivity(model: str, task: str, k: int, subsets: dict, by_cell: dict, full: pd.Series) -> dict:
    """Spearman's correlation between each subset's summed single-layer losses and its measured loss."""
    single = {subset_layers(s)[0]: full.mean() - v.mean() for (s, kk), v in by_cell.items() if kk == 1 and is_subset(s, 1)}
    predicted, measured = [], []
    for strategy, values in subsets.items():
        layers = subset_layers(strategy)
        if all(layer in single for layer in layers):
            predicted.append(sum(single[layer] for layer in layers))
            measured.append(full.mean() - values.mean())
    row = {"model": model, "task": task, "k": k, "subsets": len(measured), "spearman": np.nan, "p_value": np.nan}
    if len(measured) >= 3 and np.ptp(predicted) > 0 and np.ptp(measured) > 0:
        result = sps.spearmanr(predicted, measured)
        row.update(spearman=float(result[0]), p_value=float(result[1]))
    return row


def _fmt(value, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def markdown(subsets: pd.DataFrame, heuristics: pd.DataFrame, additivity: pd.DataFrame, notes: Iterable[str],
             greedy_records: Iterable[dict] = ()) -> str:
    lines = ["# How far is each strategy from the best possible layers?", "",
             "Every subset of k layers dropped (config `subsets`), its mean dev task score x 100 and 95% t-interval "
             "over seeds. **Best on dev** is chosen on the dev rows it is scored on: an optimistic bound, not an "
             "achievable choice. **Chosen on held-out** (the honest oracle) is the subset with the best mean score on "
             "rows held out from the train split (config `tuning`), scored on dev like any cell. Heuristics: "
             "rank among the subsets (1 = best), the share of subsets they score at least as well as, and the gap to the "
             "best subset on dev and to the honest oracle (mean over seeds of the per-seed difference, t-interval; p: the "
             "paired permutation test of `results/stats.csv`, Holm-adjusted). Layers are 1-based (1 = lowest).", ""]
    if not subsets["chosen_on_held_out"].any() and not any("no honest oracle" in note for note in notes):
        lines += ["- No cell has scores on held-out train rows (config `tuning` prepares them): no honest oracle."]
    lines += [f"- {note}" for note in notes]
    for (model, task, k), group in subsets.groupby(["model", "task", "k"], sort=False):
        best = group[group["best_on_dev"]].iloc[0]
        lines += ["", f"## {model}, {task}, k = {k}: {len(group)} subsets", "",
                  f"Best on dev (optimistic): `{best['strategy']}` (drops {best['dropped']}) {_fmt(best['mean'])} "
                  f"[{_fmt(best['ci_low'])}, {_fmt(best['ci_high'])}]; worst: `{group.iloc[-1]['strategy']}` "
                  f"{_fmt(group.iloc[-1]['mean'])}.", ""]
        chosen = group[group["chosen_on_held_out"]]
        if len(chosen):
            c = chosen.iloc[0]
            lines[-1:-1] = [f"Chosen on held-out (honest oracle): `{c['strategy']}` (drops {c['dropped']}), held-out "
                            f"{_fmt(c['held_out_mean'])}, dev {_fmt(c['mean'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}], "
                            f"rank {c['rank']} of {len(group)} on dev."]
        rows = heuristics[(heuristics["model"] == model) & (heuristics["task"] == task) & (heuristics["k"] == k)]
        if len(rows):
            lines += ["| heuristic | drops | score | rank | at least as good as | gap to best on dev [95% CI] | p (Holm) "
                      "| gap to honest oracle [95% CI] | p (Holm) |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for row in rows.itertuples():
                lines.append(f"| {row.strategy} | {row.dropped} | {_fmt(row.mean)} | {row.rank} of {row.of} | "
                             f"{100 * row.at_least_as_good_as:.0f}% | {_fmt(row.gap_to_best_on_dev)} [{_fmt(row.gap_ci_low)}, "
                             f"{_fmt(row.gap_ci_high)}] | {_fmt(row.p_adjusted, 3)} | {_fmt(row.gap_to_chosen)} "
                             f"[{_fmt(row.chosen_gap_ci_low)}, {_fmt(row.chosen_gap_ci_high)}] | {_fmt(row.p_adjusted_chosen, 3)} |")
        fit = additivity[(additivity["model"] == model) & (additivity["task"] == task) & (additivity["k"] == k)]
        if len(fit) and pd.notna(fit["spearman"].iloc[0]):
            r = fit.iloc[0]
            lines += ["", f"Are layer effects additive? Summed single-layer losses against measured subset losses over "
                          f"{int(r['subsets'])} subsets: Spearman {r['spearman']:.2f} (p = {r['p_value']:.3g})."]
    lines += greedy_lines(greedy_records, subsets)
    return "\n".join(lines) + "\n"


def greedy_lines(records: Iterable[dict], subsets: pd.DataFrame) -> list[str]:
    """The greedy searches' steps (results/greedy/<model>/<task>/step<s>.json), each step's choice beside the
    honest oracle of its k where the grid has every subset of that k (then the candidates were its cells: trained
    once, shared with the search)."""
    lines = []
    by_search: dict = {}
    for record in records:
        by_search.setdefault((record["model"], record["task"]), []).append(record)
    for (model, task), steps in by_search.items():
        lines += ["", f"## Greedy search: {model}, {task} (seed {steps[0]['seed']}, chosen on held-out train rows)", "",
                  "| step | drops | held-out | candidates | the grid's subsets of this k | honest oracle of this k |",
                  "|---|---|---|---|---|---|"]
        for step in sorted(steps, key=lambda r: r["step"]):
            k = step["step"]
            grid = subsets[(subsets["model"] == model) & (subsets["task"] == task) & (subsets["k"] == k)]
            shared = {c["strategy"] for c in step["candidates"]} <= set(grid["strategy"])
            chosen = grid[grid["chosen_on_held_out"]]
            oracle = ""
            if len(chosen):
                same = "the same" if chosen["strategy"].iloc[0] == step["chosen"] else "another"
                oracle = f"`{chosen['strategy'].iloc[0]}` ({same} subset)"
            lines.append(f"| {k} | `{step['chosen']}` | {100 * step['held_out_task_score']:.1f} | {len(step['candidates'])} | "
                         f"{'yes: the candidates are its cells' if shared else 'no: trained for the search'} | {oracle} |")
    return lines


def label_positions(marks: pd.DataFrame, gap: float) -> list[tuple[float, str]]:
    """One label per score (heuristics that score the same share it, e.g. "symmetric, contribution"), moved up
    where needed so that labels stand at least ``gap`` apart; the markers stay at the scores."""
    labels = marks.groupby("mean", sort=True)["strategy"].apply(", ".join)
    placed: list[tuple[float, str]] = []
    for score, label in labels.items():
        placed.append((score if not placed else max(score, placed[-1][0] + gap), label))
    return placed


def strip_figure(subsets: pd.DataFrame, heuristics: pd.DataFrame, png, pdf, csv) -> None:
    """All subsets as points per (model, task) panel and k; heuristics marked and labelled; best on dev ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(zip(subsets["model"], subsets["task"])))
    widest = max([subsets["k"].nunique()] + [1])  # room for the heuristics' labels right of each k
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=((2.4 * widest + 1.0) * max(len(panels), 1), 4.0), squeeze=False)
    for ax, (model, task) in zip(axes[0], panels):
        group = subsets[(subsets["model"] == model) & (subsets["task"] == task)]
        ks = sorted(group["k"].unique())
        for i, k in enumerate(ks):
            points = group[group["k"] == k]
            jitter = np.linspace(-0.15, 0.15, len(points)) if len(points) > 1 else np.zeros(1)
            ax.scatter(i + jitter, points["mean"], s=12, color="grey", alpha=0.7, label="subset" if i == 0 else None)
            best = points[points["best_on_dev"]]
            ax.scatter([i], best["mean"], s=60, facecolors="none", edgecolors="black", label="best on dev" if i == 0 else None)
            chosen = points[points["chosen_on_held_out"]]
            if len(chosen):
                ax.scatter([i], chosen["mean"], s=110, facecolors="none", edgecolors="tab:red",
                           label="chosen on held-out" if i == 0 else None)
            marks = heuristics[(heuristics["model"] == model) & (heuristics["task"] == task) & (heuristics["k"] == k)]
            for j, row in enumerate(marks.itertuples()):
                ax.scatter([i + 0.3], [row.mean], marker="D", s=25, color=f"C{j % 10}")
            for y, label in label_positions(marks, gap=0.04 * np.ptp(np.r_[group["mean"], heuristics["mean"]]) or 0.1):
                ax.annotate(label, (i + 0.33, y), fontsize="x-small", va="center")
        ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
        ax.set_xlim(-0.5, len(ks) - 0.1)
        ax.set_title(f"{model}, {task}", fontsize="small")
        ax.set_ylabel("dev task score x 100")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    fig.savefig(png, dpi=120, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)
    pd.concat([subsets.assign(kind="subset"), heuristics.assign(kind="heuristic")], ignore_index=True).to_csv(csv, index=False)


def write_oracle(summary_csv, stats_csv, md, subsets_csv, heuristics_csv, additivity_csv, png, pdf, figure_csv,
                 metrics_paths=(), greedy_paths=()) -> None:
    """``metrics_paths``: the cells' metrics.json, for their held-out scores (the honest oracle); ``greedy_paths``:
    the greedy searches' step records (dropbench.prune.greedy)."""
    import json
    from pathlib import Path

    from dropbench.report.aggregate import read_summary

    summary = read_summary(summary_csv)
    tests = pd.read_csv(stats_csv) if stats_csv else None
    if tests is not None:
        tests = tests[tests["comparison"].fillna("").ne("")]
    subsets, heuristics, additivity, notes = oracle_tables(summary, tests, held_out_scores(metrics_paths))
    subsets.to_csv(subsets_csv, index=False)
    heuristics.to_csv(heuristics_csv, index=False)
    additivity.to_csv(additivity_csv, index=False)
    with open(md, "w") as handle:
        handle.write(markdown(subsets, heuristics, additivity, notes, [json.loads(Path(p).read_text()) for p in greedy_paths]))
    strip_figure(subsets, heuristics, png, pdf, figure_csv)
