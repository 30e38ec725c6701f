"""The oracle report (dropbench.report.oracle) on a hand-built grid: a 4-layer model whose layer losses add up,
every subset at k = 1 and 2, and the heuristics top and bottom."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from test_aggregate import metrics_record

from dropbench.report import aggregate, oracle
from dropbench.prune import strategy_names

LOSS = {1: 0.20, 2: 0.10, 3: 0.04, 4: 0.01}  # what dropping each layer (1-based) costs; the lowest most
FULL = 0.90
SEEDS = (1, 2, 3)


def record(strategy, k, dropped, seed, task="sst2", score=None):
    score = score if score is not None else FULL - sum(LOSS[layer] for layer in dropped) + 0.002 * seed
    rec = metrics_record(model="m", strategy=strategy, k=k, task=task, seed=seed, score=score, layers=4)
    rec["dropped_layers"] = [layer - 1 for layer in dropped]
    rec["kept_layers"] = [i for i in range(4) if i + 1 not in dropped]
    return rec


@pytest.fixture
def summary(tmp_path):
    records = [record("none", 0, (), seed) for seed in SEEDS]
    for k in (1, 2):
        for dropped in itertools.combinations(range(1, 5), k):
            records += [record(strategy_names.subset_name(dropped), k, dropped, seed) for seed in SEEDS]
    records += [record("top", 2, (3, 4), seed) for seed in SEEDS]
    records += [record("bottom", 2, (1, 2), seed) for seed in SEEDS]
    paths = []
    for i, rec in enumerate(records):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(rec))
    aggregate.load_summary(paths).to_csv(tmp_path / "summary.csv", index=False)
    return aggregate.read_summary(tmp_path / "summary.csv")


def test_subsets_ranked_with_the_best_on_dev_marked(summary):
    subsets, _, _, notes = oracle.oracle_tables(summary)
    k2 = subsets[(subsets["k"] == 2)].set_index("strategy")
    assert len(k2) == 6 and notes == []
    assert k2.loc["drop_3_4", "best_on_dev"] and k2["best_on_dev"].sum() == 1
    assert k2.loc["drop_3_4", "rank"] == 1 and k2.loc["drop_1_2", "rank"] == 6
    assert k2.loc["drop_3_4", "mean"] == pytest.approx(100 * (FULL - 0.05 + 0.004))
    assert k2.loc["drop_1_4", "dropped"] == "1 4"
    assert k2.loc["drop_3_4", "ci_low"] < k2.loc["drop_3_4", "mean"] < k2.loc["drop_3_4", "ci_high"]


def test_heuristics_placed_among_the_subsets_with_their_gap(summary):
    tests = pd.DataFrame([{"model": "m", "task": "sst2", "k": 2, "metric": "task_score", "strategy": "drop_3_4",
                           "comparison": "bottom-k2", "p_adjusted": 0.004}])
    _, heuristics, _, _ = oracle.oracle_tables(summary, tests)
    rows = heuristics.set_index("strategy")
    assert rows.loc["top", "same_as"] == "drop_3_4" and rows.loc["top", "rank"] == 1 and rows.loc["top", "of"] == 6
    assert rows.loc["top", "gap_to_best_on_dev"] == pytest.approx(0.0) and rows.loc["top", "at_least_as_good_as"] == 1.0
    assert rows.loc["bottom", "rank"] == 6 and rows.loc["bottom", "at_least_as_good_as"] == pytest.approx(1 / 6)
    assert rows.loc["bottom", "gap_to_best_on_dev"] == pytest.approx(100 * -(0.30 - 0.05))
    assert rows.loc["bottom", "gap_seeds"] == 3 and rows.loc["bottom", "p_adjusted"] == 0.004
    assert np.isnan(rows.loc["top", "p_adjusted"])  # no test in stats.csv for that pair here


def test_additive_layer_effects_correlate_perfectly(summary):
    _, _, additivity, _ = oracle.oracle_tables(summary)
    row = additivity.set_index("k").loc[2]
    assert row["subsets"] == 6 and row["spearman"] == pytest.approx(1.0)


def test_no_oracle_from_a_full_model_at_chance(summary):
    at_chance = summary.copy()
    base = (at_chance["strategy"] == "none")
    at_chance.loc[base, "at_chance"] = True
    subsets, heuristics, additivity, notes = oracle.oracle_tables(at_chance)
    assert subsets.empty and heuristics.empty and additivity.empty
    assert len(notes) == 1 and "at chance on sst2" in notes[0]


def test_the_report_files(summary, tmp_path):
    summary.to_csv(tmp_path / "s.csv", index=False)
    out = {name: tmp_path / name for name in ("o.md", "sub.csv", "heu.csv", "add.csv", "o.png", "o.pdf", "o_fig.csv")}
    oracle.write_oracle(tmp_path / "s.csv", None, *out.values())
    text = out["o.md"].read_text()
    assert "## m, sst2, k = 2: 6 subsets" in text and "Best on dev (optimistic): `drop_3_4`" in text
    assert "| top | 3 4 |" in text and "Spearman 1.00" in text
    assert out["o.png"].read_bytes()[:4] == b"\x89PNG"
    assert set(pd.read_csv(out["o_fig.csv"])["kind"]) == {"subset", "heuristic"}


def held_out_frame(prefer: str = "drop_2_4"):
    """Held-out scores of every subset and seed: dev order, except that ``prefer`` scores best at each k = 2."""
    rows = []
    for k in (1, 2):
        for dropped in itertools.combinations(range(1, 5), k):
            name = strategy_names.subset_name(dropped)
            for seed in SEEDS:
                score = 100 * (FULL - sum(LOSS[layer] for layer in dropped)) + (50 if name == prefer else 0)
                rows.append({"model": "m", "strategy": name, "k": k, "task": "sst2", "seed": seed, "held_out": score})
    return pd.DataFrame(rows)


def test_the_honest_oracle_is_chosen_on_held_out_rows_and_scored_on_dev(summary):
    """Issue 25 items 1 and 4: the subset with the best held-out score, whatever dev says; the heuristics'
    gap to it; withheld, with the reason, where a subset lacks held-out scores."""
    tests = pd.DataFrame([{"model": "m", "task": "sst2", "k": 2, "metric": "task_score", "strategy": "top",
                           "comparison": "drop_2_4-k2", "p_adjusted": 0.03}])
    subsets, heuristics, _, notes = oracle.oracle_tables(summary, tests, held_out_frame())
    k2 = subsets[subsets["k"] == 2].set_index("strategy")
    assert k2["chosen_on_held_out"].sum() == 1 and k2.loc["drop_2_4", "chosen_on_held_out"]
    assert k2.loc["drop_3_4", "best_on_dev"] and k2.loc["drop_2_4", "rank"] > 1  # chosen honestly, not the best on dev
    top = heuristics.set_index("strategy").loc["top"]
    assert top["chosen_on_held_out"] == "drop_2_4" and top["p_adjusted_chosen"] == 0.03
    assert top["gap_to_chosen"] == pytest.approx(100 * ((FULL - 0.05) - (FULL - 0.11)))  # top beats the honest choice
    assert notes == []
    text = oracle.markdown(subsets, heuristics, pd.DataFrame(columns=oracle.ADDITIVITY_COLUMNS), notes)
    assert "Chosen on held-out (honest oracle): `drop_2_4`" in text

    partial = held_out_frame()
    partial = partial[partial["strategy"] != "drop_1_3"]
    subsets, heuristics, _, notes = oracle.oracle_tables(summary, tests, partial)
    assert not subsets.loc[subsets["k"] == 2, "chosen_on_held_out"].any()
    assert np.isnan(heuristics.set_index("strategy").loc["top", "gap_to_chosen"])
    assert any("no honest oracle for m, sst2, k = 2: 1 of 6 subsets" in note and "drop_1_3" in note for note in notes)
    assert "No cell has scores on held-out" in oracle.markdown(*oracle.oracle_tables(summary)[0:3], [])


def test_held_out_scores_are_read_from_the_records(tmp_path):
    with_rows = record("top", 2, (3, 4), 1)
    with_rows["held_out"] = {"metrics": {"accuracy": 0.5}, "task_score": 0.5, "rows": 10}
    (tmp_path / "a.json").write_text(json.dumps(with_rows))
    (tmp_path / "b.json").write_text(json.dumps(record("top", 2, (3, 4), 2)))  # evaluated without held-out rows
    scores = oracle.held_out_scores([tmp_path / "a.json", tmp_path / "b.json"])
    assert scores.to_dict("records") == [{"model": "m", "strategy": "top", "k": 2, "task": "sst2", "seed": 1, "held_out": 50.0}]


def test_the_greedy_steps_are_placed_beside_the_honest_oracle(summary):
    """Each step of a greedy search: its choice, whether its candidates were the grid's subset cells, and whether
    it chose the honest oracle's subset of that k (k = 1 and 2 here: every subset of both is in the grid)."""
    subsets, heuristics, additivity, notes = oracle.oracle_tables(summary, None, held_out_frame())
    steps = [{"model": "m", "task": "sst2", "seed": 1, "step": 1, "chosen": "layer4", "held_out_task_score": 0.89,
              "candidates": [{"strategy": f"layer{i}"} for i in range(1, 5)]},
             {"model": "m", "task": "sst2", "seed": 1, "step": 2, "chosen": "drop_3_4", "held_out_task_score": 0.85,
              "candidates": [{"strategy": s} for s in ("drop_1_4", "drop_2_4", "drop_3_4")]}]
    text = oracle.markdown(subsets, heuristics, additivity, notes, steps)
    assert "## Greedy search: m, sst2 (seed 1, chosen on held-out train rows)" in text
    assert "| 1 | `layer4` | 89.0 | 4 | yes: the candidates are its cells | `layer4` (the same subset) |" in text
    assert "| 2 | `drop_3_4` | 85.0 | 3 | yes: the candidates are its cells | `drop_2_4` (another subset) |" in text
    no_k2 = subsets[subsets["k"] == 1]
    assert "| 2 | `drop_3_4` | 85.0 | 3 | no: trained for the search |  |" in oracle.markdown(no_k2, heuristics, additivity, notes, steps)


