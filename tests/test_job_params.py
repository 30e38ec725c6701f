"""Each job's params hold exactly what determines its output (dropbench.plan.job_params)."""

from __future__ import annotations

import pytest
from tiny import write_tiny_tasks

from dropbench.plan import job_params
from dropbench.train.loop import TrainConfig

TRAINING = {"max_length": 32, "epochs": 1, "learning_rate": 1e-4, "batch_size": 8, "warmup_ratio": 0.0,
            "weight_decay": 0.0, "max_grad_norm": 1.0, "checkpoint_minutes": 2, "group_by_length": True}
SCORING = {"sample_size": 256, "seed": 0, "batch_size": 32}


def test_operational_training_keys_are_not_params_but_reach_the_train_config():
    with_new_key = {**TRAINING, "checkpoint_minutes": 30}  # an operational key changed
    assert job_params.finetune_params(with_new_key, 1) == job_params.finetune_params(TRAINING, 1)
    assert job_params.finetune_params({**TRAINING, "learning_rate": 2e-4}, 1) != job_params.finetune_params(TRAINING, 1)
    params = job_params.finetune_params(TRAINING, 7)
    cfg = TrainConfig.from_dict(job_params.train_settings(TRAINING, params))
    assert (cfg.seed, cfg.checkpoint_minutes, cfg.learning_rate) == (7, 2, 1e-4)


def test_a_source_checksum_is_not_part_of_the_download_params():
    source = {"kind": "hub", "repo_id": "org/m", "revision": "0" * 40}
    checked = {**source, "sha256": "a" * 64, "size": 10}
    assert job_params.download_params(checked) == job_params.download_params(source)
    assert job_params.download_params({**source, "revision": "1" * 40}) != job_params.download_params(source)


def test_a_data_free_prune_holds_its_resolved_layers_and_no_scoring():
    params = job_params.prune_params("top", 2, 6, SCORING)
    assert params["dropped"] == [4, 5] and "scoring" not in params
    assert job_params.prune_params("top", 2, 6, {**SCORING, "sample_size": 8}) == params
    # random reads the scoring seed: its list, and so its params, follow the seed
    assert job_params.prune_params("random", 2, 6, SCORING) != job_params.prune_params("random", 2, 6, {**SCORING, "seed": 1})


def test_a_data_driven_prune_holds_its_scoring_settings():
    params = job_params.prune_params("angular", 2, 6, SCORING)
    assert params["scoring"] == SCORING and "dropped" not in params
    assert job_params.prune_params("angular", 2, 6, {**SCORING, "sample_size": 8}) != params


def test_local_data_files_are_prepare_inputs(tmp_path):
    source = write_tiny_tasks(tmp_path, rows=4)["stsb"]["source"]
    assert job_params.prepare_inputs("stsb", source) == [str(tmp_path / "STS-B" / "train.tsv"),
                                                           str(tmp_path / "STS-B" / "dev.tsv")]
    assert job_params.prepare_inputs("stsb", {"kind": "hub", "dataset": "nyu-mll/glue", "revision": "x"}) == []


@pytest.mark.parametrize("stage, params", [
    ("download", lambda: job_params.download_params({"kind": "hub", "repo_id": "o/m", "revision": "1"})),
    ("prepare", lambda: job_params.prepare_params({"source": {"kind": "local", "path": "x"}}, 32, 0)),
    ("prune", lambda: job_params.prune_params("top", 1, 4, SCORING)),
    ("finetune", lambda: job_params.finetune_params(TRAINING, 1)),
    ("evaluate", lambda: job_params.evaluate_params({"model": "m"})),
])
def test_bumping_a_stage_version_changes_exactly_that_stages_params(monkeypatch, stage, params):
    before = params()
    assert before["version"] == job_params.STAGE_VERSIONS[stage]
    others = {name: job_params.STAGE_VERSIONS[name] for name in job_params.STAGE_VERSIONS if name != stage}
    monkeypatch.setitem(job_params.STAGE_VERSIONS, stage, job_params.STAGE_VERSIONS[stage] + 1)
    assert params() != before
    assert {name: job_params.STAGE_VERSIONS[name] for name in others} == others


def test_head_and_min_steps_are_params_only_when_set():
    plain = job_params.finetune_params(TRAINING, 1)
    assert job_params.finetune_params(TRAINING, 1, "native") == plain  # jobs planned before the head existed keep their params
    assert job_params.finetune_params({**TRAINING, "min_steps": 0}, 1) == plain
    assert job_params.finetune_params(TRAINING, 1, "mean_pooling") == {**plain, "head": "mean_pooling"}
    with_steps = job_params.finetune_params({**TRAINING, "min_steps": 200}, 1)
    assert with_steps["training"]["min_steps"] == 200
    cfg = TrainConfig.from_dict(job_params.train_settings({**TRAINING, "min_steps": 200}, {**with_steps, "head": "mean_pooling"}))
    assert (cfg.min_steps, cfg.head) == (200, "mean_pooling")
    assert TrainConfig.from_dict(job_params.train_settings(TRAINING, plain)).head == "native"


def test_a_models_own_learning_rate_overrides_the_training_one_for_its_fine_tunes_only():
    training = {"learning_rate": 5e-5, "epochs": 3}
    assert job_params.model_training(training, {"learning_rate": 2e-4}) == {"learning_rate": 2e-4, "epochs": 3}
    assert job_params.model_training(training, {"head": "mean_pooling"}) is training
    assert training["learning_rate"] == 5e-5
