"""Our scores beside the paper's (resources/paper/): for models the paper ran, its score beside our
mean and 95% interval over seeds; for every model, our percent of the unpruned score retained beside
the paper's for the same strategy and k (BERT-base, XLNet-base, RoBERTa-base where published).

The paper published most strategies only as ``avg7``, the mean over seven tasks, so our mean over the
run's tasks among those seven (two at least) is compared with it too; its ``task`` says which tasks it
averages (``avg7`` only when they are the same seven), ``paper_task`` what the paper's number is. Both
percentages are of averages (mean pruned / mean unpruned), as the paper's is.

Scores are x 100. ``ours`` has columns model, strategy, k, task, seed, value (0-1 scale), one metric
per task: the summary's ``paper_score`` rows if present, else PAPER_METRICS.

Where our full model is at chance or degenerate on a task (``dropbench.report.claims``, the statuses the
tables use), no percent retained is reported for it, nor a mean over tasks that includes it; the
report says which and why.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dropbench.report import claims, stats
from dropbench.runtime.atomic import atomic_file
from dropbench.plan.grid import BASELINE

PAPER_DIR = Path(__file__).resolve().parents[3] / "resources" / "paper"
# The metric the paper's tables show per task (resources/paper/README.md); STS-B's is not stated.
PAPER_METRICS = {
    "sst2": "accuracy", "mrpc": "accuracy", "rte": "accuracy", "qnli": "accuracy", "qqp": "accuracy",
    "mnli": "validation_matched_accuracy", "stsb": "pearson", "cola": "matthews_correlation",
}
RETAINED_REFERENCES = ("bert-base-uncased", "xlnet-base-cased", "roberta-base")
# The models whose percent retained stands in its own column beside ours (the paper's two 12-layer ones).
BESIDE = {"bert-base-uncased": "BERT-base", "xlnet-base-cased": "XLNet-base"}
# The paper's checkpoints: depth and the hub ids they go by. Our model of the same name is compared as the
# same model only when its depth matches; the hub id confirms it, a local or packaged copy cannot.
PAPER_CHECKPOINTS = {
    "bert-base-uncased": (12, {"bert-base-uncased", "google-bert/bert-base-uncased"}),
    "roberta-base": (12, {"roberta-base", "FacebookAI/roberta-base"}),
    "xlnet-base-cased": (12, {"xlnet-base-cased", "xlnet/xlnet-base-cased"}),
    "distilbert-base-uncased": (6, {"distilbert-base-uncased", "distilbert/distilbert-base-uncased"}),
    "distilroberta-base": (6, {"distilroberta-base", "distilbert/distilroberta-base"}),
}
PAPER_AVERAGE = "avg7"
PAPER_AVERAGE_TASKS = ("sst2", "mnli", "qnli", "qqp", "stsb", "rte", "mrpc")  # resources/paper/README.md
COLUMNS = [
    "kind", "model", "strategy", "k", "task", "n_seeds", "ours_mean", "ours_ci_low", "ours_ci_high",
    "paper_model", "paper_task", "paper", "difference", "paper_source", "paper_exact", "same_model",
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


def averaged(ours: pd.DataFrame) -> pd.DataFrame:
    """Per model, strategy, k and seed, the mean over the run's tasks among the paper's seven, for the
    cells that have every one of them; ``task`` names the average. Empty with fewer than two such tasks."""
    kept = ours[ours["task"].isin(PAPER_AVERAGE_TASKS)]
    tasks = [task for task in PAPER_AVERAGE_TASKS if task in set(kept["task"])]
    if len(tasks) < 2:
        return ours.iloc[0:0]
    label = PAPER_AVERAGE if len(tasks) == len(PAPER_AVERAGE_TASKS) else f"mean({', '.join(tasks)})"
    keys = ["model", "strategy", "k", "seed"]
    complete = kept.groupby(keys)["task"].transform("nunique") == len(tasks)
    means = kept[complete].groupby(keys, sort=False)["value"].mean().reset_index()
    return means.assign(task=label)[[*GROUP, "seed", "value"]]


def _paper_retained(paper: pd.DataFrame) -> pd.DataFrame:
    base = paper[paper["strategy"] == BASELINE][["model", "task", "score"]].rename(columns={"score": "base"})
    pruned = paper[paper["strategy"] != BASELINE].merge(base, on=["model", "task"])
    pruned["score"] = 100 * pruned["score"] / pruned["base"]
    return pruned.drop(columns="base")


def _references(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's percent retained per (paper_model, strategy, k, paper_task)."""
    references = _paper_retained(paper[paper["model"].isin(RETAINED_REFERENCES)])
    return references.rename(columns={"model": "paper_model", "task": "paper_task", "score": "paper",
                                      "source": "paper_source", "exact": "paper_exact"})


