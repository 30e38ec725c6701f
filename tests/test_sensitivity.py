"""The sensitivity report on a hand-built grid: scores per setting and which orderings hold where."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_aggregate import metrics_record

from dropbench.report import aggregate, sensitivity

# (setting, strategy, k) -> score; setting "cls" collapses when layers go, "mean" keeps the paper's ordering
SCORES = {("mean", "none", 0): 0.80, ("mean", "top", 2): 0.78, ("mean", "bottom", 2): 0.70,
          ("cls", "none", 0): 0.75, ("cls", "top", 2): 0.10, ("cls", "bottom", 2): 0.12}


@pytest.fixture
def summary_csv(tmp_path):
    paths = []
    for (model, strategy, k), score in SCORES.items():
        for seed in (1, 2):
            record = metrics_record(model=model, strategy=strategy, k=k, task="stsb", seed=seed, score=score + 0.01 * seed)
            record["fit"] = {"train_loss": 0.8, "trivial_loss": 1.0, "train_fit": 0.8 if model == "cls" and k else 0.2,
                             "underfit": bool(model == "cls" and k), "underfit_above": 0.5, "dev": {}}
            path = tmp_path / f"{model}-{strategy}-{seed}.json"
            path.write_text(json.dumps(record))
            paths.append(path)
    csv = tmp_path / "summary.csv"
    aggregate.load_summary(paths).to_csv(csv, index=False)
    return csv


def test_scores_per_setting_and_best(summary_csv, tmp_path):
    sensitivity.write_sensitivity(summary_csv, ["mean", "cls"], tmp_path / "out")
    scores = pd.read_csv(tmp_path / "out/sensitivity_scores.csv").set_index(["strategy", "k"])
    assert scores.loc[("top", 2), "mean"] == pytest.approx(79.5) and scores.loc[("top", 2), "cls"] == pytest.approx(11.5)
    assert scores.loc[("bottom", 2), sensitivity.BEST] == pytest.approx(71.5)
    assert scores.loc[("top", 2), "cls underfit"] and not scores.loc[("top", 2), "mean underfit"]


def test_claims_say_under_which_settings_they_hold(summary_csv, tmp_path):
    sensitivity.write_sensitivity(summary_csv, ["mean", "cls"], tmp_path / "out")
    claims = pd.read_csv(tmp_path / "out/sensitivity_claims.csv").set_index("claim")
    assert claims.loc["top-k2 above bottom-k2", "verdict"] == "holds only under mean; holds under the best per variant"
    assert claims.loc["top-k2 below full", "verdict"] == "holds under every setting"
    assert claims.loc["top-k2 above bottom-k2", "rests on underfit cells under"] == "cls"  # cls's pruned cells underfit
    text = (tmp_path / "out/sensitivity.md").read_text()
    assert "| top-k2 | 79.5 | 11.5° | 79.5 |" in text


def test_unknown_setting_is_refused_naming_the_models(summary_csv, tmp_path):
    with pytest.raises(ValueError, match=r"settings \['mpnet'\] are not models .* its models: \['cls', 'mean'\]"):
        sensitivity.write_sensitivity(summary_csv, ["mean", "mpnet"], tmp_path / "out")


def test_verdicts():
    settings = ["a", "b"]
    assert sensitivity.verdict({"a": None, "b": None, sensitivity.BEST: None}, settings) == "not run"
    assert sensitivity.verdict({"a": False, "b": False, sensitivity.BEST: False}, settings) == \
        "holds under no setting (nor under the best per variant)"
    assert sensitivity.verdict({"a": False, "b": True, sensitivity.BEST: False}, settings) == \
        "holds only under b; fails under the best per variant"


def test_a_setting_whose_full_model_is_at_chance_answers_nothing(tmp_path):
    paths = []
    for (model, strategy, k), score in SCORES.items():
        score = 0.02 if model == "cls" and strategy == "none" else score  # correlation at chance (< 0.1)
        record = metrics_record(model=model, strategy=strategy, k=k, task="stsb", seed=1, score=score)
        path = tmp_path / f"{model}-{strategy}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    csv = tmp_path / "summary.csv"
    aggregate.load_summary(paths).to_csv(csv, index=False)
    sensitivity.write_sensitivity(csv, ["mean", "cls"], tmp_path / "out")
    claims = pd.read_csv(tmp_path / "out/sensitivity_claims.csv").set_index("claim")
    assert claims["cls"].isna().all() and claims.loc["top-k2 above bottom-k2", "verdict"] == "holds under every setting (n/a under cls)"
    assert "Withheld for cls on stsb: the full model scores at chance" in (tmp_path / "out/sensitivity.md").read_text()


def test_learning_rate_candidates_are_settings_scored_on_held_out_rows(tmp_path, summary_csv):
    """reports/tuning.csv's candidates, per model: top above bottom only at the larger rate here."""
    rows = [("mean", "none", 0, 1e-4, 0.80), ("mean", "top", 2, 1e-4, 0.60), ("mean", "bottom", 2, 1e-4, 0.65),
            ("mean", "none", 0, 1e-3, 0.82), ("mean", "top", 2, 1e-3, 0.79), ("mean", "bottom", 2, 1e-3, 0.70)]
    tuning = pd.DataFrame([{"model": m, "strategy": s, "k": k, "task": "stsb", "learning_rate": lr, "held_out_score": score,
                            "chosen": False, "held_out_rows": 50, "seed": 0} for m, s, k, lr, score in rows])
    tuning.to_csv(tmp_path / "tuning.csv", index=False)
    out = tmp_path / "out"
    sensitivity.write_report(summary_csv, [], tmp_path / "tuning.csv", out / "s.md", out / "scores.csv", out / "claims.csv")
    scores = pd.read_csv(out / "scores.csv").set_index(["strategy", "k"])
    assert scores.loc[("top", 2), "lr 0.0001"] == pytest.approx(60.0) and scores.loc[("top", 2), sensitivity.BEST] == pytest.approx(79.0)
    assert set(scores["setting_kind"]) == {"learning rate"} and set(scores["model"]) == {"mean"}
    claims = pd.read_csv(out / "claims.csv").set_index("claim")
    assert claims.loc["top-k2 above bottom-k2", "verdict"] == "holds only under lr 0.001; holds under the best per variant"
    assert claims.loc["top-k2 below full", "verdict"] == "holds under every setting"
    text = (out / "s.md").read_text()
    assert "held out from the TRAIN split" in text and "| top-k2 | 60.0 | 79.0 | 79.0 |" in text
    assert sorted(p.name for p in out.iterdir()) == ["claims.csv", "s.md", "scores.csv"]  # no temporary left


def test_model_entries_and_candidates_in_one_report(tmp_path, summary_csv):
    tuning = pd.DataFrame([{"model": "mean", "strategy": "none", "k": 0, "task": "stsb", "learning_rate": 1e-4,
                            "held_out_score": 0.8, "chosen": True, "held_out_rows": 50, "seed": 0}])
    tuning.to_csv(tmp_path / "tuning.csv", index=False)
    sensitivity.write_sensitivity(summary_csv, ["mean", "cls"], tmp_path / "out", tmp_path / "tuning.csv")
    scores = pd.read_csv(tmp_path / "out/sensitivity_scores.csv")
    assert list(scores["setting_kind"].unique()) == ["model entry", "learning rate"]
    text = (tmp_path / "out/sensitivity.md").read_text()
    assert text.index("# Sensitivity: the same checkpoint") < text.index("# Sensitivity to the learning rate")


def test_the_command_wants_two_settings_or_tuning(summary_csv, tmp_path):
    with pytest.raises(SystemExit):
        sensitivity.main([str(summary_csv), "--settings", "mean", "--out", str(tmp_path)])
