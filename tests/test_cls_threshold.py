"""The paper's contribution rule (issue 15 item 3): drop the layers whose [CLS] vector changes least,
i.e. whose [CLS] cosine similarity before and after the layer is above a threshold; k follows."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoConfig, AutoModel

from dropbench.report import plots
from dropbench.report import tables as report_tables
from dropbench.plan import config_check, grid, job_params
from dropbench.prune import step as prune, strategies, strategy_names
from dropbench.prune.layer_scores import classification_position, classification_vectors, layer_similarities
from dropbench.prune.strategies import layers_to_drop, select_above_threshold

SCORING = {"sample_size": 4, "seed": 0, "batch_size": 2}


def cls_matrix(per_layer):
    """A depth x depth [CLS] similarity matrix with ``per_layer[l]`` at [l, l+1]."""
    sim = np.eye(len(per_layer) + 1)
    for layer, score in enumerate(per_layer):
        sim[layer, layer + 1] = sim[layer + 1, layer] = score
    return sim


# layers 3 and 5 (1-based) above 0.95, every other layer below it
PAPER_EXAMPLE = [0.90, 0.80, 0.97, 0.93, 0.96, 0.85, 0.70, 0.94, 0.91, 0.88, 0.60, 0.50]


def test_the_papers_example_drops_layers_3_and_5():
    drop = layers_to_drop("cls_above_950", 12, 0, {"cls_similarity": cls_matrix(PAPER_EXAMPLE)})
    assert [layer + 1 for layer in drop] == [3, 5]


def test_a_lower_threshold_drops_more_layers():
    context = {"cls_similarity": cls_matrix(PAPER_EXAMPLE)}
    assert layers_to_drop("cls_above_925", 12, 0, context) == [2, 3, 4, 7]
    assert layers_to_drop("cls_above_900", 12, 0, context) == [2, 3, 4, 7, 8]


def test_no_layer_above_the_threshold_drops_nothing():
    assert layers_to_drop("cls_above_950", 12, 0, {"cls_similarity": cls_matrix([0.5] * 12)}) == []


def test_a_score_equal_to_the_threshold_is_not_above_it():
    assert select_above_threshold([0.95, 0.96, 0.94], 0.95) == [1]


def test_every_layer_above_the_threshold_keeps_the_one_that_changes_cls_most():
    assert select_above_threshold([0.99, 0.97, 0.98, 0.991], 0.9) == [0, 2, 3]
    assert select_above_threshold([0.97, 0.99, 0.97], 0.9) == [1, 2]  # a tie keeps the lower layer
    assert layers_to_drop("cls_above_900", 4, 0, {"cls_similarity": cls_matrix([0.99, 0.97, 0.98, 0.991])}) == [0, 2, 3]


def test_the_rule_reads_the_cls_similarity_not_the_all_token_one():
    context = {"similarity": cls_matrix([0.99] * 4), "cls_similarity": cls_matrix([0.5, 0.99, 0.5, 0.5])}
    assert layers_to_drop("cls_above_950", 4, 0, context) == [1]
    with pytest.raises(ValueError, match="cls_similarity"):
        layers_to_drop("cls_above_950", 4, 0, {"similarity": cls_matrix([0.99] * 4)})


def test_a_threshold_strategy_decides_k_itself():
    assert strategies.decides_k("cls_above_950") and strategies.needs_data("cls_above_950")
    assert not strategies.decides_k("contribution")
    with pytest.raises(ValueError, match="its k must be 0, got 2"):
        layers_to_drop("cls_above_950", 12, 2, {"cls_similarity": cls_matrix(PAPER_EXAMPLE)})


@pytest.mark.parametrize("threshold, name", [(0.95, "cls_above_950"), (0.925, "cls_above_925"), (0.9, "cls_above_900"),
                                             (0.001, "cls_above_001")])
def test_names_carry_the_threshold_in_thousandths(threshold, name):
    assert strategy_names.cls_threshold_name(threshold) == name
    assert strategy_names.cls_threshold_of(name) == threshold
    assert strategy_names.cls_threshold_of("top") is None and strategy_names.cls_threshold_of("cls_above_95") is None


@pytest.mark.parametrize("bad", [0.9501, 1, 1.2, 0, -0.5, "0.9", True])
def test_a_bad_threshold_is_refused(bad):
    with pytest.raises(ValueError, match="0 < t < 1 with at most 3 decimals"):
        strategy_names.cls_threshold_name(bad)


# ---------------------------------------------------------------- which token is [CLS]


def test_the_classification_token_is_found_on_either_padding_side():
    states = torch.arange(2 * 2 * 4, dtype=torch.float).reshape(2, 2, 4, 1)  # (depths, batch, tokens, hidden)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert classification_vectors(states, right, "first")[0, :, 0].tolist() == [0, 4]
    assert classification_vectors(states, left, "first")[0, :, 0].tolist() == [1, 6]
    assert classification_vectors(states, left, "last")[0, :, 0].tolist() == [3, 7]
    assert classification_vectors(states, right, "last")[1, :, 0].tolist() == [10, 13]
    with pytest.raises(ValueError, match="allowed: first, last"):
        classification_vectors(states, right, "middle")


def test_xlnet_reads_its_cls_at_the_end_and_every_other_model_at_the_start():
    assert classification_position(AutoConfig.for_model("xlnet")) == "last"
    assert classification_position(AutoConfig.for_model("bert")) == "first"
    assert classification_position(AutoConfig.for_model("roberta")) == "first"


def test_xlnet_cls_similarity_does_not_depend_on_left_padding():
    torch.manual_seed(0)
    config = AutoConfig.for_model("xlnet", vocab_size=100, d_model=32, n_head=2, d_inner=37, n_layer=3)
    model = AutoModel.from_config(config).eval()
    short, long = torch.tensor([[7, 8, 9, 4]]), torch.tensor([[11, 12, 13, 14, 15, 4]])
    padded = torch.cat([torch.tensor([[5, 5]]), short], dim=1)  # left-padded, as XLNet's tokenizer pads
    together = {"input_ids": torch.cat([padded, long]), "attention_mask": torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])}
    alone = [{"input_ids": short, "attention_mask": torch.ones_like(short)}, {"input_ids": long, "attention_mask": torch.ones_like(long)}]
    found = layer_similarities(model, [together])["cls"]
    np.testing.assert_allclose(found, layer_similarities(model, alone)["cls"], atol=1e-5)

    def by_hand(position):  # mean cosine of the rows' vectors at `position` between depths 0 and 1
        with torch.no_grad():
            vectors = [torch.stack(model(**row, output_hidden_states=True).hidden_states)[:, 0, position] for row in alone]
        return np.mean([torch.nn.functional.cosine_similarity(v[0], v[1], dim=0).item() for v in vectors])

    assert found[0, 1] == pytest.approx(by_hand(-1), abs=1e-5)
    assert found[0, 1] != pytest.approx(by_hand(0), abs=1e-3)


# ---------------------------------------------------------------- grid, config, params


def grid_config(**extra):
    return {
        "models": {"a": {"source": {}}, "ref": {"source": {}, "prune": False}},
        "strategies": ["top"], "k": [2], "tasks": {"sst2": {}}, "seeds": [1], **extra,
    }


def test_thresholds_add_k0_cells_to_pruned_models_only():
    cells = grid.cells(grid_config(cls_thresholds=[0.95, 0.9]))
    assert sorted(c.variant for c in cells if c.model == "a") == ["cls_above_900-k0", "cls_above_950-k0", "none-k0", "top-k2"]
    assert [c.variant for c in cells if c.model == "ref"] == ["none-k0"]
    assert grid.cells(grid_config()) == [c for c in cells if not c.strategy.startswith("cls_above_")]
    assert config_check.data_driven(grid_config(cls_thresholds=[0.95])) == ["cls_above_950"]


def test_a_threshold_strategy_listed_under_strategies_points_to_cls_thresholds():
    config = {**grid_config(), "strategies": ["cls_above_950"], "scoring": {"seed": 0}}
    with pytest.raises(config_check.ConfigError, match=r"'strategies'.*cls_thresholds: \[0.95\]"):
        config_check._check_grid(config)


@pytest.mark.parametrize("bad", [[1.5], [0.95, 0.95], [0.12345]])
def test_bad_cls_thresholds_name_the_key(bad):
    with pytest.raises(config_check.ConfigError, match="cls_thresholds"):
        config_check._check_grid({**grid_config(cls_thresholds=bad), "scoring": {"seed": 0}})


def test_the_default_scoring_split_keeps_the_params_of_existing_prunes():
    before = job_params.prune_params("contribution", 2, 6, SCORING)
    assert job_params.prune_params("contribution", 2, 6, {**SCORING, "split": "train"}) == before
    assert job_params.prune_params("contribution", 2, 6, {**SCORING, "split": "dev"}) != before
    threshold = job_params.prune_params("cls_above_950", 0, 6, {**SCORING, "split": "train"})
    assert threshold["scoring"] == SCORING and threshold["k"] == 0


def test_scoring_split_names_the_features_split():
    assert prune.scoring_split("sst2", "train") == "train"
    assert prune.scoring_split("sst2", "dev") == "validation"
    assert prune.scoring_split("mnli", "dev") == "validation_matched"
    with pytest.raises(ValueError, match="'scoring.split': bad value 'test'; allowed: train, dev"):
        prune.scoring_split("sst2", "test")


# ---------------------------------------------------------------- prune records


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("cls") / "tiny")


@pytest.mark.parametrize("scores, dropped", [([0.5, 0.99, 0.5, 0.97], [1, 3]), ([0.5] * 4, []), ([0.99] * 4, [1, 2, 3])])
def test_prune_records_the_threshold_and_the_k_that_resulted(checkpoint, tmp_path, scores, dropped):
    context = {"similarity": cls_matrix([0.1] * 4), "cls_similarity": cls_matrix(scores), "scored_on": "validation"}
    info = prune.prune_checkpoint(checkpoint, tmp_path / "out", "cls_above_950", 0, context)
    assert info["dropped"] == dropped and info["k"] == len(dropped) and info["num_layers_after"] == 4 - len(dropped)
    assert info["threshold"] == 0.95 and info["score_kind"] == "cls" and info["scored_on"] == "validation"
    assert info["scores"] == info["cls_scores"] == pytest.approx(scores)
    assert json.loads((tmp_path / "out" / "pruning.json").read_text()) == info
    assert len(AutoModel.from_pretrained(tmp_path / "out").encoder.layer) == 4 - len(dropped)


def test_contribution_keeps_its_all_token_scores_and_adds_the_cls_ones(checkpoint, tmp_path):
    context = {"similarity": cls_matrix([0.1, 0.2, 0.3, 0.4]), "cls_similarity": cls_matrix([0.5] * 4)}
    info = prune.prune_checkpoint(checkpoint, tmp_path / "out", "contribution", 1, context)
    assert info["scores"] == pytest.approx([0.1, 0.2, 0.3, 0.4]) and info["score_kind"] == "all_tokens"
    assert info["cls_scores"] == pytest.approx([0.5] * 4) and info["scored_on"] == "train" and "threshold" not in info


def test_the_tables_explain_threshold_rows_and_mark_dev_scoring():
    rows = pd.DataFrame({"strategy": ["none", "cls_above_950", "contribution"], "scored_on": [None, "validation", "train"]})
    notes = report_tables.scoring_footnotes(rows)
    assert len(notes) == 2 and notes[0].startswith("cls_above_950: the paper's rule")
    assert notes[1].startswith("scored on dev: cls_above_950 chose")
    assert report_tables.scoring_footnotes(rows.assign(scored_on="train")) == notes[:1]


def test_the_score_figure_draws_threshold_cells_at_the_k_that_resulted():
    means = pd.DataFrame({
        "model": ["m"] * 4, "strategy": ["none", "top", "cls_above_950", "cls_above_900"], "k": [0, 2, 0, 0],
        "task": ["sst2"] * 4, "value": [0.9, 0.8, 0.85, None], "status": ["ok", "ok", "ok", "missing"],
        "layers_kept": pd.array([12, 10, 9, None], dtype="Int64"),
    })
    assert plots.threshold_cells_at_their_k(means)["k"].tolist() == [0, 2, 3, 0]
    fig, drawn = plots.score_vs_dropped(means, [], plots.DEFAULT_STYLE)
    plots.plt.close(fig)
    line = drawn[drawn["strategy"] == "cls_above_950"]
    assert list(zip(line["k"], line["value"])) == [(0, pytest.approx(90)), (3, pytest.approx(85))]  # from the baseline
