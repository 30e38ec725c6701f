"""The paper's numbers beside ours: shipped with their hashes, merged on the right keys, retained by hand."""

from __future__ import annotations

import hashlib
import re

import pandas as pd
import pytest

from dropbench.report import paper_comparison as pc


def test_shipped_paper_files_match_their_readme_hashes():
    readme = (pc.PAPER_DIR / "README.md").read_text()
    for name in ("published_scores.csv", "published_speed.csv"):
        recorded = re.search(rf"`{name}` \| `([0-9a-f]{{64}})`", readme).group(1)
        assert hashlib.sha256((pc.PAPER_DIR / name).read_bytes()).hexdigest() == recorded
    paper = pc.read_paper()
    assert paper.loc[(paper.model == "bert-base-uncased") & (paper.strategy == "none") & (paper.task == "sst2"), "score"].item() == 92.43


def ours_frame(rows):
    return pd.DataFrame(rows, columns=["model", "strategy", "k", "task", "seed", "value"])


def paper_frame(rows):
    return pd.DataFrame(rows, columns=["model", "strategy", "k", "task", "score", "kind", "source", "exact"])


PAPER = paper_frame(
    [
        ("bert-base-uncased", "none", 0, "sst2", 92.0, "task", "T1", "yes"),
        ("bert-base-uncased", "top", 2, "sst2", 90.0, "task", "T1", "yes"),
        ("xlnet-base-cased", "none", 0, "sst2", 94.0, "task", "T1", "yes"),
        ("xlnet-base-cased", "top", 2, "sst2", 94.0, "task", "T1", "yes"),
        # strategies published only as the mean over seven tasks
        ("bert-base-uncased", "none", 0, "avg7", 80.0, "average", "F2", "no"),
        ("bert-base-uncased", "bottom", 2, "avg7", 76.0, "average", "F2", "no"),
        ("xlnet-base-cased", "none", 0, "avg7", 80.0, "average", "F2", "no"),
        ("xlnet-base-cased", "bottom", 2, "avg7", 72.0, "average", "F2", "no"),
    ]
)


def test_same_model_scores_side_by_side_with_interval_and_difference():
    ours = ours_frame([
        ("bert-base-uncased", "top", 2, "sst2", 1, 0.88),
        ("bert-base-uncased", "top", 2, "sst2", 2, 0.90),
        ("bert-base-uncased", "top", 2, "sst2", 3, 0.92),
        ("bert-base-uncased", "top", 4, "sst2", 1, 0.80),  # the paper has no top-4 on sst2 here: left out
    ])
    table = pc.compare(ours, PAPER)
    scores = table[table.kind == "score"]
    assert len(scores) == 1
    row = scores.iloc[0]
    assert (row.paper, row.ours_mean, row.n_seeds) == (90.0, pytest.approx(90.0), 3)
    # sd 2, t(0.975, 2) = 4.302653: half width 4.969 points
    assert (row.ours_ci_low, row.ours_ci_high) == (pytest.approx(85.031, abs=1e-3), pytest.approx(94.969, abs=1e-3))
    assert row.difference == pytest.approx(0.0) and row.paper_source == "T1"


def test_percent_retained_of_a_model_the_paper_did_not_run():
    ours = ours_frame([
        ("mpnet", "none", 0, "sst2", 1, 0.80), ("mpnet", "top", 2, "sst2", 1, 0.76),
        ("mpnet", "none", 0, "sst2", 2, 0.90), ("mpnet", "top", 2, "sst2", 2, 0.90),
    ])
    retained = pc.compare(ours, PAPER).query("kind == 'percent_retained'").set_index("paper_model")
    # per seed: 95% and 100%; the paper: BERT 90/92, XLNet 100%
    assert retained.loc["bert-base-uncased", "ours_mean"] == pytest.approx(97.5)
    assert retained.loc["bert-base-uncased", "paper"] == pytest.approx(100 * 90 / 92)
    assert retained.loc["xlnet-base-cased", "difference"] == pytest.approx(-2.5)
    assert set(retained["model"]) == {"mpnet"} and set(retained["strategy"]) == {"top"}


