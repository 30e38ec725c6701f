"""Our scores beside the paper's (resources/paper/): for models the paper ran, its score beside our
mean and 95% interval over seeds; for every model, our percent of the unpruned score retained beside
the paper's for the same strategy and k (BERT-base, XLNet-base, RoBERTa-base where published).

Scores are x 100. ``ours`` has columns model, strategy, k, task, seed, value (0-1 scale), one metric
per task: the summary's ``paper_score`` rows if present, else PAPER_METRICS.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from dropbench import stats
from dropbench.atomic import atomic_file
from dropbench.grid import BASELINE

PAPER_DIR = Path(__file__).resolve().parents[2] / "resources" / "paper"
# The metric the paper's tables show per task (resources/paper/README.md); STS-B's is not stated.
PAPER_METRICS = {
    "sst2": "accuracy", "mrpc": "accuracy", "rte": "accuracy", "qnli": "accuracy", "qqp": "accuracy",
    "mnli": "validation_matched_accuracy", "stsb": "pearson", "cola": "matthews_correlation",
}
RETAINED_REFERENCES = ("bert-base-uncased", "xlnet-base-cased", "roberta-base")
COLUMNS = [
    "kind", "model", "strategy", "k", "task", "n_seeds", "ours_mean", "ours_ci_low", "ours_ci_high",
    "paper_model", "paper", "difference", "paper_source", "paper_exact",
]
GROUP = ["model", "strategy", "k", "task"]


def read_paper(path: str | Path = PAPER_DIR / "published_scores.csv") -> pd.DataFrame:
    return pd.read_csv(path, dtype={"model": str, "strategy": str, "k": int, "task": str, "score": float})


def ours_from_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """model, strategy, k, task, seed, value: the ``paper_score`` rows, or each task's PAPER_METRICS row."""
    done = summary[summary["status"] == "ok"]
    if (done["metric"] == "paper_score").any():
        rows = done[done["metric"] == "paper_score"]
    else:
        rows = done[done["metric"] == done["task"].map(PAPER_METRICS)]
    return rows[[*GROUP, "seed", "value"]].reset_index(drop=True)


def _intervals(per_seed: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in per_seed.groupby(GROUP, sort=False):
        interval = stats.seed_interval(group["value"].tolist())
        rows.append({**dict(zip(GROUP, key)), "n_seeds": interval["n_seeds"], "ours_mean": interval["mean"],
                     "ours_ci_low": interval["ci_low"], "ours_ci_high": interval["ci_high"]})
    return pd.DataFrame(rows, columns=[*GROUP, "n_seeds", "ours_mean", "ours_ci_low", "ours_ci_high"])


def _retained_per_seed(ours: pd.DataFrame) -> pd.DataFrame:
    """100 x variant / unpruned, seed by seed (seeds the baseline has)."""
    base = ours[ours["strategy"] == BASELINE][["model", "task", "seed", "value"]].rename(columns={"value": "base"})
    pruned = ours[ours["strategy"] != BASELINE].merge(base, on=["model", "task", "seed"])
    pruned["value"] = 100 * pruned["value"] / pruned["base"]
    return pruned.drop(columns="base")


def _paper_retained(paper: pd.DataFrame) -> pd.DataFrame:
    base = paper[paper["strategy"] == BASELINE][["model", "task", "score"]].rename(columns={"score": "base"})
    pruned = paper[paper["strategy"] != BASELINE].merge(base, on=["model", "task"])
    pruned["score"] = 100 * pruned["score"] / pruned["base"]
    return pruned.drop(columns="base")


def compare(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The tidy comparison: ``kind`` = ``score`` (same model, strategy, k, task) or ``percent_retained``."""
    paper = paper.drop(columns="kind")
    paper_cols = {"score": "paper", "source": "paper_source", "exact": "paper_exact"}
    scaled = ours.assign(value=100 * ours["value"])
    scores = _intervals(scaled).merge(paper, on=GROUP)
    scores = scores.assign(paper_model=scores["model"]).rename(columns=paper_cols)
    scores["kind"] = "score"
    references = _paper_retained(paper[paper["model"].isin(RETAINED_REFERENCES)])
    references = references.rename(columns={**paper_cols, "model": "paper_model"})
    retained = _intervals(_retained_per_seed(ours)).merge(references, on=["strategy", "k", "task"])
    retained["kind"] = "percent_retained"
    table = pd.concat([scores, retained], ignore_index=True)
    table["difference"] = table["ours_mean"] - table["paper"]
    return table.reindex(columns=COLUMNS)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype(object)
    for column in ("ours_mean", "ours_ci_low", "ours_ci_high", "paper", "difference"):
        out[column] = [f"{v:.1f}" if pd.notna(v) else "" for v in table[column]]
    return out


INTRO = {
    "score": "Same model, strategy, k and task: the paper's dev score (x 100, one run) beside our mean "
             "and 95% t-interval over seeds (empty with one seed); difference = ours - paper.",
    "percent_retained": "Percent of the unpruned model's score retained at the same strategy and k: ours "
                        "(per seed, then mean and interval) beside the paper's for each model it published.",
}


def write(table: pd.DataFrame, md_path, html_path, csv_path) -> None:
    md, page = ["# Our scores beside the paper's (Sajjad et al., arXiv:2004.03844 v1)", ""], []
    for kind, intro in INTRO.items():
        part = _display(table[table["kind"] == kind].drop(columns="kind"))
        md += [f"## {kind.replace('_', ' ')}", "", intro, ""]
        md += [part.to_markdown(index=False, disable_numparse=True) if len(part) else "(nothing in common)", ""]
        page += [f"<h2>{html.escape(kind.replace('_', ' '))}</h2><p>{html.escape(intro)}</p>",
                 part.to_html(index=False, border=0) if len(part) else "<p>(nothing in common)</p>"]
    html_text = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Paper comparison</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>\n"
        + "\n".join(page) + "\n</body></html>\n"
    )
    for path, text in ((md_path, "\n".join(md)), (html_path, html_text)):
        with atomic_file(path) as tmp:
            tmp.write_text(text)
    with atomic_file(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def paper_comparison(summary_csv, paper_csv, md_path, html_path, csv_path) -> pd.DataFrame:
    table = compare(ours_from_summary(pd.read_csv(summary_csv)), read_paper(paper_csv))
    write(table, md_path, html_path, csv_path)
    return table
