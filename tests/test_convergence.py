"""Convergence: the trivial predictor's loss, train and dev fit, the underfit flag, and how the summary and
the tables show it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_aggregate import metrics_record

from dropbench.report import aggregate
from dropbench.report import tables as report_tables
from dropbench.train import convergence


def test_trivial_loss_is_label_variance_or_prior_entropy():
    assert convergence.trivial_loss([1.0, 3.0, 5.0, 3.0], is_regression=True) == pytest.approx(2.0)
    assert convergence.trivial_loss([0, 1, 0, 1], is_regression=False) == pytest.approx(math.log(2))
    assert convergence.trivial_loss([2, 2, 2, 0], is_regression=False) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_trivial_predictor_reaches_exactly_the_trivial_loss():
    """The constant prediction of the mean (or the log prior as logits) scores the trivial loss on its own rows."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 5, 200)
    constant = np.full((200, 1), scores.mean())
    assert convergence.dev_loss(constant, scores, True) == pytest.approx(convergence.trivial_loss(scores, True))
    labels = rng.integers(0, 3, 300)
    prior = np.bincount(labels) / len(labels)
    logits = np.tile(np.log(prior), (300, 1))
    assert convergence.dev_loss(logits, labels, False) == pytest.approx(convergence.trivial_loss(labels, False))


def test_train_fit_uses_the_last_epoch_and_flags_underfit():
    labels = [0, 1] * 8  # trivial loss ln 2
    fitted = convergence.train_fit([0.7] * 10 + [0.1] * 4, 4, labels, False)
    assert fitted["train_loss"] == pytest.approx(0.1) and not fitted["underfit"]
    assert fitted["train_fit"] == pytest.approx(0.1 / math.log(2))
    stalled = convergence.train_fit([0.1] * 10 + [0.6] * 4, 4, labels, False)
    assert stalled["underfit"] and stalled["underfit_above"] == convergence.UNDERFIT_FIT
    assert convergence.train_fit([], 4, labels, False)["underfit"] is False  # nothing recorded: no claim


def test_threshold_is_strict():
    assert not convergence.is_underfit(convergence.UNDERFIT_FIT)
    assert convergence.is_underfit(convergence.UNDERFIT_FIT + 1e-9)


def test_cell_fit_adds_each_dev_split():
    block = convergence.train_fit([1.0] * 4, 4, [0.0, 2.0], True)  # trivial 1.0
    fit = convergence.cell_fit(block, {"validation_matched": 1.5, "validation_mismatched": 0.5})
    assert fit["dev"] == {"validation_matched": {"loss": 1.5, "fit": 1.5}, "validation_mismatched": {"loss": 0.5, "fit": 0.5}}
    assert convergence.cell_fit(None, {"validation": 1.0}) is None


def fit_block(train_fit, dev_fit=0.6):
    return {"train_loss": train_fit, "trivial_loss": 1.0, "train_fit": train_fit, "underfit": convergence.is_underfit(train_fit),
            "underfit_above": convergence.UNDERFIT_FIT, "dev": {"dev": {"loss": dev_fit, "fit": dev_fit}}}


def summary_with_fits(tmp_path, fits):
    """stsb cells none-k0 and top-k2 with seeds 1 and 2; ``fits``: (strategy, seed) -> train fit."""
    paths = []
    for (strategy, seed), train_fit in fits.items():
        record = metrics_record(strategy=strategy, k=0 if strategy == "none" else 2, task="stsb", seed=seed, score=0.8)
        record.update(head="mean_pooling", fit=fit_block(train_fit))
        path = tmp_path / f"{strategy}-{seed}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return aggregate.load_summary(paths)