def test_ours_uses_paper_score_rows_when_the_summary_has_them():
    base = {"model": "m", "strategy": "none", "k": 0, "seed": 1, "status": "ok"}
    summary = pd.DataFrame([
        {**base, "task": "mnli", "metric": "validation_matched_accuracy", "value": 0.8},
        {**base, "task": "mnli", "metric": "validation_mismatched_accuracy", "value": 0.7},
        {**base, "task": "stsb", "metric": "pearson", "value": 0.6},
        {**base, "task": "stsb", "metric": "spearmanr", "value": 0.5},
    ])
    assert pc.ours_from_summary(summary)["value"].tolist() == [0.8, 0.6]
    with_paper_score = pd.concat([summary, pd.DataFrame([{**base, "task": "stsb", "metric": "paper_score", "value": 0.55}])])
    assert pc.ours_from_summary(with_paper_score)["value"].tolist() == [0.55]


def test_written_files_hold_both_parts(tmp_path):
    ours = ours_frame([("bert-base-uncased", "none", 0, "sst2", 1, 0.9), ("bert-base-uncased", "top", 2, "sst2", 1, 0.85)])
    table = pc.compare(ours, PAPER)
    pc.write(table, tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.csv")
    md = (tmp_path / "c.md").read_text()
    assert "## score" in md and "## percent retained" in md and "92.4" not in md and "nan" not in md
    assert "<h2>percent retained</h2>" in (tmp_path / "c.html").read_text()
    back = pd.read_csv(tmp_path / "c.csv")
    assert list(back.columns) == pc.COLUMNS and len(back) == len(table) == 2 + 2


def two_task_run():
    rows = []
    for seed, (base_sst2, base_stsb) in ((1, (0.90, 0.70)), (2, (0.80, 0.80))):
        rows += [("mpnet", "none", 0, "sst2", seed, base_sst2), ("mpnet", "none", 0, "stsb", seed, base_stsb)]
        rows += [("mpnet", "bottom", 2, "sst2", seed, base_sst2 - 0.08), ("mpnet", "bottom", 2, "stsb", seed, base_stsb)]
        rows += [("mpnet", "top", 2, "sst2", seed, base_sst2), ("mpnet", "angular", 2, "sst2", seed, 0.5)]
    return ours_frame(rows)


def test_strategies_the_paper_published_only_as_avg7_compare_with_our_mean_over_tasks():
    table = pc.compare(two_task_run(), PAPER)
    averaged = table[(table.kind == "percent_retained") & (table.paper_task == "avg7")].set_index("paper_model")
    assert set(averaged["task"]) == {"mean(sst2, stsb)"} and set(averaged["strategy"]) == {"bottom"}
    # per seed, mean pruned / mean unpruned: (0.82 + 0.70) / 1.60 = 95.0%, (0.72 + 0.80) / 1.60 = 95.0%
    assert averaged.loc["bert-base-uncased", "ours_mean"] == pytest.approx(95.0)
    assert averaged.loc["bert-base-uncased", "paper"] == pytest.approx(95.0)
    assert averaged.loc["xlnet-base-cased", "difference"] == pytest.approx(95.0 - 90.0)
    # top and angular lack stsb, so they have no mean over the run's tasks
    assert not ((table.strategy == "top") & table.task.str.startswith("mean")).any()
    # our own two-task mean is not the paper's avg7: no same-model "score" row for it
    assert not ((table.kind == "score") & (table.task != table.paper_task)).any()


def test_side_by_side_puts_bert_and_xlnet_beside_every_pruned_variant():
    beside = pc.side_by_side(two_task_run(), PAPER)
    top = beside[(beside.strategy == "top") & (beside.task == "sst2")].iloc[0]
    assert top["BERT-base"] == pytest.approx(100 * 90 / 92) and top["XLNet-base"] == pytest.approx(100.0)
    bottom_mean = beside[(beside.strategy == "bottom") & (beside.task == "mean(sst2, stsb)")].iloc[0]
    assert (bottom_mean["paper_task"], bottom_mean["BERT-base"], bottom_mean["XLNet-base"]) == ("avg7", 95.0, 90.0)
    # a strategy the paper never ran is listed per task with nothing beside it
    angular = beside[beside.strategy == "angular"]
    assert len(angular) == 1 and angular[["BERT-base", "XLNet-base"]].isna().all(axis=None)
    assert not (beside.strategy == "none").any()


def test_written_files_start_with_the_side_by_side_table(tmp_path):
    ours, paper = two_task_run(), PAPER
    pc.write(pc.compare(ours, paper), tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.csv", beside=pc.side_by_side(ours, paper))
    md = (tmp_path / "c.md").read_text()
    assert md.index("## percent retained beside BERT-base and XLNet-base") < md.index("## score")
    assert "| mpnet   | bottom     | 2   | mean(sst2, stsb)" in md


def test_no_percent_retained_from_a_full_model_at_chance(tmp_path):
    """Issue 24 item 3: the tables print n/a (chance) for this baseline; the comparison drew percents from it."""
    rows = []
    for (model, strategy, k, task, seed, value) in two_task_run().itertuples(index=False):
        at_chance = strategy == "none" and task == "stsb"
        rows += [{"model": model, "strategy": strategy, "k": k, "task": task, "seed": seed, "metric": metric, "value": value,
                  "status": "ok", "chance": 0.0, "at_chance": at_chance} for metric in ("paper_score", "task_score")]
    summary_csv = tmp_path / "summary.csv"
    pd.DataFrame(rows).to_csv(summary_csv, index=False)
    paper_csv = tmp_path / "paper.csv"
    PAPER.to_csv(paper_csv, index=False)
    table = pc.paper_comparison(summary_csv, paper_csv, tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.csv", sources={})
    retained = table[table["kind"] == "percent_retained"]
    assert set(retained["task"]) == {"sst2"}  # neither stsb nor the mean over sst2 and stsb
    md = (tmp_path / "c.md").read_text()
    assert "No percent retained (nor a mean over tasks that includes it) for mpnet on stsb: the full model scores at chance on stsb" in md
    assert "n/a (chance)" in md and "mean(sst2, stsb)" not in md


def test_the_heads_of_our_models_are_named_beside_the_papers_protocol():
    from dropbench.report.paper_comparison import head_note

    summary = pd.DataFrame({"model": ["a", "a", "b"], "head": ["mean_pooling", "mean_pooling", "native"]})
    assert head_note(summary).startswith("Classifier heads: a: mean_pooling; b: native. The paper fine-tuned")
    assert "native (records without a head)" in head_note(pd.DataFrame({"model": ["a"]}))


def test_a_model_named_like_the_papers_is_the_same_model_only_at_its_depth_and_hub_id(tmp_path):
    """Issue 24 item 5: a 4-layer model named bert-base-uncased was shown beside the paper's 12-layer BERT-base."""
    ours = ours_frame([("bert-base-uncased", "top", 2, "sst2", 1, 0.88), ("bert-base-uncased", "none", 0, "sst2", 1, 0.9)])
    hub = {"kind": "hub", "repo_id": "google-bert/bert-base-uncased"}
    same, notes = pc.same_models({"bert-base-uncased": 4}, {"bert-base-uncased": {"kind": "local"}})
    assert same == {} and notes == ["Our `bert-base-uncased` (4 layers, a local source) is not the paper's bert-base-uncased "
                                    "(12 layers, hub bert-base-uncased or google-bert/bert-base-uncased): its scores are "
                                    "not compared as the same model."]
    table = pc.compare(ours, PAPER, same=same)
    assert table[table.kind == "score"].empty and not table[table.kind == "percent_retained"].empty
    same, notes = pc.same_models({"bert-base-uncased": 12}, {"bert-base-uncased": hub})
    assert same == {"bert-base-uncased": "yes (hub google-bert/bert-base-uncased)"} and notes == []
    scores = pc.compare(ours, PAPER, same=same).query("kind == 'score'")
    assert set(scores["same_model"]) == {"yes (hub google-bert/bert-base-uncased)"} and len(scores) == 2
    same, _ = pc.same_models({"bert-base-uncased": 12}, {"bert-base-uncased": {"kind": "local"}})
    assert same == {"bert-base-uncased": "name and depth (a local source: identity not verified)"}
    same, notes = pc.same_models({"bert-base-uncased": 12}, {"bert-base-uncased": {"kind": "hub", "repo_id": "me/bert-base-uncased"}})
    assert same == {} and "hub me/bert-base-uncased" in notes[0]
    assert pc.same_models({"mpnet": 12}, {"mpnet": hub}) == ({}, [])
