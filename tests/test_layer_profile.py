"""The layer-importance profile (issue 15 item 4): layer<i> cells, importance, halves, rank correlations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dropbench.plan import config_check, grid
from dropbench.report import layer_profile
from dropbench.prune import strategies
from dropbench.prune.profile_scores import layer_profile_scores


def test_layer_i_drops_only_layer_i_one_based():
    assert strategies.layers_to_drop("layer1", 6, 1) == [0]
    assert strategies.layers_to_drop("layer6", 6, 1) == [5]
    with pytest.raises(ValueError, match="k must be 1, got 2"):
        strategies.layers_to_drop("layer2", 6, 2)
    with pytest.raises(ValueError, match="layer7.*layers 1..6"):
        strategies.layers_to_drop("layer7", 6, 1)
    with pytest.raises(ValueError, match="unknown strategy 'layer0'"):
        strategies.layers_to_drop("layer0", 6, 1)
    assert not strategies.needs_data("layer3")


def _config(profile, num_layers=3):
    return {"models": {"m": {"num_layers": num_layers}, "ref": {"prune": False}}, "strategies": ["top"], "k": [2],
            "tasks": {"sst2": {}}, "seeds": [1, 2], "layer_profile": profile}


def test_the_profile_adds_one_k1_cell_per_layer_of_the_pruned_models_only():
    without = set(grid.cells(_config(False)))
    with_profile = set(grid.cells(_config(True)))
    added = with_profile - without
    assert without <= with_profile
    assert {(c.model, c.strategy, c.k) for c in added} == {("m", "layer1", 1), ("m", "layer2", 1), ("m", "layer3", 1)}
    assert len(added) == 3 * 2  # layers x seeds
    assert set(grid.cells(_config(["m"]))) == with_profile
    assert set(grid.cells(_config("true"))) == with_profile


def test_bad_profile_values_are_refused_naming_them():
    config = _config(["ref"])
    with pytest.raises(config_check.ConfigError, match="layer_profile.*'ref'.*prune: true \\(m\\)"):
        config_check._check_layer_profile(config)
    config = _config(True)
    del config["models"]["m"]["num_layers"]
    with pytest.raises(config_check.ConfigError, match="models.m.num_layers"):
        config_check._check_layer_profile(config)


def _summary(scores: dict) -> pd.DataFrame:
    """{(strategy, k, task, seed): value} -> summary rows of task_score."""
    return pd.DataFrame([{"model": "m", "strategy": s, "k": k, "task": t, "seed": seed, "metric": "task_score", "value": v}
                         for (s, k, t, seed), v in scores.items()])


# baseline 0.80 / 0.84 on two seeds; layer 1 costs 0.10 / 0.14, layer 2 0.02 / 0.04, layer 3 0.00 / -0.02,
# layer 4 0.01 / 0.01
HAND = {
    ("none", 0, "sst2", 1): 0.80, ("none", 0, "sst2", 2): 0.84,
    ("layer1", 1, "sst2", 1): 0.70, ("layer1", 1, "sst2", 2): 0.70,
    ("layer2", 1, "sst2", 1): 0.78, ("layer2", 1, "sst2", 2): 0.80,
    ("layer3", 1, "sst2", 1): 0.80, ("layer3", 1, "sst2", 2): 0.86,
    ("layer4", 1, "sst2", 1): 0.79, ("layer4", 1, "sst2", 2): 0.83,
    ("top", 1, "sst2", 1): 0.10,  # an ordinary strategy at k = 1 is not part of the profile
}


def test_importance_is_the_baseline_minus_the_cell_paired_by_seed_with_a_t_interval():
    per_seed = layer_profile.seed_importance(_summary(HAND))
    assert len(per_seed) == 8
    table = layer_profile.importance_table(per_seed, {"m": 4}, ["sst2"]).set_index("layer")
    assert table.loc[1, "importance"] == pytest.approx(0.12)
    assert table.loc[3, "importance"] == pytest.approx(-0.01)
    # two seeds: sd of (0.10, 0.14), t(0.975, 1) = 12.706
    half = 12.706 * np.std([0.10, 0.14], ddof=1) / math.sqrt(2)
    assert table.loc[1, "ci_low"] == pytest.approx(0.12 - half, abs=1e-4)
    assert table.loc[1, "ci_high"] == pytest.approx(0.12 + half, abs=1e-4)
    assert list(table["rank"]) == [1, 2, 4, 3]
    assert table.loc[1, "baseline_mean"] == pytest.approx(0.82)


def test_a_missing_cell_leaves_its_layer_empty_and_drops_its_seed_from_the_halves():
    scores = {key: value for key, value in HAND.items() if key != ("layer2", 1, "sst2", 2)}
    per_seed = layer_profile.seed_importance(_summary(scores))
    table = layer_profile.importance_table(per_seed, {"m": 4}, ["sst2"]).set_index("layer")
    assert table.loc[2, "n_seeds"] == 1 and math.isnan(table.loc[2, "ci_low"])
    halves = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2"])
    assert halves.iloc[0]["n_seeds"] == 1
    assert halves.iloc[0]["verdict"] == "no interval (1 seed)"


def test_lower_versus_upper_half_per_seed_with_verdict_and_ranking():
    per_seed = layer_profile.seed_importance(_summary(HAND))
    row = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2"]).iloc[0]
    # seed 1: (0.10 + 0.02)/2 - (0.00 + 0.01)/2 = 0.055; seed 2: (0.14 + 0.04)/2 - (-0.02 + 0.01)/2 = 0.095
    assert row["difference"] == pytest.approx(0.075)
    half = 12.706 * np.std([0.055, 0.095], ddof=1) / math.sqrt(2)
    assert row["ci_low"] == pytest.approx(0.075 - half, abs=1e-4)
    assert row["ci_low"] < 0 < row["ci_high"]  # two seeds: too wide to tell
    assert row["verdict"] == "not distinguishable (interval contains 0)"
    assert row["ranking"] == "1 > 2 > 4 > 3" and row["most_important"] == 1
    assert (row["lower_layers"], row["upper_layers"]) == ("1-2", "3-4")


def test_verdicts_and_halves_of_an_odd_depth():
    assert layer_profile.halves(5) == ([1, 2], [4, 5])
    assert layer_profile.halves(6) == ([1, 2, 3], [4, 5, 6])
    interval = {"n_seeds": 3, "ci_low": 0.01, "ci_high": 0.05}
    assert layer_profile.verdict(interval) == "lower half more critical"
    assert layer_profile.verdict({**interval, "ci_low": -0.05, "ci_high": -0.01}) == "upper half more critical"


def test_over_all_tasks_each_seed_averages_the_tasks_differences():
    scores = dict(HAND)
    for (s, k, _, seed), v in HAND.items():  # a second task where every layer costs the same: difference 0
        scores[(s, k, "stsb", seed)] = 0.5 if s == "none" else 0.4
    per_seed = layer_profile.seed_importance(_summary(scores))
    table = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2", "stsb"]).set_index("task")
    assert table.loc["stsb", "difference"] == pytest.approx(0.0)
    assert table.loc["all", "difference"] == pytest.approx(0.075 / 2)
    assert table.loc["all", "n_seeds"] == 2


def test_spearman_permutation_p_is_exact_for_small_n():
    x = [1, 2, 3, 4, 5, 6]
    result = layer_profile.spearman_permutation(x, x)
    assert result["rho"] == pytest.approx(1.0)
    assert result["p"] == pytest.approx(2 / 720)  # the identity and its reverse
    assert result["p_method"] == "exact (720 orderings)"
    y = [2, 1, 4, 3, 6, 5]
    rho = sps.spearmanr(x, y).statistic
    count = sum(abs(sps.spearmanr(x, perm).statistic) >= abs(rho) - 1e-12 for perm in itertools.permutations(y))
    result = layer_profile.spearman_permutation(x, y)
    assert result["rho"] == pytest.approx(rho)
    assert result["p"] == pytest.approx(count / 720)
    assert math.isnan(layer_profile.spearman_permutation(x, [1, 1, 1, 1, 1, 1])["rho"])


def test_spearman_permutation_for_twelve_layers_uses_seeded_random_orderings():
    x = np.arange(12.0)
    result = layer_profile.spearman_permutation(x, -x, resamples=2000)
    assert result["rho"] == pytest.approx(-1.0)
    assert result["p"] == pytest.approx(1 / 2001)  # no random ordering of 12 reaches |rho| = 1 in 2,000 draws
    y = [5, 1, 8, 2, 4, 11, 3, 7, 12, 6, 10, 9]  # rho 0.57, near the 5% level for n = 12
    noisy = layer_profile.spearman_permutation(x, y, resamples=20000)
    assert noisy["p_method"] == "permutation (20000 random orderings)"
    assert noisy["p"] == pytest.approx(sps.spearmanr(x, y).pvalue, abs=0.01)  # scipy's t approximation


def test_rank_correlations_per_task_and_score():
    per_seed = layer_profile.seed_importance(_summary(HAND))
    importance = layer_profile.importance_table(per_seed, {"m": 4}, ["sst2"])
    measured = importance.sort_values("layer")["importance"].tolist()  # 0.12, 0.03, -0.01, 0.01
    record = {"model": "m", "task": "sst2", "scores": {
        "contribution": [0.4, 0.3, 0.1, 0.2],  # same order as the importance
        "angular_distance": [0.1, 0.2, 0.4, 0.3],  # reversed
        "cls_block_influence": [0.4, 0.3, 0.2, 0.1],
        "mean_block_influence": [1.0, 1.0, 1.0, 1.0],  # constant: undefined
    }}
    table = layer_profile.rank_correlations(importance, [record]).set_index("score")
    assert table.loc["contribution", "spearman_rho"] == pytest.approx(1.0)
    assert table.loc["contribution", "kendall_tau"] == pytest.approx(1.0)
    assert table.loc["contribution", "spearman_p"] == pytest.approx(2 / 24)
    assert table.loc["angular_distance", "spearman_rho"] == pytest.approx(-1.0)
    assert table.loc["cls_block_influence", "spearman_rho"] == pytest.approx(sps.spearmanr([0.4, 0.3, 0.2, 0.1], measured).statistic)
    assert math.isnan(table.loc["mean_block_influence", "spearman_rho"])
    assert set(table["n_layers"]) == {4}


def test_cheap_scores_are_oriented_as_predicted_importance():
    similarity = np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.6], [0.5, 0.6, 1.0]])
    scores = layer_profile_scores(similarity, {"cls": np.array([0.8, 0.99]), "mean": np.array([0.95, 0.7])})
    assert scores["contribution"] == pytest.approx([0.1, 0.4])
    assert scores["angular_distance"] == pytest.approx([np.arccos(0.9) / np.pi, np.arccos(0.6) / np.pi])
    assert scores["cls_block_influence"] == pytest.approx([0.2, 0.01])
    assert scores["mean_block_influence"] == pytest.approx([0.05, 0.3])


def test_the_markdown_states_the_claim_per_model():
    per_seed = layer_profile.seed_importance(_summary(HAND))
    importance = layer_profile.importance_table(per_seed, {"m": 4}, ["sst2"])
    halves = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2"])
    tests = pd.DataFrame({"model": ["m"], "task": ["sst2"], "layer": [1], "p_adjusted": [0.004]})
    text = layer_profile.markdown(importance, halves, layer_profile.rank_correlations(importance, []), tests)
    assert "| 1 | +12.0 [" in text and "| 0.004 |" in text
    assert "**The paper's first claim (the lower layers are the most critical), m**: not distinguishable" in text
    assert "+7.5 [" in text


# ------------------------------------------------------------------ no conclusion from a full model at chance (issue 24 item 3)


def _with_statuses(scores: dict, baseline_status: str, baseline_at_chance: bool) -> pd.DataFrame:
    """HAND-like task_score and paper_score rows with the aggregate's status, chance and at_chance columns."""
    rows = _summary(scores)
    rows = pd.concat([rows, rows.assign(metric="paper_score")], ignore_index=True)
    base = rows["strategy"] == "none"
    return rows.assign(status=["ok" if not b else baseline_status for b in base], chance=0.5, layers_kept=4, parameters=1, latency_ms=1.0,
                       at_chance=[bool(b and baseline_at_chance) for b in base])


