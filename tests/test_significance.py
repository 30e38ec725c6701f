"""results/stats.csv from a synthetic grid of predictions: intervals, paired tests, Holm, diverged runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dropbench import predictions, significance

N = 300


def build_grid(tmp_path, accuracy, seeds=(1, 2, 3), collapsed=()):
    """sst2 cells whose predictions are right on exactly (``accuracy`` + seed / 100) x N random examples; ``collapsed`` cells predict
    the majority class everywhere. Returns the prediction paths and the matching summary."""
    rng = np.random.default_rng(0)
    labels = (rng.random(N) < 0.6).astype(np.int64)  # majority class 1 at ~60%
    paths, rows = [], []
    for (strategy, k), acc in accuracy.items():
        for seed in seeds:
            right = rng.permutation(N) < round((acc + 0.01 * seed) * N)
            pred = np.ones(N, dtype=np.int64) if (strategy, k, seed) in collapsed else np.where(right, labels, 1 - labels)
            path = tmp_path / f"results/cells/tiny/{strategy}-k{k}/sst2/seed{seed}/predictions.npz"
            predictions.save(path, {"validation": (pred, labels)})
            paths.append(path)
            value = float(np.mean(pred == labels))
            for metric in ("accuracy", "task_score"):
                rows.append({"model": "tiny", "strategy": strategy, "k": k, "task": "sst2", "seed": seed,
                             "status": "ok", "metric": metric, "value": value})
    return paths, pd.DataFrame(rows)


def write(tmp_path, paths, summary):
    summary.to_csv(tmp_path / "summary.csv", index=False)
    return significance.write_stats(tmp_path / "summary.csv", paths, tmp_path / "stats.csv", tmp_path / "diverged.csv",
                                    resamples=500, alpha=0.05, seed=0)


def test_stats_table_intervals_tests_and_correction(tmp_path):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.6, ("bottom", 2): 0.9})
    write(tmp_path, paths, summary)
    table = pd.read_csv(tmp_path / "stats.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == significance.STATS_COLUMNS
    intervals = table[table["comparison"].isna()]
    assert len(intervals) == 3 * 2  # three variants x (accuracy, task_score)
    top = summary[(summary.strategy == "top") & (summary.metric == "accuracy")]["value"]
    row = intervals[(intervals.strategy == "top") & (intervals.metric == "accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(top.mean(), abs=1e-6) and row["n_seeds"] == 3
    assert row["ci_low"] < row["mean"] < row["ci_high"]

    tests = table[table["comparison"].notna()].set_index(["strategy", "comparison", "metric"])
    assert set(tests.index.droplevel("metric")) == {("top", "none-k0"), ("bottom", "none-k0"), ("top", "bottom-k2")}
    worse = tests.loc[("top", "none-k0", "accuracy")]
    assert worse["delta"] == pytest.approx(row["mean"] - intervals[(intervals.strategy == "none") & (intervals.metric == "accuracy")]["mean"].iloc[0], abs=1e-6)
    assert worse["delta"] < -0.2 and bool(worse["significant"]) and worse["n_paired_seeds"] == 3
    same = tests.loc[("bottom", "none-k0", "accuracy")]  # equal accuracy, different examples right
    assert same["delta"] == 0 and same["p_value"] == 1 and not bool(same["significant"])
    # Holm over the three accuracy tests: the smallest p is multiplied by 3
    accuracy = tests.xs("accuracy", level="metric")
    assert accuracy["p_adjusted"].min() == pytest.approx(min(1, 3 * accuracy["p_value"].min()), rel=1e-4)  # 6 digits in the CSV
    assert (accuracy["p_adjusted"] >= accuracy["p_value"]).all()


def test_a_collapsed_seed_is_flagged_diverged_and_counted(tmp_path):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.85}, collapsed={("top", 2, 2)})
    write(tmp_path, paths, summary)
    diverged = pd.read_csv(tmp_path / "diverged.csv")
    assert diverged[["strategy", "k", "seed"]].values.tolist() == [["top", 2, 2]]
    assert diverged["best_reference"].iloc[0] > diverged["task_score"].iloc[0] + 0.05
    table = pd.read_csv(tmp_path / "stats.csv", keep_default_na=False, na_values=[""])
    counts = significance.diverged_counts(table).set_index("strategy")["n_diverged"]
    assert counts.to_dict() == {"none": 0, "top": 1}


def test_cells_with_different_dev_labels_are_not_compared(tmp_path):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.8}, seeds=(1,))
    predictions.save(paths[-1], {"validation": (np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64))})
    with pytest.raises(ValueError, match="split validation has different dev rows or labels"):
        write(tmp_path, paths, summary)


def test_significance_marks_hook():
    table = pd.DataFrame([
        {"model": "m", "strategy": "top", "k": 2, "task": "sst2", "metric": "task_score", "comparison": "none-k0",
         "delta": -0.1, "p_adjusted": 0.01, "significant": True},
        {"model": "m", "strategy": "top", "k": 2, "task": "sst2", "metric": "task_score", "comparison": "bottom-k2",
         "delta": -0.1, "p_adjusted": 0.01, "significant": True},
    ])
    marks = significance.significance_marks(table)
    assert marks.to_dict("records") == [{"model": "m", "strategy": "top", "k": 2, "task": "sst2", "delta": -0.1,
                                         "p_adjusted": 0.01, "significant": True}]


def test_too_few_resamples_for_the_number_of_tests_is_warned(tmp_path, caplog):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.5, ("bottom", 2): 0.5}, seeds=(1,))
    runs = significance.load_runs(paths)
    table = significance.stats_table(summary, runs, significance.diverged_runs(runs), resamples=99, alpha=0.05)
    # 3 tests per metric: the smallest adjusted p is 3 / 100 < 0.05, so no warning, and top-2 is significant
    assert not caplog.records and table["significant"].any()
    table = significance.stats_table(summary, runs, significance.diverged_runs(runs), resamples=99, alpha=0.02)
    assert "set statistics.resamples above 150" in caplog.text
    assert not table["significant"].any()


def test_interval_figure_draws_the_table_numbers_and_marks(tmp_path):
    from dropbench import plots

    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.6, ("bottom", 2): 0.9})
    table = write(tmp_path, paths, summary)
    outputs = {"score_intervals": tmp_path / "f.png", "score_intervals_pdf": tmp_path / "f.pdf", "score_intervals_data": tmp_path / "f.csv"}
    plots.plot_score_intervals(tmp_path / "stats.csv", outputs, {"dpi": 40})
    drawn = pd.read_csv(tmp_path / "f.csv").set_index("strategy")
    scores = table[table["comparison"].eq("") & table["metric"].eq("task_score")].set_index("strategy")
    assert drawn["mean"].to_dict() == pytest.approx((100 * scores["mean"]).to_dict(), abs=1e-3)
    assert drawn["ci_high"].to_dict() == pytest.approx((100 * scores["ci_high"]).to_dict(), abs=1e-3)
    assert drawn["significant"].to_dict() == {"none": False, "top": True, "bottom": False}
    assert (tmp_path / "f.png").stat().st_size > 0


def test_a_grid_of_degenerate_cells_still_gets_intervals_and_tests(tmp_path):
    """A tiny model that predicts one class everywhere: status degenerate, accuracy still defined."""
    paths, summary = build_grid(tmp_path, {("none", 0): 0.6, ("top", 1): 0.6}, seeds=(1,), collapsed=[("none", 0, 1), ("top", 1, 1)])
    summary["status"] = "degenerate"
    write(tmp_path, paths, summary)
    table = pd.read_csv(tmp_path / "stats.csv", keep_default_na=False, na_values=[""])
    assert len(table[table["comparison"].isna()]) == 2 * 2 and table["n_seeds"].dropna().eq(1).all()
    test = table[(table["comparison"] == "none-k0") & (table["metric"] == "accuracy")].iloc[0]
    assert test["delta"] == 0 and test["p_value"] == 1


def test_interval_figure_of_a_grid_without_results_says_so(tmp_path):
    from dropbench import plots

    pd.DataFrame(columns=significance.STATS_COLUMNS).to_csv(tmp_path / "stats.csv", index=False)
    outputs = {"score_intervals": tmp_path / "f.png", "score_intervals_pdf": tmp_path / "f.pdf", "score_intervals_data": tmp_path / "f.csv"}
    plots.plot_score_intervals(tmp_path / "stats.csv", outputs, {"dpi": 40})
    assert (tmp_path / "f.png").stat().st_size > 0 and pd.read_csv(tmp_path / "f.csv").empty