def test_a_cls_threshold_cell_stands_at_the_k_it_produced(tmp_path):
    """Its cells have k = 0 (the rule decides k); it dropped layers 3 and 4, so it is ranked among the k = 2 subsets."""
    name = strategy_names.cls_threshold_name(0.95)
    records = [record("none", 0, (), seed) for seed in SEEDS]
    for dropped in itertools.combinations(range(1, 5), 2):
        records += [record(strategy_names.subset_name(dropped), 2, dropped, seed) for seed in SEEDS]
    records += [record(name, 0, (3, 4), seed) for seed in SEEDS]
    for i, rec in enumerate(records):
        (tmp_path / f"{i}.json").write_text(json.dumps(rec))
    summary = aggregate.load_summary(sorted(tmp_path.glob("*.json")))
    heuristics = oracle.oracle_tables(summary)[1].set_index("strategy")
    assert heuristics.loc[name, "k"] == 2 and heuristics.loc[name, "same_as"] == "drop_3_4"
    assert heuristics.loc[name, "rank"] == 1 and heuristics.loc[name, "of"] == 6


def test_heuristic_labels_share_a_score_and_never_overlap():
    marks = pd.DataFrame({"strategy": ["top", "symmetric", "contribution", "bottom"], "mean": [76.1, 72.7, 72.7, 72.69]})
    placed = oracle.label_positions(marks, gap=0.2)
    assert [label for _, label in placed] == ["bottom", "symmetric, contribution", "top"]
    assert placed[0][0] == 72.69 and placed[1][0] == pytest.approx(72.89) and placed[2][0] == 76.1
