"""Padding on the tokenizer's side: a row's logits do not depend on the rows batched with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from test_architectures import TINY, tiny_model
from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

from dropbench.data import features

LENGTHS = [9, 4, 7, 3]


def tokenizer_padding_side(model_type: str) -> str:
    """The padding side of the architecture's own tokenizer class (XLNet: left), read without a download."""
    return getattr(transformers, TOKENIZER_MAPPING_NAMES[model_type]).padding_side


def ragged_rows(padding_side: str) -> features.Features:
    rng = np.random.default_rng(0)
    rows = [rng.integers(5, 100, size=n) for n in LENGTHS]
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)])
    return features.Features(
        input_ids=np.concatenate(rows).astype(np.int32), token_type_ids=None, offsets=offsets,
        labels=np.zeros(len(rows), dtype=np.int64), padding_side=padding_side,
    )


def logits(model, split: features.Features, indices) -> torch.Tensor:
    batch = split.batch(np.asarray(indices), model.config.pad_token_id or 0)
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


def assert_each_row_gets_its_logits_alone(model, model_type) -> None:
    split = ragged_rows(tokenizer_padding_side(model_type))
    batched = logits(model, split, range(len(LENGTHS)))
    for row in range(len(LENGTHS)):
        torch.testing.assert_close(batched[row], logits(model, split, [row])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_padded_batch_gives_each_row_its_logits_alone(model_type):
    assert_each_row_gets_its_logits_alone(tiny_model(model_type), model_type)


def test_xlnet_pads_left_and_right_padding_would_change_its_logits():
    assert tokenizer_padding_side("xlnet") == "left"
    model = tiny_model("xlnet")
    split = ragged_rows("right")
    alone = logits(model, split, [1])[0]
    assert not torch.allclose(logits(model, split, range(len(LENGTHS)))[1], alone, atol=1e-3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_batch_puts_tokens_and_mask_on_the_padding_side(side):
    batch = ragged_rows(side).batch(np.array([0, 3]), pad_token_id=1)
    short = batch["input_ids"][1]
    mask = batch["attention_mask"][1]
    real = slice(6, 9) if side == "left" else slice(0, 3)
    assert mask[real].tolist() == [1, 1, 1] and int(mask.sum()) == 3
    assert (short[mask == 0] == 1).all()


def test_bad_padding_side_is_refused():
    with pytest.raises(ValueError, match="padding_side: bad value 'middle'; allowed: right, left"):
        ragged_rows("middle")


def test_features_without_recorded_padding_side_ask_for_prepare_again(tmp_path):
    split = ragged_rows("right")
    features.save(split, tmp_path / "train.npz")
    (tmp_path / "info.json").write_text(json.dumps({"splits": {"train": {}}}))
    with pytest.raises(ValueError, match="no 'padding_side'.*re-run prepare_task"):
        features.load(tmp_path / "train.npz")
    (tmp_path / "info.json").write_text(json.dumps({"splits": {"train": {}}, "padding_side": "left"}))
    assert features.load(tmp_path / "train.npz").padding_side == "left"
