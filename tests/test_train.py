"""Fine-tuning resumes exactly where it was saved, discards unusable state, and repeats bit for bit on CPU."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from tiny import build_tiny_bert, write_tiny_tasks

from dropbench import evaluation, train
from dropbench.prepare import prepare_task
from dropbench.train import TrainConfig, finetune

CFG = TrainConfig(learning_rate=1e-3, batch_size=8, epochs=2, seed=3, checkpoint_every=3)  # 8 steps per epoch
LATENCY = {"batch_size": 2, "seq_len": 8, "warmup": 0, "repeats": 1}


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # As the workflow's jobs do; several threads on a busy 2-core machine are 20x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny BERT (dropout on, so the RNG matters) and 64 tokenized sst2 rows."""
    root = tmp_path_factory.mktemp("train")
    model_dir = build_tiny_bert(root / "model")
    source = write_tiny_tasks(root / "glue", rows=64)["sst2"]["source"]
    prepare_task(model_dir, "sst2", source, root / "features", max_length=32)
    return model_dir, root / "features"


def run(inputs, out, cfg=CFG):
    model_dir, features_dir = inputs
    return finetune(model_dir, features_dir, "sst2", out / "model", out / "state", cfg, out / "train_log.json")


def crash_at_step(monkeypatch, step: int) -> None:
    """Make training die in the middle of ``step`` (after its forward pass), like a killed job."""
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise Crash(f"killed during step {step}")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def weights(out):
    return load_file(str(out / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, run(inputs, out)


@pytest.mark.parametrize("crash_step, resumed_from", [(5, 3), (11, 9)])  # 11: resumes in the second epoch
def test_resumed_training_is_bit_identical(inputs, uninterrupted, tmp_path, monkeypatch, crash_step, resumed_from):
    reference_dir, reference = uninterrupted
    with monkeypatch.context() as patch:
        crash_at_step(patch, crash_step)
        with pytest.raises(Crash):
            run(inputs, tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "train_log.json").exists()
    assert json.loads((tmp_path / "state" / "state.json").read_text())["progress"]["step"] == resumed_from

    resumed = run(inputs, tmp_path)
    assert resumed["resumed_from_step"] == resumed_from
    assert resumed["losses"] == reference["losses"]
    expected, actual = weights(reference_dir), weights(tmp_path)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert not (tmp_path / "state").exists()


def test_state_from_other_settings_is_discarded(inputs, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as patch:
        crash_at_step(patch, 5)
        with pytest.raises(Crash):
            run(inputs, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = run(inputs, tmp_path, TrainConfig(**{**CFG.__dict__, "learning_rate": 2e-3}))
    assert summary["resumed_from_step"] == 0
    assert "saved for other settings" in caplog.text


def test_damaged_state_is_discarded(inputs, uninterrupted, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as patch:
        crash_at_step(patch, 5)
        with pytest.raises(Crash):
            run(inputs, tmp_path)
    state_weights = tmp_path / "state" / "optimizer.safetensors"
    state_weights.write_bytes(state_weights.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING):
        summary = run(inputs, tmp_path)
    assert summary["resumed_from_step"] == 0
    assert "optimizer.safetensors: truncated" in caplog.text
    assert summary["losses"] == uninterrupted[1]["losses"]


def test_diverging_loss_fails_clearly(inputs, tmp_path):
    with pytest.raises(FloatingPointError, match=r"training loss is (nan|inf) at step \d+ .*learning_rate"):
        run(inputs, tmp_path, TrainConfig(**{**CFG.__dict__, "learning_rate": 1e35, "max_grad_norm": 1e30}))
    assert not (tmp_path / "model").exists()


def test_same_config_and_seed_give_identical_metrics_on_cpu(inputs, tmp_path):
    """Two fresh runs of one cell: same losses, same weights, same dev metrics."""
    _, features_dir = inputs
    results = []
    for attempt in ("first", "second"):
        summary = run(inputs, tmp_path / attempt)
        scored = evaluation.evaluate_cell(tmp_path / attempt / "model", features_dir, "sst2", 16, LATENCY)
        results.append((summary["losses"], scored["metrics"], weights(tmp_path / attempt)))
    (losses_a, metrics_a, weights_a), (losses_b, metrics_b, weights_b) = results
    assert losses_a == losses_b
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    # a different seed is a different run: the test would notice if the seed were ignored
    other = run(inputs, tmp_path / "other_seed", TrainConfig(**{**CFG.__dict__, "seed": 4}))
    assert other["losses"] != losses_a


def test_fingerprint_covers_settings_and_inputs(inputs):
    model_dir, features_dir = inputs
    base = train.run_fingerprint(model_dir, features_dir, "sst2", CFG, 16)
    assert base == json.loads(json.dumps(base))  # survives the JSON round trip of state.json
    assert train.run_fingerprint(model_dir, features_dir, "sst2", TrainConfig(**{**CFG.__dict__, "seed": 9}), 16) != base
    assert set(base["inputs"]) == {"model.safetensors", "train.npz"}
