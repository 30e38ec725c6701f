import json

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertTokenizerFast,
)

from dropbench.prune import step as prune, strategies
from dropbench.prune.layer_drop import drop_layers
from dropbench.prune.layer_scores import hidden_similarity, per_layer_contribution

LAYERS = 6
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "away", "home"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    src = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    src.mkdir()
    # transformers 5 ignores BertTokenizerFast(vocab_file=...); from_pretrained converts vocab.txt.
    (src / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast.from_pretrained(src).save_pretrained(src)
    (src / "README.md").write_text("tiny test model\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64,
    )
    AutoModel.from_config(config).save_pretrained(src)
    return src


def batches(src):
    tokenizer = AutoTokenizer.from_pretrained(src)
    texts = [["the cat sat on the mat", "dog ran"], ["far away home", "the dog sat far away from home"]]
    return [tokenizer(pair, padding=True, return_tensors="pt") for pair in texts]


def test_prune_top(checkpoint, tmp_path):
    out = tmp_path / "pruned"
    info = prune.prune_checkpoint(checkpoint, out, "top", 2)

    written = json.loads((out / "pruning.json").read_text())
    assert written == info
    assert info["strategy"] == "top" and info["k"] == 2
    assert (info["num_layers_before"], info["num_layers_after"]) == (LAYERS, LAYERS - 2)
    assert info["dropped"] == [4, 5] and info["kept"] == [0, 1, 2, 3]
    assert info["scores"] is None

    original = AutoModel.from_pretrained(checkpoint).eval()
    layer_params = sum(p.numel() for p in original.encoder.layer[0].parameters())
    assert info["params_before"] == sum(p.numel() for p in original.parameters())
    assert info["params_after"] == info["params_before"] - 2 * layer_params

    names = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
            "README.md", "pruning.json"} <= names
    assert (out / "model.safetensors").stat().st_size < (checkpoint / "model.safetensors").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]  # no temp dir left behind

    reloaded = AutoModel.from_pretrained(out).eval()
    assert reloaded.config.num_hidden_layers == LAYERS - 2
    expected = drop_layers(original, [4, 5])
    inputs = batches(checkpoint)[1]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).last_hidden_state, expected(**inputs).last_hidden_state)
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    assert len(classifier.bert.encoder.layer) == LAYERS - 2
    assert AutoTokenizer.from_pretrained(out)("the cat")["input_ids"] == [2, 5, 6, 3]


def test_prune_contribution_records_scores(checkpoint, tmp_path):
    similarity = hidden_similarity(AutoModel.from_pretrained(checkpoint), batches(checkpoint))
    context = {"similarity": similarity}
    info = prune.prune_checkpoint(checkpoint, tmp_path / "out", "contribution", 3, context)
    assert info["dropped"] == strategies.layers_to_drop("contribution", LAYERS, 3, context)
    assert info["scores"] == pytest.approx(per_layer_contribution(similarity))
    assert len(info["scores"]) == LAYERS


def test_existing_output_is_replaced(checkpoint, tmp_path):
    out = tmp_path / "out"
    prune.prune_checkpoint(checkpoint, out, "bottom", 1)
    info = prune.prune_checkpoint(checkpoint, out, "bottom", 3)
    assert json.loads((out / "pruning.json").read_text())["dropped"] == info["dropped"] == [0, 1, 2]


def test_failures_leave_no_output(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="k=6.*1\\.\\.5"):
        prune.prune_checkpoint(checkpoint, tmp_path / "out", "top", LAYERS)
    with pytest.raises(ValueError, match="context\\['similarity'\\]"):
        prune.prune_checkpoint(checkpoint, tmp_path / "out", "angular", 2)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(prune, "_copy_tokenizer_files", crash)
    with pytest.raises(OSError, match="disk full"):
        prune.prune_checkpoint(checkpoint, tmp_path / "out", "top", 2)
    assert list(tmp_path.iterdir()) == []


def test_prune_step_records_model_and_scope(checkpoint, tmp_path):
    info = prune.prune_step(model="tiny", pretrained_dir=checkpoint, out_dir=tmp_path / "top-k2" / "any", strategy="top",
                            k=2, features_dir=None, scoring={"seed": 0}, scope="any", expected_dropped=[4, 5])
    written = json.loads((tmp_path / "top-k2" / "any" / "pruning.json").read_text())
    assert written == info
    assert (info["model"], info["scope"], info["strategy"], info["k"]) == ("tiny", "any", "top", 2)


def test_prune_step_names_the_config_key_when_k_reaches_the_depth(tmp_path):
    import json

    from dropbench.prune.step import check_k

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 6}))
    check_k("m", tmp_path, 5)
    with pytest.raises(ValueError, match=r"config key 'k' \(or 'models.m.k'\): bad value 6; allowed: 1..5"):
        check_k("m", tmp_path, 6)