def test_summary_and_tables_show_underfit_cells_and_the_head(tmp_path):
    summary = summary_with_fits(tmp_path, {("none", 1): 0.2, ("none", 2): 0.3, ("top", 1): 0.2, ("top", 2): 0.8})
    rows = summary[summary["metric"] == "task_score"].set_index(["strategy", "seed"])
    assert rows.loc[("top", 2), "underfit"] and not rows.loc[("top", 1), "underfit"]
    assert rows.loc[("none", 1), "train_fit"] == pytest.approx(0.2) and rows.loc[("none", 1), "dev_fit"] == pytest.approx(0.6)
    assert set(rows["head"]) == {"mean_pooling"}
    csv = tmp_path / "summary.csv"
    summary.to_csv(csv, index=False)
    summary = aggregate.read_summary(csv)
    out = {fmt: tmp_path / f"tiny.{fmt}" for fmt in ("md", "tex", "html")}
    report_tables.write_model_tables(summary, {"tiny": out}, notes={"tiny": "a tiny model"})
    text = out["md"].read_text()
    assert "a tiny model; classifier head: mean_pooling" in text
    top_line = next(line for line in text.splitlines() if line.startswith("| top"))
    assert aggregate.UNDERFIT_MARK in top_line
    none_line = next(line for line in text.splitlines() if line.startswith("| none"))
    assert aggregate.UNDERFIT_MARK not in none_line
    assert f"{aggregate.UNDERFIT_MARK} underfit:" in text
    assert "(1 of 2 underfit)" in text and "0.50 / 0.60" in text  # top-k2: mean train fit (0.2 + 0.8) / 2


def test_no_underfit_note_when_every_cell_fits(tmp_path):
    summary = summary_with_fits(tmp_path, {("none", 1): 0.2, ("top", 1): 0.4})
    out = {fmt: tmp_path / f"tiny.{fmt}" for fmt in ("md", "tex", "html")}
    report_tables.write_model_tables(summary, {"tiny": out})
    assert "underfit" not in out["md"].read_text().split("### Training fit")[0]


def test_records_without_fit_read_as_before(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(metrics_record()))
    summary = aggregate.load_summary([path])
    assert summary["underfit"].isna().all() and set(summary["head"]) == {"native"}
    assert report_tables.fit_table(summary, ["sst2"]) is None
    assert isinstance(aggregate.cell_means(summary.drop(columns=["underfit"])), pd.DataFrame)


def write_train_log(root, model, strategy, k, task, seed, losses, trivial):
    path = root / "results/cells" / model / f"{strategy}-k{k}" / task / f"seed{seed}" / "train_log.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"losses": losses, "fit": {"trivial_loss": trivial}}))
    return path


def test_loss_curves_are_relative_to_the_trivial_loss_and_averaged_over_seeds(tmp_path):
    from dropbench.report import training_plots

    logs = [write_train_log(tmp_path, "m", "top", 2, "stsb", 1, [2.0] * 20, 2.0),
            write_train_log(tmp_path, "m", "top", 2, "stsb", 2, [1.0] * 20, 2.0),
            write_train_log(tmp_path, "m", "none", 0, "stsb", 1, [4.0] * 10 + [0.2] * 10, 2.0)]
    old = tmp_path / "old/m/none-k0/sst2/seed1/train_log.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"losses": [0.5]}))  # written before fits were recorded: left out
    curves = training_plots.loss_curves([*logs, old])
    top = curves[curves["strategy"] == "top"]
    assert len(top) == 20 and np.allclose(top["fit"], 0.75) and set(top["seeds"]) == {2}
    full = curves[curves["strategy"] == "none"].set_index("step")["fit"]
    assert full[1] == pytest.approx(2.0) and full[20] == pytest.approx(0.1)  # window of 2 steps
    assert set(curves["task"]) == {"stsb"}
    out = {name: tmp_path / f"training_loss.{ext}" for name, ext in (("png", "png"), ("pdf", "pdf"), ("csv", "csv"))}
    training_plots.plot_training_loss(logs, out["png"], out["pdf"], out["csv"], {"dpi": 50, "panel_width": 3, "panel_height": 2})
    assert out["png"].stat().st_size > 0 and len(pd.read_csv(out["csv"])) == 40


def test_smoothing_is_a_trailing_mean():
    from dropbench.report.training_plots import smoothed

    assert list(smoothed(np.array([1.0, 3.0, 5.0, 7.0]), 2)) == [1.0, 2.0, 4.0, 6.0]


def test_score_figure_crosses_out_underfit_points(tmp_path):
    from dropbench.report import plots

    summary = summary_with_fits(tmp_path, {("none", 1): 0.2, ("top", 1): 0.8})
    _, data = plots.score_vs_dropped(aggregate.cell_means(summary), [], plots.check_style({}))
    flags = data.set_index("k")["underfit"]
    assert flags[2] and not flags[0]
