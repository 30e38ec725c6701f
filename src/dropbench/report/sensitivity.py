"""Do the findings survive the protocol? Each variant's score under each setting, and whether the orderings
the findings state hold under every setting, under the best setting per variant, or only under some.

A *setting* is one model entry of the grid that fine-tunes the same checkpoint another way (another
classifier head, learning rate, budget): e.g. ``minilm_l6`` (mean pooling) and ``minilm_l6_cls`` ([CLS]).
The orderings checked per task: the top-dropping variant above the bottom-dropping one at each k, and each
pruned variant below the full model. Scores are the mean dev task score over seeds (``aggregate.cell_means``).

With config ``tuning``, each candidate learning rate is a setting too, per model: the scores are then the
selection fine-tunes' scores on the rows held out from train (one seed, ``reports/tuning.csv``), never dev.

Rule ``sensitivity`` (config ``sensitivity`` and/or ``tuning``), or by hand:

    python -m dropbench.report.sensitivity results/summary.csv --settings minilm_l6 minilm_l6_cls --out reports/head_comparison
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dropbench.report.aggregate import DEGENERATE, OK, UNDERFIT, cell_means, read_summary
from dropbench.report.claims import notes, withheld_tasks
from dropbench.plan.cells import BASELINE, variant_name

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
    ``dropbench.report.claims``) gives no answer (n/a)."""
    withheld = withheld or {}
    rows = []
    for task, table in scores.groupby("task", sort=False):
        table = table.set_index(["strategy", "k"])
        checks = []
        for k in sorted({k for s, k in table.index if s != BASELINE}):
            if ("top", k) in table.index and ("bottom", k) in table.index:
                checks.append((f"{variant_name('top', k)} above {variant_name('bottom', k)}", ("top", k), ("bottom", k)))
        if (BASELINE, 0) in table.index:
            checks += [(f"{variant_name(s, k)} below full", (BASELINE, 0), (s, k)) for s, k in table.index if s != BASELINE]
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


def candidate_scores(tuning: pd.DataFrame, model: str) -> tuple[pd.DataFrame, list[str]]:
    """One model's learning-rate candidates as settings (``lr <rate>``): task, strategy, k, each candidate's
    held-out task score x 100 (reports/tuning.csv), the best per variant; no fit is recorded for them."""
    rows = tuning[tuning["model"] == model]
    settings = [f"lr {lr:g}" for lr in sorted(rows["learning_rate"].unique())]
    rows = rows.assign(setting=[f"lr {lr:g}" for lr in rows["learning_rate"]], score=rows["held_out_score"] * 100)
    scores = rows.pivot_table(index=["task", "strategy", "k"], columns="setting", values="score", sort=False)
    scores = scores.reindex(columns=settings)
    scores[BEST] = scores.max(axis=1, skipna=False)
    for setting in settings:
        scores[f"{setting} underfit"] = pd.array([pd.NA] * len(scores), dtype="boolean")
    return scores.reset_index(), settings


def markdown(scores: pd.DataFrame, claim_table: pd.DataFrame, settings: Sequence[str], notes: Sequence[str] = (),
             title: str = "# Sensitivity: the same checkpoint under several settings",
             what: str | None = None, level: str = "##") -> str:
    what = what or (f"Settings (model entries): {', '.join(settings)}. Mean dev task score x 100 over seeds; "
                    "° = at least one seed underfit (dropbench.train.convergence).")
    lines = [title, "", what, "", *[f"- {note}" for note in notes], *([""] if notes else [])]
    for task, table in scores.groupby("task", sort=False):
        lines += [f"{level} {task}", "", "| variant | " + " | ".join([*settings, BEST]) + " |",
                  "|---|" + "---|" * (len(settings) + 1)]
        for row in table.to_dict("records"):
            cells = [_fmt(row[s]) + ("°" if row.get(f"{s} underfit") is True else "") for s in settings]
            lines.append(f"| {variant_name(row['strategy'], row['k'])} | " + " | ".join([*cells, _fmt(row[BEST])]) + " |")
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


def write_sensitivity(summary_csv, settings: Sequence[str], out_dir, tuning_csv=None) -> None:
    """``sensitivity_scores.csv``, ``sensitivity_claims.csv`` and ``sensitivity.md`` in ``out_dir``: the
    model entries ``settings`` (two or more, or none) and, with ``tuning_csv`` (reports/tuning.csv), each
    model's learning-rate candidates (rows with ``setting_kind`` "learning rate" and the ``model``)."""
    summary = read_summary(summary_csv)
    unknown = sorted(set(settings) - set(summary["model"]))
    if unknown:
        raise ValueError(f"settings {unknown} are not models of {summary_csv}; its models: {sorted(set(summary['model']))}")
    score_tables, claim_tables, sections = [], [], []
    if settings:
        scores = setting_scores(summary, settings)
        reasons = withheld_tasks(summary, settings, pd.unique(scores["task"]))
        claim_table = claims(scores, settings, reasons)
        score_tables.append(scores.assign(setting_kind="model entry", model=""))
        claim_tables.append(claim_table.assign(setting_kind="model entry", model=""))
        sections.append(markdown(scores, claim_table, settings, notes(reasons)))
    if tuning_csv is not None:
        tuning = pd.read_csv(tuning_csv)
        sections.append("# Sensitivity to the learning rate: each candidate of the selection (config tuning)\n\n"
                        "Scores on the rows held out from the TRAIN split, one fine-tune per candidate with the "
                        "selection seed; never the dev rows the tables report.")
        for model in pd.unique(tuning["model"]):
            scores, rates = candidate_scores(tuning, model)
            claim_table = claims(scores, rates)
            score_tables.append(scores.assign(setting_kind="learning rate", model=model))
            claim_tables.append(claim_table.assign(setting_kind="learning rate", model=model))
            sections.append(markdown(scores, claim_table, rates, title=f"## {model}",
                                     what=f"Candidates: {', '.join(rates)}. Held-out task score x 100, one seed.",
                                     level="###"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _concat(score_tables).to_csv(out / "sensitivity_scores.csv", index=False)
    _concat(claim_tables).to_csv(out / "sensitivity_claims.csv", index=False)
    (out / "sensitivity.md").write_text("\n".join(sections) if sections else "# Sensitivity\n\nNo settings to compare.\n")


def write_report(summary_csv, settings: Sequence[str], tuning_csv, md, scores_csv, claims_csv) -> None:
    """Rule ``sensitivity``: the three files at the paths given, each replaced only once all are written."""
    import tempfile

    Path(md).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(md).parent, prefix=".sensitivity.tmp-") as tmp:
        write_sensitivity(summary_csv, settings, tmp, tuning_csv)
        for name, path in {"sensitivity.md": md, "sensitivity_scores.csv": scores_csv,
                           "sensitivity_claims.csv": claims_csv}.items():
            Path(tmp, name).replace(path)


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One CSV for every kind of setting: the setting columns differ, so absent ones are empty."""
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summary_csv")
    parser.add_argument("--settings", nargs="*", default=[], help="model entries of the summary to compare")
    parser.add_argument("--tuning", help="reports/tuning.csv: compare each model's learning-rate candidates too")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if len(args.settings) == 1 or (not args.settings and not args.tuning):
        parser.error("give two or more --settings, or --tuning")
    write_sensitivity(args.summary_csv, args.settings, args.out, args.tuning)


if __name__ == "__main__":
    main()
