"""Figures and the numbers behind them, from synthetic summaries (no Snakemake)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_aggregate import grid, write_grid

from dropbench.report import plots
from dropbench.report.aggregate import cell_means, load_summary

FIGURES = ["score_vs_dropped", "retained_heatmap", "pareto"]


def figure_outputs(root, names):
    outputs = {}
    for name in names:
        outputs.update({name: str(root / f"{name}.png"), f"{name}_pdf": str(root / f"{name}.pdf"), f"{name}_data": str(root / f"{name}.csv")})
    return outputs


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A pruned 6-layer model with one missing cell, plus a 3-layer reference model (prune: false)."""
    root = tmp_path_factory.mktemp("plots")
    cells = grid(model="big", strategies=("top", "bottom"), ks=(2, 4)) + grid(model="small", strategies=())
    paths, expected = write_grid(
        root, cells, skip=[{"strategy": "bottom", "k": 4, "task": "stsb"}],
        big={"layers": 6, "latency_ms": 6.0}, small={"layers": 3, "latency_ms": 1.0},
        score=lambda cell: 0.9 - 0.05 * cell["k"] - (0.1 if cell["model"] == "small" else 0),
    )
    load_summary(paths, expected, latency_paths=sorted(root.glob("latency/*/*/any.json"))).to_csv(root / "summary.csv", index=False)
    outputs = figure_outputs(root, FIGURES)
    plots.plot_all(root / "summary.csv", outputs, {"dpi": 40}, reference_models=["small"])
    return root, {name: pd.read_csv(outputs[f"{name}_data"]) for name in FIGURES}


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_written_as_png_pdf_and_data(drawn, name):
    root, _ = drawn
    assert (root / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_score_vs_dropped_draws_missing_as_a_gap(drawn):
    _, data = drawn
    lines = data["score_vs_dropped"]
    assert set(lines["panel"]) == {"sst2", "stsb", "average"}
    gap = lines[lines["status"] == "missing"]
    assert gap[["panel", "model", "strategy", "k"]].values.tolist() == [["stsb", "big", "bottom", 4], ["average", "big", "bottom", 4]]
    assert gap["value"].isna().all() and (lines["value"].dropna() > 0).all()
    top = lines[(lines["panel"] == "sst2") & (lines["strategy"] == "top")]
    assert top[["k", "value"]].values.tolist() == [[0, pytest.approx(90.0)], [2, pytest.approx(80.0)], [4, pytest.approx(70.0)]]
    reference = lines[lines["model"] == "small"]
    assert reference["strategy"].unique().tolist() == ["none"] and len(reference) == 3


def test_heatmap_has_percent_retained_and_missing_as_nan(drawn):
    _, data = drawn
    heat = data["retained_heatmap"].set_index(["strategy", "k", "task"])["percent"]
    assert heat[("top", 2, "sst2")] == pytest.approx(100 * 0.8 / 0.9)
    assert math.isnan(heat[("bottom", 4, "stsb")]) and math.isnan(heat[("bottom", 4, "average")])
    assert set(data["retained_heatmap"]["model"]) == {"big"}  # the reference model has nothing pruned


def test_pareto_marks_full_and_reference_models_and_the_front(drawn):
    _, data = drawn
    points = data["pareto"].set_index(["model", "strategy", "k"])
    assert points.loc[("big", "none", 0), "kind"] == "full"
    assert points.loc[("small", "none", 0), "kind"] == "reference"
    assert points.loc[("big", "bottom", 4), "status"] == "missing"
    assert points.loc[("big", "none", 0), "front_parameters"]  # the best score
    assert not points.loc[("big", "bottom", 2), "front_parameters"]  # top k=2: same size, better score
    assert points.loc[("small", "none", 0), "front_latency_ms"]  # the fastest


def test_pareto_front_keeps_points_nothing_beats():
    cost = pd.Series([1.0, 2.0, 2.0, 3.0, 4.0])
    score = pd.Series([50.0, 60.0, 55.0, 58.0, 70.0])
    assert plots.pareto_front(cost, score).tolist() == [True, True, False, False, True]


def write_pruning(root, model, strategy, k, scope, scores, dropped):
    directory = root / "results" / "models" / model / "pruned" / f"{strategy}-k{k}" / scope
    directory.mkdir(parents=True)
    info = {"model": model, "scope": scope, "strategy": strategy, "k": k, "dropped": dropped, "scores": scores}
    (directory / "pruning.json").write_text(json.dumps(info))
    return directory


def test_layer_scores_read_from_prune_dirs(tmp_path):
    scores = [0.5, 0.9, 0.7, 0.95]
    dirs = [
        write_pruning(tmp_path, "tiny", "contribution", 2, "sst2", scores, [3, 1]),
        write_pruning(tmp_path, "tiny", "angular", 2, "sst2", scores, [2, 3]),
        write_pruning(tmp_path, "tiny", "contribution", 2, "stsb", [0.6, 0.8, 0.9, 0.7], [2, 1]),
    ]
    outputs = figure_outputs(tmp_path, ["layer_scores"])
    plots.plot_layer_scores(dirs, outputs, {"dpi": 40})
    data = pd.read_csv(outputs["layer_scores_data"])
    assert len(data) == 12
    contribution = data[(data["strategy"] == "contribution") & (data["scope"] == "sst2")]
    assert contribution["score"].tolist() == scores
    assert contribution.loc[contribution["dropped"], "layer"].tolist() == [1, 3]
    assert (tmp_path / "layer_scores.png").stat().st_size > 0


def test_layer_scores_come_from_the_json_not_the_directory_name(tmp_path):
    directory = write_pruning(tmp_path, "tiny", "contribution", 2, "sst2", [0.5, 0.9], [1])
    moved = directory.rename(tmp_path / "elsewhere")
    data = plots.read_layer_scores([moved])
    assert set(data["model"]) == {"tiny"} and set(data["scope"]) == {"sst2"}
    info = json.loads((moved / "pruning.json").read_text())
    del info["scope"]
    (moved / "pruning.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"pruning.json has no scope.*re-run its prune job"):
        plots.read_layer_scores([moved])


def test_layer_scores_without_data_driven_strategies_is_an_empty_figure(tmp_path):
    outputs = figure_outputs(tmp_path, ["layer_scores"])
    plots.plot_layer_scores([], outputs, {"dpi": 40})
    assert pd.read_csv(outputs["layer_scores_data"]).empty
    assert (tmp_path / "layer_scores.pdf").read_bytes()[:4] == b"%PDF"


def test_cell_means_do_not_count_missing_as_zero(tmp_path):
    paths, expected = write_grid(tmp_path, grid(strategies=("top",), tasks=("sst2",)), skip=[{"strategy": "top"}])
    means = cell_means(load_summary(paths, expected))
    assert means.set_index("strategy")["value"].isna().tolist() == [False, True]


def test_bad_style_names_the_value_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"plots.style.*'no-such-style'.*allowed: default, "):
        plots.check_style({"style": "no-such-style"})
    with pytest.raises(ValueError, match=r"plots.dpi.*0"):
        plots.check_style({"dpi": 0})