def _retained(ours: pd.DataFrame, withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Our percent retained per variant, per task and averaged, with intervals; ``paper_task`` is the
    paper's task it compares with. None for the (model, task) pairs in ``withheld``, nor a mean of a
    model over tasks that include one."""
    withheld = withheld or {}
    kept = ours[pd.Series([(model, task) not in withheld for model, task in zip(ours["model"], ours["task"])],
                          index=ours.index, dtype=bool)]  # a plain list would select columns when empty
    per_task = _intervals(_retained_per_seed(kept))
    means = averaged(ours)
    averaged_tasks = set(ours.loc[ours["task"].isin(PAPER_AVERAGE_TASKS), "task"])
    left_out = {model for model, task in withheld if task in averaged_tasks}
    mean = _intervals(_retained_per_seed(means[~means["model"].isin(left_out)]))
    return pd.concat([per_task.assign(paper_task=per_task["task"]), mean.assign(paper_task=PAPER_AVERAGE)],
                     ignore_index=True)


def same_models(depths: Mapping[str, int], sources: Mapping[str, dict]) -> tuple[dict[str, str], list[str]]:
    """Which of our models are the paper's checkpoint of the same name: {model: how we know} and, for those
    that only share the name, a note why they are not compared as the same model. ``depths``: each model's
    pretrained depth; ``sources``: each model's config source."""
    same, notes = {}, []
    for model, depth in depths.items():
        if model not in PAPER_CHECKPOINTS:
            continue
        paper_depth, hub_ids = PAPER_CHECKPOINTS[model]
        source = sources.get(model, {})
        where = f"hub {source.get('repo_id')}" if source.get("kind") == "hub" else f"a {source.get('kind', 'unknown')} source"
        if depth != paper_depth or (source.get("kind") == "hub" and source.get("repo_id") not in hub_ids):
            notes.append(f"Our `{model}` ({depth} layers, {where}) is not the paper's {model} ({paper_depth} layers, "
                         f"hub {' or '.join(sorted(hub_ids))}): its scores are not compared as the same model.")
        elif source.get("kind") == "hub":
            same[model] = f"yes (hub {source['repo_id']})"
        else:
            same[model] = f"name and depth ({where}: identity not verified)"
    return same, notes


def compare(ours: pd.DataFrame, paper: pd.DataFrame, withheld: Mapping[tuple[str, str], str] | None = None,
            same: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The tidy comparison: ``kind`` = ``score`` (same model, strategy, k, task) or ``percent_retained``
    (none for the pairs in ``withheld``, see ``_retained``). ``same`` (``same_models``): the models compared
    as the paper's checkpoint of their name, with how we know; None = every model of a paper name."""
    paper = paper.drop(columns="kind")
    paper_cols = {"score": "paper", "source": "paper_source", "exact": "paper_exact"}
    scaled = ours.assign(value=100 * ours["value"])
    scores = _intervals(pd.concat([scaled, averaged(scaled).query("task == @PAPER_AVERAGE")])).merge(paper, on=GROUP)
    if same is not None:
        scores = scores[scores["model"].isin(list(same))]
    scores = scores.assign(paper_model=scores["model"], paper_task=scores["task"]).rename(columns=paper_cols)
    scores["same_model"] = [(same or {}).get(model, "by name") for model in scores["model"]]
    scores["kind"] = "score"
    retained = _retained(ours, withheld).merge(_references(paper), on=["strategy", "k", "paper_task"])
    retained["kind"] = "percent_retained"
    table = pd.concat([scores, retained], ignore_index=True)
    table["difference"] = table["ours_mean"] - table["paper"]
    return table.reindex(columns=COLUMNS)


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, withheld: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Every pruned variant of ours, its percent retained beside BERT-base's and XLNet-base's at the same
    strategy, k and task (empty where the paper published none), one row each (none for ``withheld``)."""
    table = _retained(ours, withheld)
    if table.empty:
        return pd.DataFrame(columns=[*GROUP, "n_seeds", "ours_mean", "ours_ci_low", "ours_ci_high", "paper_task", *BESIDE.values()])
    references = _references(paper.drop(columns="kind"))
    for paper_model, column in BESIDE.items():
        published = references[references["paper_model"] == paper_model][["strategy", "k", "paper_task", "paper"]]
        table = table.merge(published.rename(columns={"paper": column}), on=["strategy", "k", "paper_task"], how="left")
    return table[table[list(BESIDE.values())].notna().any(axis=1) | (table["paper_task"] != PAPER_AVERAGE)]


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype(object)
    for column in ("ours_mean", "ours_ci_low", "ours_ci_high", "paper", "difference", *BESIDE.values()):
        if column in table:
            out[column] = [f"{v:.1f}" if pd.notna(v) else "" for v in table[column]]
    return out


INTRO = {
    "score": "Same model, strategy, k and task: the paper's dev score (x 100, one run) beside our mean "
             "and 95% t-interval over seeds (empty with one seed); difference = ours - paper.",
    "percent_retained": "Percent of the unpruned model's score retained at the same strategy and k: ours "
                        "(per seed, then mean and interval) beside the paper's for each model it published. "
                        "Where the paper published only avg7 (the mean over seven tasks), ours is the mean over "
                        "this run's tasks among those seven (task `mean(...)`): the same pruning, not the same tasks.",
}
BESIDE_INTRO = ("Every pruned variant of ours beside BERT-base's and XLNet-base's percent retained at the same "
                "strategy and k (the paper's v1; x 100): per task where the paper published the task, else its avg7 "
                "beside our mean over this run's tasks (paper_task). Empty: not published.")


def write(table: pd.DataFrame, md_path, html_path, csv_path, beside: pd.DataFrame | None = None,
          notes: list[str] | None = None) -> None:
    md, page = ["# Our scores beside the paper's (Sajjad et al., arXiv:2004.03844 v1)", ""], []
    for note in notes or []:
        md += [note, ""]
        page.append(f"<p>{html.escape(note)}</p>")
    # same_model says which of our models is the paper's checkpoint: a score row's question, not a percent's
    sections = [(kind.replace("_", " "), intro, table[table["kind"] == kind].drop(
                    columns=["kind"] + (["same_model"] if kind == "percent_retained" else [])))
                for kind, intro in INTRO.items()]
    if beside is not None:
        sections.insert(0, ("percent retained beside BERT-base and XLNet-base", BESIDE_INTRO, beside))
    for title, intro, rows in sections:
        part = _display(rows)
        md += [f"## {title}", "", intro, ""]
        md += [part.to_markdown(index=False, disable_numparse=True) if len(part) else "(nothing in common)", ""]
        page += [f"<h2>{html.escape(title)}</h2><p>{html.escape(intro)}</p>",
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


def paper_comparison(summary_csv, paper_csv, md_path, html_path, csv_path, sources: Mapping[str, dict]) -> pd.DataFrame:
    """``sources``: each model's config source (which of ours are the paper's checkpoints, ``same_models``)."""
    summary = pd.read_csv(summary_csv)
    ours, paper = ours_from_summary(summary), read_paper(paper_csv)
    withheld = claims.withheld_tasks(summary, pd.unique(summary["model"]), pd.unique(summary["task"]))
    notes = [f"No percent retained (nor a mean over tasks that includes it) for {model} on {task}: {reason}."
             for (model, task), reason in withheld.items()]
    depths = {}
    if "num_layers_pretrained" in summary:
        known = summary.dropna(subset=["num_layers_pretrained"]).groupby("model")["num_layers_pretrained"].first()
        depths = {model: int(depth) for model, depth in known.items()}
    same, identity_notes = same_models(depths, sources)
    notes += identity_notes
    notes.append(head_note(summary))
    table = compare(ours, paper, withheld, same)
    write(table, md_path, html_path, csv_path, beside=side_by_side(ours, paper, withheld), notes=notes)
    return table


def head_note(summary: pd.DataFrame) -> str:
    """Which classifier head each of our models was fine-tuned with, against the paper's protocol."""
    heads = summary.dropna(subset=["head"]).groupby("model", sort=False)["head"].agg(lambda h: ", ".join(sorted(set(h)))) \
        if "head" in summary else pd.Series(dtype=str)
    ours = "; ".join(f"{model}: {head}" for model, head in heads.items()) or "native (records without a head)"
    return (f"Classifier heads: {ours}. The paper fine-tuned each model with its own sequence-classification head "
            "(native: [CLS] + pooler for BERT, <s> for RoBERTa, the last token for XLNet); mean_pooling averages the "
            "last kept layer's tokens instead (README \"Classifier head and convergence\").")