@pytest.mark.parametrize("status, at_chance, reason", [
    ("ok", True, "the full model scores at chance on sst2"),
    ("degenerate", False, "the full model is degenerate on sst2"),
])
def test_no_layer_is_ranked_and_no_claim_drawn_when_the_full_model_is_at_chance(status, at_chance, reason):
    tied = {key: 0.5 for key in HAND if key[0] != "top"}  # a full model at chance: every cell scores the same
    summary = _with_statuses(tied, status, at_chance)
    from dropbench.report import claims
    from dropbench.report import tables as report_tables

    # the same status the tables print as n/a (chance)
    assert report_tables.chance_table(summary, "m", ["sst2"])["at chance"].tolist() == ["yes" if at_chance else "no"]
    withheld = claims.withheld_tasks(summary, ["m"], ["sst2"])
    assert list(withheld) == [("m", "sst2")] and withheld[("m", "sst2")].startswith(reason)
    per_seed = layer_profile.seed_importance(summary)
    importance = layer_profile.importance_table(per_seed, {"m": 4}, ["sst2"], withheld)
    assert importance["rank"].isna().all()  # before: four layers tied at rank 1
    halves = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2"], withheld)
    assert halves["verdict"].tolist() == ["withheld"] and halves["ranking"].tolist() == [""]
    assert halves["most_important"].isna().all() and halves["withheld"].iloc[0].startswith(reason)
    records = [{"model": "m", "task": "sst2", "scores": {"contribution": [0.1, 0.4, 0.2, 0.3]}}]
    correlations = layer_profile.rank_correlations(importance, records, withheld)
    assert correlations["spearman_rho"].isna().all() and correlations["withheld"].iloc[0].startswith(reason)
    tests = pd.DataFrame(columns=["model", "task", "layer", "p_adjusted"])
    text = layer_profile.markdown(importance, halves, correlations, tests)
    assert "most important layer:" not in text
    assert f"**The paper's first claim (the lower layers are the most critical), m**: withheld: {reason}" in text
    assert f"Withheld for m on sst2: {reason}" in text and "| m | sst2 | contribution | 4 | withheld |" in text


def test_a_task_at_chance_is_left_out_of_the_verdict_over_all_tasks():
    scores = {key: value for key, value in HAND.items() if key[0] != "top"}
    scores.update({(s, k, "stsb", seed): 0.0 for (s, k, _, seed) in list(scores)})
    summary = _with_statuses(scores, "ok", False)
    summary.loc[(summary["strategy"] == "none") & (summary["task"] == "stsb"), "at_chance"] = True
    from dropbench.report import claims

    withheld = claims.withheld_tasks(summary, ["m"], ["sst2", "stsb"])
    assert list(withheld) == [("m", "stsb")]
    per_seed = layer_profile.seed_importance(summary)
    halves = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2", "stsb"], withheld).set_index("task")
    alone = layer_profile.lower_vs_upper(per_seed, {"m": 4}, ["sst2"]).set_index("task")
    assert halves.loc["all", "tasks"] == "sst2" and halves.loc["all", "difference"] == pytest.approx(alone.loc["sst2", "difference"])
    assert halves.loc["all", "most_important"] == 1 and halves.loc["stsb", "verdict"] == "withheld"
