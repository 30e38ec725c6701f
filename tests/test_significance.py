"""results/stats.csv from a synthetic grid of predictions: intervals, paired tests, Holm, diverged runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dropbench.evaluate import predictions
from dropbench.plan.cells import Cell
from dropbench.report import significance

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
    rows = table[table["comparison"].isna() & (table["metric"] == "task_score")]  # the tables' count
    counts = rows.set_index("strategy")["n_diverged"]
    assert counts.to_dict() == {"none": 0, "top": 1}


def test_cells_with_different_dev_labels_are_not_compared(tmp_path):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.8}, seeds=(1,))
    predictions.save(paths[-1], {"validation": (np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64))})
    with pytest.raises(ValueError, match="split validation has different dev rows or labels"):
        write(tmp_path, paths, summary)


def test_the_tables_and_the_interval_figure_mark_the_same_tests(tmp_path):
    """Issue 23 item 1: one reading of stats.csv's `significant` (report_tables.significant_tests) for the tables'
    marks against the full model and the interval figure's filled markers, on the file as written and read."""
    from dropbench.report import aggregate, interval_plots, plots
    from dropbench.report import tables as report_tables

    variants = [("none", 0), ("top", 1), ("bottom", 1), ("top", 2), ("bottom", 2)]
    rng = np.random.default_rng(5)
    rows = [{"model": "m", "strategy": s, "k": k, "task": "sst2", "metric": "task_score", "comparison": "",
             "n_seeds": 3, "mean": 0.8, "ci_low": 0.7, "ci_high": 0.9} for s, k in variants]
    for s, k in variants[1:]:
        rows.append({"model": "m", "strategy": s, "k": k, "task": "sst2", "metric": "task_score", "comparison": "none-k0",
                     "p_adjusted": 0.01, "significant": bool(rng.random() < 0.5)})
    rows.append({"model": "m", "strategy": "top", "k": 2, "task": "sst2", "metric": "task_score", "comparison": "bottom-k2",
                 "p_adjusted": 0.01, "significant": True})
    pd.DataFrame(rows).reindex(columns=significance.STATS_COLUMNS).to_csv(tmp_path / "stats.csv", index=False)
    import matplotlib.pyplot as plt

    written = pd.read_csv(tmp_path / "stats.csv", keep_default_na=False, na_values=[""])
    for read in (written, written.assign(significant=written["significant"].astype(str))):  # bools or their text
        fig, drawn = interval_plots.score_intervals(read, plots.check_style({"dpi": 40}))
        plt.close(fig)
        filled = {(r.strategy, int(r.k)) for r in drawn.itertuples() if r.significant}
        values = pd.DataFrame({"strategy": [s for s, _ in variants], "k": [k for _, k in variants], "sst2": 0.8})
        table = report_tables.significance_flags(report_tables.Table(values, values.copy()), read, "m", {"sst2": ("sst2", "task_score")})
        marked = {(s, k) for s, k, flag in zip(values["strategy"], values["k"], table.flags["sst2"])
                  if aggregate.VS_FULL_MARK in flag}
        assert marked == filled
        assert filled == {(r["strategy"], r["k"]) for r in rows if r["comparison"] == "none-k0" and r["significant"]}
        assert filled and filled != {v for v in variants[1:]}  # (the seed draws both kinds)


def test_too_few_resamples_for_the_number_of_tests_is_warned(tmp_path, caplog):
    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.5, ("bottom", 2): 0.5}, seeds=(1,))
    runs = significance.load_runs(paths)
    table = significance.stats_table(summary, runs, significance.diverged_runs(runs), resamples=99, alpha=0.05)
    # 3 tests per metric: the smallest adjusted p is 3 / 100 < 0.05, so no warning, and top-2 is significant
    # (records of other loggers, e.g. py.warnings when an earlier test in the process captured warnings, are not ours)
    assert not [r for r in caplog.records if r.name == significance.log.name] and table["significant"].any()
    table = significance.stats_table(summary, runs, significance.diverged_runs(runs), resamples=99, alpha=0.02)
    assert "set statistics.resamples above 150" in caplog.text
    assert not table["significant"].any()


def test_interval_figure_draws_the_table_numbers_and_marks(tmp_path):
    from dropbench.report import interval_plots

    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.6, ("bottom", 2): 0.9})
    table = write(tmp_path, paths, summary)
    outputs = {"score_intervals": tmp_path / "f.png", "score_intervals_pdf": tmp_path / "f.pdf", "score_intervals_data": tmp_path / "f.csv"}
    interval_plots.plot_score_intervals(tmp_path / "stats.csv", outputs, {"dpi": 40})
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
    from dropbench.report import interval_plots

    pd.DataFrame(columns=significance.STATS_COLUMNS).to_csv(tmp_path / "stats.csv", index=False)
    outputs = {"score_intervals": tmp_path / "f.png", "score_intervals_pdf": tmp_path / "f.pdf", "score_intervals_data": tmp_path / "f.csv"}
    interval_plots.plot_score_intervals(tmp_path / "stats.csv", outputs, {"dpi": 40})
    assert (tmp_path / "f.png").stat().st_size > 0 and pd.read_csv(tmp_path / "f.csv").empty


