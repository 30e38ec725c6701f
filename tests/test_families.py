"""task_specific_<base> and iterative_<base> at training time: frozen layers stay as pre-trained and are
dropped after the first stage; iterative runs drop the right layers at the right steps, keep the
optimizer state of the rest, resume bit for bit after a drop, and end physically smaller."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_train_inputs
from transformers import AutoModelForSequenceClassification

from dropbench.train import families, loop as train
from dropbench.data import features
from dropbench.prune import layer_drop
from dropbench.prune.step import prune_checkpoint
from dropbench.train.loop import LayerSchedule, TrainConfig

CFG = TrainConfig(learning_rate=1e-3, batch_size=8, epochs=1, seed=3, checkpoint_minutes=3)  # 64 rows: 8 steps per epoch

pytestmark = pytest.mark.usefixtures("one_thread", "fake_clock")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return tiny_train_inputs(tmp_path_factory.mktemp("families"))


def layer_weights(state: dict, layer: int, prefix: str = "bert.") -> dict:
    start = f"{prefix}encoder.layer.{layer}."
    return {name[len(start):]: value for name, value in state.items() if name.startswith(start)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def saved(out_dir) -> dict:
    return load_file(str(out_dir / "model.safetensors"))


def test_frozen_layers_keep_their_weights_and_leave_after_the_first_stage(inputs, tmp_path):
    model_dir, features_dir = inputs
    pretrained = load_file(str(model_dir / "model.safetensors"))
    frozen_only = tmp_path / "frozen_only"
    train.finetune(model_dir, features_dir, "sst2", frozen_only / "model", frozen_only / "state", CFG,
                   frozen_only / "log.json", LayerSchedule(freeze=(2, 3)))
    trained = saved(frozen_only / "model")
    for layer in (2, 3):
        assert same(layer_weights(trained, layer), layer_weights(pretrained, layer, prefix=""))
    assert not same(layer_weights(trained, 0), layer_weights(pretrained, 0, prefix=""))

    pruned = tmp_path / "pruned"
    prune_checkpoint(model_dir, pruned, "task_specific_top", 2)
    stage1 = tmp_path / "stage1"
    summary = families.frozen_finetune(model_dir, pruned, features_dir, "sst2", stage1 / "model", stage1 / "state", CFG,
                                       stage1 / "log.json")
    assert summary["layers"]["kept"] == [0, 1] and summary["steps"] == 8
    smaller = saved(stage1 / "model")
    assert json.loads((stage1 / "model" / "config.json").read_text())["num_hidden_layers"] == 2
    assert not layer_weights(smaller, 2)
    # Dropping after the last step changes nothing else: the same training as with the layers kept.
    assert same(smaller, {n: v for n, v in trained.items() if not n.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3."))})


def test_frozen_layers_are_not_in_the_optimizer(inputs):
    model = train.load_for_task(inputs[0], "sst2")
    train.freeze_layers(model, [1])
    optimized = {id(p) for group in train.make_optimizer(model, CFG).param_groups for p in group["params"]}
    frozen = {id(p) for p in model.bert.encoder.layer[1].parameters()}
    assert frozen and not optimized & frozen
    assert optimized | frozen == {id(p) for p in model.parameters()}


def test_a_drop_keeps_the_optimizer_state_of_the_other_parameters(inputs, tmp_path):
    model_dir, features_dir = inputs
    model = train.load_for_task(model_dir, "sst2")
    optimizer = train.make_optimizer(model, CFG)
    scheduler = train.get_linear_schedule_with_warmup(optimizer, 0, 10)
    split = features.load(features.split_path(features_dir, "train"))
    amp = train.Precision(torch.device("cpu"))
    for step in range(2):
        train.train_step(model, split.batch(list(range(8 * step, 8 * step + 8)), 0), optimizer, scheduler, 1.0, amp)
    layers = list(model.bert.encoder.layer)
    moments = {id(p): optimizer.state[p]["exp_avg"].clone() for p in model.parameters()}
    kept = [0, 1, 2, 3]

    train.drop_layer(model, kept, 1, optimizer)
    assert kept == [0, 2, 3] and model.config.num_hidden_layers == 3
    assert list(model.bert.encoder.layer) == [layers[0], layers[2], layers[3]]
    params = list(model.parameters())
    in_groups = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in params)
    assert {id(p) for p in optimizer.state} == {id(p) for p in params}
    assert all(torch.equal(optimizer.state[p]["exp_avg"], moments[id(p)]) for p in params)
    train.train_step(model, split.batch(list(range(16, 24)), 0), optimizer, scheduler, 1.0, amp)  # still trains
    # and its state saves and loads into a freshly built model of the smaller shape
    train.save_state(tmp_path, model, optimizer, scheduler, {"step": 3})
    fresh = train.load_for_task(model_dir, "sst2")
    train.drop_layer(fresh, [0, 1, 2, 3], 1)
    fresh_optimizer = train.make_optimizer(fresh, CFG)
    assert train.load_state(tmp_path, fresh, fresh_optimizer, train.get_linear_schedule_with_warmup(fresh_optimizer, 0, 10)) == {"step": 3}
    assert all(torch.equal(fresh_optimizer.state[q]["exp_avg_sq"], optimizer.state[p]["exp_avg_sq"])
               for p, q in zip(params, fresh.parameters()))


def run_iterative(inputs, pruned, out):
    model_dir, features_dir = inputs
    return families.iterative_finetune(model_dir, pruned, features_dir, "sst2", out / "model", out / "state", CFG,
                                       out / "log.json", epochs_per_drop=1)


@pytest.fixture(scope="module")
def iterative_plan(inputs, tmp_path_factory):
    pruned = tmp_path_factory.mktemp("iterative") / "pruned"
    info = prune_checkpoint(inputs[0], pruned, "iterative_top", 2)
    assert info["drop_order"] == [3, 2]
    return pruned


def test_iterative_drops_one_layer_per_stage_in_the_base_order(inputs, iterative_plan, tmp_path, monkeypatch):
    seen = []
    real = train.drop_layer

    def recording(model, kept, layer, optimizer=None):
        real(model, kept, layer, optimizer)
        seen.append((layer, list(kept), len(model.bert.encoder.layer), optimizer is not None))

    monkeypatch.setattr(train, "drop_layer", recording)
    summary = run_iterative(inputs, iterative_plan, tmp_path)
    assert seen == [(3, [0, 1, 2], 3, True), (2, [0, 1], 2, True)]
    assert summary["steps"] == 24 and summary["config"]["epochs"] == 3  # 1 epoch per drop, then the 1 configured
    assert summary["layers"]["drop_steps"] == {"8": [3], "16": [2]}
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", use_safetensors=True)
    assert layer_drop.num_layers(reloaded.config) == 2 and len(reloaded.bert.encoder.layer) == 2


def test_iterative_resumes_bit_for_bit_after_a_drop(inputs, iterative_plan, tmp_path, monkeypatch):
    reference = run_iterative(inputs, iterative_plan, tmp_path / "reference")
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:  # in the second stage, after the first drop (step 8) and a save (step 9)
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
        with pytest.raises(RuntimeError, match="killed"):
            run_iterative(inputs, iterative_plan, tmp_path / "resumed")
    state = tmp_path / "resumed" / "state"
    assert json.loads((state / "state.json").read_text())["progress"]["step"] == 9
    assert not layer_weights(load_file(str(state / "model.safetensors")), 3)  # saved after the drop
    resumed = run_iterative(inputs, iterative_plan, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 9 and resumed["losses"] == reference["losses"]
    assert same(saved(tmp_path / "resumed" / "model"), saved(tmp_path / "reference" / "model"))


def test_a_plan_of_another_strategy_is_refused(inputs, iterative_plan, tmp_path):
    with pytest.raises(ValueError, match="'iterative_top', not a task_specific_<base> strategy"):
        families.frozen_finetune(inputs[0], iterative_plan, inputs[1], "sst2", tmp_path / "m", tmp_path / "s", CFG,
                                 tmp_path / "log.json")


def test_a_damaged_first_stage_is_found_before_its_cell_runs(tmp_path, monkeypatch):
    from dropbench.plan import integrity
    from dropbench.plan.grid import Cell

    monkeypatch.chdir(tmp_path)
    cell = Cell("tiny", "task_specific_top", 1, "sst2", 1)
    first_stage = tmp_path / cell.dir / "frozen_finetune"
    first_stage.mkdir(parents=True)
    (first_stage / "config.json").write_text("{}")
    (first_stage / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # header runs past the end
    problems = integrity.find_damaged([cell], data_driven=[])
    assert [str(p.path) for p in problems] == [f"{cell.dir}/frozen_finetune"]
    assert integrity.find_damaged([Cell("tiny", "top", 1, "sst2", 1)], data_driven=[]) == []
