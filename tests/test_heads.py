"""The classifier head setting: every architecture pools right with either head, saves and reloads without
custom code for the encoder, prunes, and a mean-pooling fine-tune resumes bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_architectures import LAYERED, TINY, tiny_model
from test_padding import LENGTHS, assert_each_row_gets_its_logits_alone, logits, ragged_rows, tokenizer_padding_side
from test_train import Crash, crash_at_step, inputs, run  # noqa: F401 (fixture)
from transformers import AutoModel

from dropbench.evaluate import evaluation
from dropbench.train import heads
from dropbench.prune import layer_drop
from dropbench.train.loop import TrainConfig

CFG = TrainConfig(learning_rate=1e-3, batch_size=8, epochs=2, seed=3, checkpoint_minutes=3, head=heads.MEAN_POOLING)


def mean_pooling_model(model_type, num_labels=2, problem_type="single_label_classification"):
    torch.manual_seed(0)
    return heads.MeanPoolingClassifier(tiny_model(model_type, auto=AutoModel), num_labels, problem_type).eval()


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_mean_pooling_gives_each_row_its_logits_alone(model_type):
    assert_each_row_gets_its_logits_alone(mean_pooling_model(model_type), model_type)


def test_mean_pooling_is_the_masked_mean_of_the_last_layer():
    model = mean_pooling_model("bert")
    split = ragged_rows("right")
    batch = split.batch(np.arange(len(LENGTHS)), 0)
    with torch.no_grad():
        hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        expected = torch.stack([hidden[i, :n].mean(0) for i, n in enumerate(LENGTHS)]) @ model.classifier.weight.T
        expected += model.classifier.bias
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # a padded position must not count: a [CLS]-style head would not differ, the mean does
    assert not torch.allclose(hidden[1].mean(0), hidden[1, : LENGTHS[1]].mean(0), atol=1e-4)


@pytest.mark.parametrize("model_type", sorted(TINY))
@pytest.mark.parametrize("problem_type, num_labels", [("regression", 1), ("single_label_classification", 3)])
def test_saved_mean_pooling_cell_reloads_with_a_plain_encoder_and_the_head_file(model_type, problem_type, num_labels, tmp_path):
    model = mean_pooling_model(model_type, num_labels, problem_type)
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", heads.HEAD_WEIGHTS, heads.HEAD_INFO}
    assert set(load_file(str(tmp_path / heads.HEAD_WEIGHTS))) == {"weight", "bias"}
    assert json.loads((tmp_path / heads.HEAD_INFO).read_text())["head"] == heads.MEAN_POOLING
    AutoModel.from_pretrained(tmp_path, use_safetensors=True, trust_remote_code=False)  # the encoder alone, no custom code
    assert heads.saved_head(tmp_path) == heads.MEAN_POOLING
    reloaded = heads.load_classifier(tmp_path).eval()
    split = ragged_rows(tokenizer_padding_side(model_type))
    torch.testing.assert_close(logits(reloaded, split, range(len(LENGTHS))), logits(model, split, range(len(LENGTHS))),
                               atol=0, rtol=0)
    with pytest.raises(ValueError, match="a head for"):
        heads.build(tmp_path, heads.MEAN_POOLING, num_labels + 1, problem_type)


def test_native_cell_loads_as_before(tmp_path):
    model = tiny_model("bert")
    model.save_pretrained(tmp_path)
    assert heads.saved_head(tmp_path) == heads.NATIVE
    assert type(heads.load_classifier(tmp_path)) is type(model)


@pytest.mark.parametrize("model_type", LAYERED)
def test_mean_pooling_model_prunes_like_a_task_model(model_type):
    model = mean_pooling_model(model_type)
    before = layer_drop.num_layers(model.config)
    layer_drop.drop_layers(model, [0])
    assert layer_drop.num_layers(model.config) == before - 1
    split = ragged_rows(tokenizer_padding_side(model_type))
    assert logits(model, split, [0]).shape == (1, 2)


def test_unknown_head_is_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="'cls_pool' is unknown; allowed: native, mean_pooling"):
        heads.check_head("cls_pool")


pytestmark = pytest.mark.usefixtures("one_thread", "fake_clock")


def test_mean_pooling_fine_tune_resumes_bit_for_bit_and_evaluates(inputs, tmp_path, monkeypatch):
    whole = run(inputs, tmp_path / "whole", CFG)
    assert whole["config"]["head"] == heads.MEAN_POOLING
    crash_at_step(monkeypatch, 11)
    with pytest.raises(Crash):
        run(inputs, tmp_path / "crashed", CFG)
    monkeypatch.undo()
    resumed = run(inputs, tmp_path / "crashed", CFG)
    assert resumed["resumed_from_step"] == 9
    for name in ("model.safetensors", heads.HEAD_WEIGHTS):
        a, b = load_file(str(tmp_path / "whole/model" / name)), load_file(str(tmp_path / "crashed/model" / name))
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert resumed["losses"] == whole["losses"]
    scored = evaluation.evaluate_cell(tmp_path / "whole/model", inputs[1], "sst2", 16)
    assert scored["head"] == heads.MEAN_POOLING and np.isfinite(scored["dev_losses"]["validation"])


def test_head_and_min_steps_change_the_run(inputs):
    from dropbench.train.loop import run_fingerprint

    model_dir, features_dir = inputs
    native = TrainConfig(learning_rate=1e-3, batch_size=8, epochs=2, seed=3)
    assert run_fingerprint(model_dir, features_dir, "sst2", native, 16) != run_fingerprint(model_dir, features_dir, "sst2", CFG, 16)


def test_min_steps_extends_a_short_run(inputs, tmp_path):
    summary = run(inputs, tmp_path, TrainConfig(learning_rate=1e-3, batch_size=8, epochs=1, seed=3, min_steps=20,
                                                checkpoint_minutes=0))
    assert summary["steps"] == 20 and len(summary["losses"]) == 20  # 8 steps an epoch: 2.5 epochs