# ---- the per-model tables mark what stats.csv calls significant (rule tables)


def markdown_tables(text):
    """{section title: [row dicts]} of the pipe tables in a model's markdown."""
    tables, title, rows = {}, None, []
    for line in text.splitlines() + [""]:
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("|") and set(line) <= set("|:- "):
            continue  # the header's underline
        elif line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            tables[title] = [dict(zip(rows[0], row)) for row in rows[1:]]
            rows = []
    return tables


def test_a_table_score_is_marked_iff_stats_csv_calls_its_test_significant(tmp_path):
    from test_aggregate import grid, run_aggregate

    from dropbench.report import tables as report_tables

    cells = grid(strategies=("top", "bottom"), ks=(1, 2), tasks=("sst2", "stsb"))
    from test_aggregate import write_grid

    paths, expected = write_grid(tmp_path, cells)
    run_aggregate(tmp_path, paths, expected)
    rng = np.random.default_rng(3)
    groups = [("tiny", s, k, t) for s, k in [("none", 0), ("top", 1), ("bottom", 1), ("top", 2), ("bottom", 2)] for t in ("sst2", "stsb")]
    rows = []
    for variant, reference in significance.comparisons(groups):
        for metric in ("accuracy", "task_score") if variant[3] == "sst2" else ("pearson", "spearmanr", "task_score"):
            rows.append({**dict(zip(significance.GROUP, variant)), "metric": metric, "comparison": f"{reference[1]}-k{reference[2]}",
                         "p_adjusted": 0.01, "significant": bool(rng.random() < 0.5)})
    stats_table = pd.DataFrame(rows).reindex(columns=significance.STATS_COLUMNS)
    assert stats_table["significant"].any() and not stats_table["significant"].all()
    stats_table.to_csv(tmp_path / "stats.csv", index=False)
    paths_out = {"tiny": {fmt: str(tmp_path / "marked" / f"tiny.{fmt}") for fmt in ("md", "tex", "html")}}
    report_tables.tables(tmp_path / "summary.csv", tmp_path / "stats.csv", paths_out, alpha=0.05, resamples=500)

    def expected_mark(strategy, k, task, metric):
        tests = stats_table[(stats_table.task == task) & (stats_table.metric == metric) & stats_table.significant]
        full = ((tests.strategy == strategy) & (tests.k == k) & (tests.comparison == "none-k0")).any()
        other = (((tests.strategy == strategy) & (tests.k == k) & (tests.comparison != "none-k0"))
                 | ((tests.comparison == f"{strategy}-k{k}") & (strategy != "none"))).any()
        return ("\u2020" if full else "") + ("\u2021" if other else "")

    md = (tmp_path / "marked" / "tiny.md").read_text()
    tables = markdown_tables(md)
    checked = 0
    columns = {"Dev score x 100 (paper score per task)": {"sst2": ("sst2", "accuracy"), "stsb": ("stsb", "pearson")},
               "Every official metric x 100": {"sst2 accuracy": ("sst2", "accuracy"), "stsb pearson": ("stsb", "pearson"),
                                               "stsb spearmanr": ("stsb", "spearmanr")}}
    for title, tested in columns.items():
        for row in tables[title]:
            for column, (task, metric) in tested.items():
                text = row[column]
                mark = text.lstrip("0123456789.-")
                assert mark == expected_mark(row["strategy"], int(row["k"]), task, metric), (title, row, column)
                checked += 1
            assert not row["average"].endswith(("\u2020", "\u2021")) if "average" in row else True
    assert checked == 5 * 2 + 5 * 3
    assert "p_adjusted < 0.05" in md and "Holm" in md and "500 resamples" in md
    html = (tmp_path / "marked" / "tiny.html").read_text()
    assert html.count("\u2020") == md.count("\u2020")


# ---- retry_diverged: re-running diverged fine-tunes


def test_a_diverged_run_is_listed_for_a_retry_and_a_diverged_retry_for_the_next(tmp_path):
    from dropbench.report import retries

    paths, _ = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.85}, collapsed={("top", 2, 2)})
    first = retries.find_retries(paths, [], 1, tmp_path / "attempt1.csv")
    assert first.to_dict("records") == [{"model": "tiny", "strategy": "top", "k": 2, "task": "sst2", "seed": 2,
                                        "retry_seed": 1002, "first_seed": 2, "attempt": 1}]
    assert [c.dir for c in retries.retry_cells(retries.read_retries([tmp_path / "attempt1.csv"]))] == [
        "results/cells/tiny/top-k2/sst2/seed1002"]
    # the retry collapses again: attempt 2 re-runs it (and not the seed-2 run it replaced)
    labels = predictions.load(paths[0])["validation"]["label"]
    retry = tmp_path / "results/cells/tiny/top-k2/sst2/seed1002/predictions.npz"
    predictions.save(retry, {"validation": (np.ones(N, dtype=np.int64), labels)})
    second = retries.find_retries([*paths, retry], [tmp_path / "attempt1.csv"], 2, tmp_path / "attempt2.csv")
    assert second[["seed", "retry_seed", "first_seed", "attempt"]].values.tolist() == [[1002, 2002, 2, 2]]
    # a retry above chance: nothing more to re-run
    predictions.save(retry, {"validation": (labels, labels)})
    assert retries.find_retries([*paths, retry], [tmp_path / "attempt1.csv"], 2, tmp_path / "attempt2.csv").empty


