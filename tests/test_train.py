"""Fine-tuning resumes exactly where it was saved, discards unusable state, and repeats bit for bit on CPU."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_train_inputs

from dropbench.evaluate import evaluation
from dropbench.data import features
from dropbench.train import loop as train
from dropbench.runtime.device import Precision
from dropbench.train.loop import TrainConfig, finetune

CFG = TrainConfig(learning_rate=1e-3, batch_size=8, epochs=2, seed=3, checkpoint_minutes=3)  # 8 steps per epoch; a fake clock ticks 1 minute per step


class Crash(RuntimeError):
    pass


pytestmark = pytest.mark.usefixtures("one_thread", "fake_clock")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return tiny_train_inputs(tmp_path_factory.mktemp("train"))


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
        scored = evaluation.evaluate_cell(tmp_path / attempt / "model", features_dir, "sst2", 16)
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


def test_checkpoint_interval_does_not_invalidate_saved_state(inputs):
    """How often state is saved is operational: changing it must not discard a half-done run."""
    model_dir, features_dir = inputs
    base = train.run_fingerprint(model_dir, features_dir, "sst2", CFG, 16)
    other = TrainConfig(**{**CFG.__dict__, "checkpoint_minutes": 30})
    assert train.run_fingerprint(model_dir, features_dir, "sst2", other, 16) == base
    assert "checkpoint_minutes" not in base["config"]


def _tiny_steps(inputs, optimizer_factory, steps=4, precision=None):
    """``steps`` training steps of the tiny model on fixed batches; returns its parameters."""
    model_dir, features_dir = inputs
    torch.manual_seed(0)
    model = train.load_for_task(model_dir, "sst2")
    model.train()
    split = features.load(features.split_path(features_dir, "train"))
    optimizer = optimizer_factory(model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    amp = precision or Precision(torch.device("cpu"))
    for step in range(steps):
        torch.manual_seed(step)  # same dropout masks for every optimizer
        batch = split.batch(list(range(step * 8, step * 8 + 8)), 0)
        assert torch.isfinite(train.train_step(model, batch, optimizer, scheduler, 1.0, amp))
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_fused_adamw_matches_the_reference_loop(inputs):
    cfg = TrainConfig(learning_rate=1e-3, weight_decay=0.01)
    fused = {}

    def make_fused(model):
        optimizer = train.make_optimizer(model, cfg)
        fused["flag"] = optimizer.defaults["fused"]
        return optimizer

    def make_reference(model):
        # The per-parameter loop that the fused kernel replaces, with the same parameter groups.
        optimizer = train.make_optimizer(model, cfg)
        return torch.optim.AdamW(optimizer.param_groups, lr=cfg.learning_rate, foreach=False, fused=False)

    got, expected = _tiny_steps(inputs, make_fused), _tiny_steps(inputs, make_reference)
    assert fused["flag"] is True  # torch >= 2.4 has a fused CPU kernel
    initial = _tiny_steps(inputs, make_reference, steps=0)
    assert any(not torch.equal(initial[n], expected[n]) for n in expected)  # the steps did move the weights
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_adamw_falls_back_without_a_fused_kernel(monkeypatch, inputs):
    real = torch.optim.AdamW

    def no_fused(params, lr, fused=None, foreach=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, lr=lr, foreach=foreach)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    model = train.load_for_task(inputs[0], "sst2")
    optimizer = train.make_optimizer(model, CFG)
    assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]


@pytest.mark.parametrize("native_bf16, dtype, scaled", [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_gpu_precision_follows_native_bf16_support(monkeypatch, native_bf16, dtype, scaled):
    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return native_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GradScaler("cuda") warns that this machine has no CUDA
        amp = Precision(torch.device("cuda"))
    assert asked == {"including_emulation": False}  # emulated bf16 (e.g. V100) must count as unsupported
    assert amp.dtype == dtype and (amp.scaler is not None) == scaled
    assert Precision(torch.device("cpu")).dtype is None and Precision(torch.device("cpu")).name == "fp32"


def test_fp16_steps_with_grad_scaler_train_and_resume_the_scale(inputs):
    """The fp16 path end to end, on CPU autocast: scaled backward, unscale before clipping, scaler step."""
    amp = Precision(torch.device("cpu"))
    amp.dtype, amp.scaler, amp.name = torch.float16, torch.amp.GradScaler("cpu", init_scale=2.0**10), "fp16"
    initial = _tiny_steps(inputs, lambda m: train.make_optimizer(m, CFG), steps=0)
    trained = _tiny_steps(inputs, lambda m: train.make_optimizer(m, CFG), precision=amp)
    assert all(torch.isfinite(p).all() for p in trained.values())
    assert any(not torch.equal(initial[n], trained[n]) for n in trained)
    state = amp.scaler_state()
    assert state == json.loads(json.dumps(state)) and state["scale"] > 0
    resumed = Precision(torch.device("cpu"))
    resumed.scaler = torch.amp.GradScaler("cpu")
    resumed.load_scaler_state(state)
    assert resumed.scaler.get_scale() == amp.scaler.get_scale()


FAULTS_OF_REALLOCATION = """
import resource, sys, torch
from dropbench.runtime.device import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
faults = []
for _ in range(20):  # a 64 MiB block, freed and allocated again, as a training step's embedding gradient
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(2**24)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del block
print(min(faults[-5:]), max(faults[-5:]))  # the heap settles after a few rounds
"""


@pytest.mark.skipif(sys.platform != "linux", reason="mallopt and minor-fault counts are glibc/Linux")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    def faults(mode: str) -> list[int]:
        run = subprocess.run([sys.executable, "-c", FAULTS_OF_REALLOCATION, mode], capture_output=True, text=True, check=True)
        return [int(n) for n in run.stdout.split()]

    pages = 2**26 // resource.getpagesize()
    assert min(faults("default")) > pages // 2  # glibc maps every block this large afresh
    assert max(faults("reuse")) < pages // 20


def test_every_training_setting_is_declared_once_as_weight_operational_or_job_key():
    """Issue 23 item 1: which keys change the weights was stated twice from opposite sides (job_params.WEIGHT_KEYS,
    TrainConfig.OPERATIONAL); a key in neither list would silently either re-run nothing or refuse to resume."""
    import dataclasses

    import yaml
    from tiny import REPO

    from dropbench.plan import job_params

    declared = [*job_params.WEIGHT_KEYS, *job_params.OPTIONAL_WEIGHT_KEYS, *job_params.OPERATIONAL_KEYS, *job_params.JOB_KEYS]
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    assert sorted(declared) == sorted(fields) and len(set(declared)) == len(declared)
    assert TrainConfig.OPERATIONAL == job_params.OPERATIONAL_KEYS
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    training_keys = set(schema["properties"]["training"]["properties"]) - {"max_length"}  # max_length: prepare_task's
    assert training_keys == set(declared) - set(job_params.JOB_KEYS)
