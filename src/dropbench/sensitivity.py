"""Do the findings survive the protocol? Each variant's score under each setting, and whether the orderings
the findings state hold under every setting, under the best setting per variant, or only under some.

A *setting* is one model entry of the grid that fine-tunes the same checkpoint another way (another
classifier head, learning rate, budget): e.g. ``minilm_l6`` (mean pooling) and ``minilm_l6_cls`` ([CLS]).
The orderings checked per task: the top-dropping variant above the bottom-dropping one at each k, and each
pruned variant below the full model. Scores are the mean task score over seeds (``aggregate.cell_means``).

    python -m dropbench.sensitivity results/summary.csv --settings minilm_l6 minilm_l6_cls --out reports/head_comparison
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dropbench.aggregate import DEGENERATE, OK, UNDERFIT, cell_means, read_summary
from dropbench.claims import notes, withheld_tasks
from dropbench.grid import BASELINE

BEST = "best per variant"


def setting_scores(summary: pd.DataFrame, settings: Sequence[str]) -> pd.DataFrame:
    """task, strategy, k, one column per setting (mean task score x 100 over seeds; NaN where missing),
    ``best per variant`` (the highest of them), and per setting whether any seed is underfit."""
    means = cell_means(summary[summary["model"].isin(settings)])
    means = means[means["status"].isin([OK, DEGENERATE, UNDERFIT]) | means["value"].notna()]
    scores = means.pivot_table(index=["task", "strategy", "k"], columns="model", values="value", sort=False) * 100
    scores = scores.reindex(columns=list(settings))
    underfit = means.pivot_table(index=["task", "strategy", "k"], columns="model", values="underfit", aggfunc="any",
                                 sort=False).reindex(index=scores.index, columns=list(settings))
    out = scores.copy()
    out[BEST] = scores.max(axis=1, skipna=False)
    for setting in settings:
        out[f"{setting} underfit"] = underfit[setting].astype("boolean")
    return out.reset_index()


def claims(scores: pd.DataFrame, settings: Sequence[str], withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Per task and claim: whether it holds under each setting and under the best per variant, and a verdict.
    A setting whose full model is at chance or degenerate on the task (``withheld``: (setting, task) -> why,
    ``dropbench.claims``) gives no answer (n/a)."""
    withheld = withheld or {}
    rows = []
    for task, table in scores.groupby("task", sort=False):
        table = table.set_index(["strategy", "k"])
        checks = []
        for k in sorted({k for s, k in table.index if s != BASELINE}):
            if ("top", k) in table.index and ("bottom", k) in table.index:
                checks.append((f"top-k{k} above bottom-k{k}", ("top", k), ("bottom", k)))
        if (BASELINE, 0) in table.index:
            checks += [(f"{s}-k{k} below full", (BASELINE, 0), (s, k)) for s, k in table.index if s != BASELINE]
        for claim, higher, lower in checks:
            row = {"task": task, "claim": claim}
            for column in [*settings, BEST]:
                a, b = table.loc[higher, column], table.loc[lower, column]
                row[column] = None if pd.isna(a) or pd.isna(b) or (column, task) in withheld else bool(a > b)
            row["verdict"] = verdict(row, settings)
            shaky = [s for s in settings if row[s] is not None and
                     any(bool(table.loc[cell, f"{s} underfit"]) is True for cell in (higher, lower) if pd.notna(table.loc[cell, f"{s} underfit"]))]
            row["rests on underfit cells under"] = ", ".join(shaky)
            rows.append(row)
    return pd.DataFrame(rows, columns=["task", "claim", *settings, BEST, "verdict", "rests on underfit cells under"])


def verdict(row: Mapping, settings: Sequence[str]) -> str:
    held = [s for s in settings if row[s] is True]
    known = [s for s in settings if row[s] is not None]
    if not known:
        return "not run"
    silent = [s for s in settings if row[s] is None]
    unknown = f" (n/a under {', '.join(silent)})" if silent else ""
    if len(held) == len(known):
        return "holds under every setting" + unknown
    if not held:
        return "holds under no setting" + (" (nor under the best per variant)" if row[BEST] is not True else "") + unknown
    best = "; holds under the best per variant" if row[BEST] else "; fails under the best per variant"
    return f"holds only under {', '.join(held)}{best}{unknown}"


def _fmt(value) -> str:
    if isinstance(value, (bool,)) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    return "n/a" if pd.isna(value) else f"{value:.1f}"


def markdown(scores: pd.DataFrame, claim_table: pd.DataFrame, settings: Sequence[str], notes: Sequence[str] = ()) -> str:
    lines = ["# Sensitivity: the same checkpoint under several settings", "",
             f"Settings (model entries): {', '.join(settings)}. Mean dev task score x 100 over seeds; "
             "° = at least one seed underfit (dropbench.convergence).", "", *[f"- {note}" for note in notes],
             *([""] if notes else [])]
    for task, table in scores.groupby("task", sort=False):
        lines += [f"## {task}", "", "| variant | " + " | ".join([*settings, BEST]) + " |",
                  "|---|" + "---|" * (len(settings) + 1)]
        for row in table.to_dict("records"):
            cells = [_fmt(row[s]) + ("°" if row.get(f"{s} underfit") is True else "") for s in settings]
            lines.append(f"| {row['strategy']}-k{row['k']} | " + " | ".join([*cells, _fmt(row[BEST])]) + " |")
        lines.append("")
        task_claims = claim_table[claim_table["task"] == task]
        if len(task_claims):
            lines += ["| claim | " + " | ".join([*settings, BEST]) + " | verdict | rests on underfit cells under |",
                      "|---|" + "---|" * (len(settings) + 3)]
            for row in task_claims.to_dict("records"):
                lines.append(f"| {row['claim']} | " + " | ".join(_fmt(row[c]) for c in [*settings, BEST])
                             + f" | {row['verdict']} | {row['rests on underfit cells under'] or '-'} |")
            lines.append("")
    return "\n".join(lines)


def write_sensitivity(summary_csv, settings: Sequence[str], out_dir) -> None:
    """``sensitivity_scores.csv``, ``sensitivity_claims.csv`` and ``sensitivity.md`` in ``out_dir``."""
    summary = read_summary(summary_csv)
    unknown = sorted(set(settings) - set(summary["model"]))
    if unknown:
        raise ValueError(f"settings {unknown} are not models of {summary_csv}; its models: {sorted(set(summary['model']))}")
    scores = setting_scores(summary, settings)
    reasons = withheld_tasks(summary, settings, pd.unique(scores["task"]))
    claim_table = claims(scores, settings, reasons)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "sensitivity_scores.csv", index=False)
    claim_table.to_csv(out / "sensitivity_claims.csv", index=False)
    (out / "sensitivity.md").write_text(markdown(scores, claim_table, settings, notes(reasons)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary_csv")
    parser.add_argument("--settings", nargs="+", required=True, help="model entries of the summary to compare")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    write_sensitivity(args.summary_csv, args.settings, args.out)


if __name__ == "__main__":
    main()