def test_a_retried_run_stays_in_the_summary_but_out_of_means_intervals_and_tests(tmp_path):
    from dropbench.report import retries

    paths, summary = build_grid(tmp_path, {("none", 0): 0.9, ("top", 2): 0.85}, collapsed={("top", 2, 2)})
    found = retries.find_retries(paths, [], 1, tmp_path / "attempt1.csv")
    labels = predictions.load(paths[0])["validation"]["label"]
    retry = tmp_path / "results/cells/tiny/top-k2/sst2/seed1002/predictions.npz"
    predictions.save(retry, {"validation": (labels, labels)})  # the retry gets every example right
    retry_rows = [{"model": "tiny", "strategy": "top", "k": 2, "task": "sst2", "seed": 1002, "status": "ok",
                   "metric": metric, "value": 1.0, "retry_of": 2} for metric in ("accuracy", "task_score")]
    summary["retry_of"] = pd.NA
    summary = pd.concat([summary, pd.DataFrame(retry_rows)], ignore_index=True)
    summary.loc[(summary.strategy == "top") & (summary.seed == 2), "status"] = "retried"
    table = write(tmp_path, [*paths, retry], summary)
    assert len(found) == 1
    top = table[(table.strategy == "top") & (table.metric == "accuracy")]
    kept = summary[(summary.strategy == "top") & (summary.metric == "accuracy") & (summary.status == "ok")]["value"]
    interval = top[top.comparison == ""].iloc[0]
    assert interval["n_seeds"] == 3 and interval["mean"] == pytest.approx(kept.mean()) and interval["n_diverged"] == 1
    test = top[top.comparison == "none-k0"].iloc[0]
    assert test["n_paired_seeds"] == 3  # the retry is paired with the baseline's seed 2
    runs = significance.tested_runs(significance.load_runs([*paths, retry]), summary)
    assert Cell("tiny", "top", 2, "sst2", 2) in runs and all(cell.seed < 1000 for cell in runs)
    assert (runs[Cell("tiny", "top", 2, "sst2", 2)]["validation"]["prediction"] == labels).all()


def test_the_summary_and_tables_count_a_retried_run_once_and_say_so(tmp_path):
    from test_aggregate import grid, table_paths, write_grid

    from dropbench.report import aggregate
    from dropbench.report import tables as report_tables

    cells = grid(strategies=("top",), ks=(2,), tasks=("sst2",), seeds=(1, 2))
    retry = dict(model="tiny", strategy="top", k=2, task="sst2", seed=1002)
    score = {1: 0.8, 2: 0.5, 1002: 0.7}
    paths, _ = write_grid(tmp_path, [*cells, retry], score=lambda cell: score[cell["seed"]] if cell["strategy"] == "top" else 0.9)
    pd.DataFrame([{"model": "tiny", "strategy": "top", "k": 2, "task": "sst2", "seed": 2, "retry_seed": 1002,
                   "first_seed": 2, "attempt": 1}]).to_csv(tmp_path / "attempt1.csv", index=False)
    summary = aggregate.aggregate(paths, tmp_path / "summary.csv", tmp_path / "seeds.csv", tmp_path / "missing.csv",
                                  tmp_path / "missing.html", expected=cells, retry_paths=[tmp_path / "attempt1.csv"])
    rows = aggregate.read_summary(tmp_path / "summary.csv").query("metric == 'task_score' and strategy == 'top'")
    assert rows.set_index("seed")["status"].to_dict() == {1: "ok", 2: "retried", 1002: "ok"}
    assert rows.set_index("seed")["retry_of"].isna().to_dict() == {1: True, 2: True, 1002: False}
    assert int(rows.set_index("seed").loc[1002, "retry_of"]) == 2
    assert aggregate.missing_count(summary) == (0, 4) and pd.read_csv(tmp_path / "missing.csv").empty
    means = aggregate.cell_means(summary).set_index("strategy")
    assert means.loc["top", "value"] == pytest.approx(0.75) and means.loc["top", "seeds"] == 2
    report_tables.write_model_tables(summary, table_paths(tmp_path, "tiny"), retry_diverged=1)
    md = (tmp_path / "tables" / "tiny.md").read_text()
    retried = markdown_tables(md)["Diverged runs re-run with another seed"]
    assert [(r["strategy"], r["k"], r["sst2"]) for r in retried] == [("none", "0", "0"), ("top", "2", "1")]
    assert "retry_diverged: 1" in md and "only the retry counts in the means" in md
    assert markdown_tables(md)["Dev score x 100 (paper score per task)"][1]["sst2"] == "75.0"
    report_tables.write_model_tables(summary, table_paths(tmp_path, "tiny"))  # retry_diverged 0: no such table
    assert "re-run" not in (tmp_path / "tables" / "tiny.md").read_text()
