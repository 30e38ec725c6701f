"""Learning-rate selection on rows held out from the TRAIN split (config ``tuning``; issue 22 item 3b).

Fast tests: the held-out rows, the choice, the config checks, the params. Workflow tests (slow) on one
finished tiny tuned run (model tiny, strategy top k 1 and the baseline, sst2, seed 1, two candidates); they
run in order.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from tiny import build_tiny_bert, changed, tiny_config, write_config, write_tiny_tasks
from workflow_runner import planned_jobs, snakemake

from dropbench.plan import config_check, job_params
from dropbench.train import tuning
from dropbench.plan.config_check import ConfigError

TUNING = {"learning_rates": [1.0e-3, 1.0e-4], "held_out": 12, "seed": 0}
VARIANTS = ("none-k0", "top-k1")
NEW_RATE = 1.000001e-3  # trains as 1e-3 does (the same held-out predictions), so no choice can move to it


# ------------------------------------------------------------------ held-out rows


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("held_out")
    model_dir = build_tiny_bert(root / "model")
    source = write_tiny_tasks(root / "glue", rows=64)["sst2"]["source"]
    return root, model_dir, source


def prepared(root: Path, model_dir: Path, source: dict, name: str, **kwargs) -> tuple[dict, dict]:
    from dropbench.data.prepare import prepare_task

    info = prepare_task(model_dir, "sst2", source, root / name, max_length=32, **kwargs)
    with np.load(root / name / "row_indices.npz") as rows:
        return info, {split: rows[split].tolist() for split in rows.files}


def test_held_out_rows_are_disjoint_from_the_train_rows_and_the_same_for_every_cell(tiny_inputs):
    root, model_dir, source = tiny_inputs
    held_out = job_params.held_out(TUNING)
    info, rows = prepared(root, model_dir, source, "all", held_out=held_out)
    assert len(rows["held_out"]) == 12 and info["splits"]["held_out"]["rows"] == 12
    assert not set(rows["held_out"]) & set(rows["train"])
    assert sorted(rows["held_out"] + rows["train"]) == list(range(64))  # every other row is trained on
    assert info["held_out"] == {"rows": 12, "seed": 0} and info["splits"]["train"]["rows_available"] == 52
    # a subsample is drawn from the rest; the held-out rows stay those of the task, whatever the subsample
    sub_info, sub_rows = prepared(root, model_dir, source, "sub", held_out=held_out, max_train_examples=20, seed=3)
    assert sub_rows["held_out"] == rows["held_out"]
    assert len(sub_rows["train"]) == 20 and set(sub_rows["train"]) <= set(rows["train"])
    # the labels of the held-out split are those of its rows of the train file
    from dropbench.data import features, glue

    labels = glue.load_split("sst2", source, "train")["label"].to_numpy()
    held = features.load(features.split_path(root / "all", "held_out"))
    assert held.labels.tolist() == labels[rows["held_out"]].tolist()
    # another seed, other rows
    _, other = prepared(root, model_dir, source, "seed1", held_out={"rows": 12, "seed": 1})
    assert other["held_out"] != rows["held_out"]


def test_without_tuning_the_features_are_as_before(tiny_inputs):
    root, model_dir, source = tiny_inputs
    from dropbench.data.prepare import prepare_task

    info = prepare_task(model_dir, "sst2", source, root / "plain", max_length=32)
    assert set(info["splits"]) == {"train", "validation"} and "held_out" not in info
    assert not (root / "plain" / "row_indices.npz").exists()


def test_holding_out_every_row_is_refused():
    with pytest.raises(ValueError, match="tuning.held_out"):
        tuning.split_off(10, 10, 0)


# ------------------------------------------------------------------ the choice


def candidate(tmp_path: Path, lr: float, score) -> Path:
    path = tmp_path / f"lr{tuning.lr_name(lr)}.json"
    path.write_text(json.dumps({"learning_rate": lr, "task_score": score, "held_out_rows": 12, "seed": 0}))
    return path


def test_the_best_held_out_score_is_chosen_ties_to_the_smaller_rate_and_undefined_is_worst(tmp_path):
    best = tuning.choose([candidate(tmp_path, 4e-4, 0.5), candidate(tmp_path, 1e-4, 0.7), candidate(tmp_path, 2e-4, 0.6)])
    assert best == {"candidates": {"0.0001": 0.7, "0.0002": 0.6, "0.0004": 0.5}, "chosen": 1e-4, "held_out_rows": 12, "seed": 0}
    assert tuning.choose([candidate(tmp_path, 4e-4, 0.7), candidate(tmp_path, 2e-4, 0.7)])["chosen"] == 2e-4
    assert tuning.choose([candidate(tmp_path, 4e-4, None), candidate(tmp_path, 2e-4, 0.1)])["chosen"] == 2e-4


def test_a_single_candidate_is_a_fixed_rate_with_no_selection_fine_tune(tmp_path):
    assert job_params.selection_rates(TUNING) == [1e-3, 1e-4]
    assert job_params.selection_rates(None) == job_params.selection_rates({**TUNING, "learning_rates": [2e-4]}) == []
    single = job_params.choice_params({**TUNING, "learning_rates": [2e-4]})
    assert single == {"fixed_learning_rate": 2e-4, "held_out_rows": 12, "seed": 0}
    assert job_params.choice_params(TUNING)["fixed_learning_rate"] is None
    out = tmp_path / "choice.json"
    choice = tuning.write_choice([], out, single)
    assert choice == json.loads(out.read_text()) == {"candidates": {"0.0002": None}, "chosen": 2e-4, "held_out_rows": 12,
                                                     "seed": 0, "fixed": True}
    with pytest.raises(ValueError, match="no candidates to choose from"):  # a fixed rate takes no candidate's record
        tuning.write_choice([candidate(tmp_path, 2e-4, 0.5)], out, single)
    selected = tuning.write_choice([candidate(tmp_path, 1e-3, 0.5), candidate(tmp_path, 1e-4, 0.6)], out, job_params.choice_params(TUNING))
    assert selected["chosen"] == 1e-4 and "fixed" not in selected
    rows = tuning.summary_rows({("m", "top", 1, "sst2"): out})
    assert [(r["learning_rate"], r["held_out_score"], r["chosen"], r["selected"]) for r in rows] == [
        (1e-4, 0.6, True, True), (1e-3, 0.5, False, True)]
    tuning.write_choice([], out, single)
    assert [(r["held_out_score"], r["chosen"], r["selected"]) for r in tuning.summary_rows({("m", "top", 1, "sst2"): out})] == [
        (None, True, False)]


def test_learning_rates_have_one_spelling():
    assert tuning.lr_name(2.0e-4) == tuning.lr_name(0.0002) == "0.0002"
    assert tuning.candidate_file("m", "top", 2, "sst2", 1e-5) == "results/tuning/m/top-k2/sst2/lr1e-05.json"


# ------------------------------------------------------------------ config and params


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tuning_config")
    return workdir, tiny_config(workdir, strategies=("top",), k=(1,))


def checked(config: dict) -> dict:
    config = copy.deepcopy(config)
    config_check.load_and_check(config, config_check.SCHEMA)
    return config


def test_tuning_config_checks(base):
    _, config = base
    assert checked(changed(config, "tuning", {"learning_rates": [1e-4], "held_out": 5}))["tuning"]["seed"] == 0
    assert "tuning" not in checked(config)
    for key, value, fragment in [
        ("tuning.learning_rates", [1e-4, 0.0001], "tuning.learning_rates"),
        ("tuning.seed", 2**32, "tuning.seed"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            checked(changed(changed(config, "tuning", dict(TUNING)), key, value))
    for bad in ({"learning_rates": [], "held_out": 5}, {"learning_rates": [1e-4], "held_out": 0},
                {"learning_rates": [1e-4]}, {"learning_rates": [-1e-4], "held_out": 5}):
        with pytest.raises(ConfigError):
            checked(changed(config, "tuning", bad))
    with pytest.raises(ConfigError, match="iterative_top"):
        checked({**changed(config, "tuning", dict(TUNING)), "strategies": ["top", "iterative_top"]})


def test_prepare_params_change_only_with_tuning():
    task = {"source": {"kind": "local", "path": "x"}, "max_train_examples": None}
    plain = job_params.prepare_params(task, 128, 0)
    assert job_params.prepare_params(task, 128, 0, None) == plain
    assert list(plain) == ["source", "max_length", "max_train_examples", "subsample_seed", "version"]
    tuned = job_params.prepare_params(task, 128, 0, {**TUNING, "held_out": 300})
    assert tuned["held_out"] == {"rows": 300, "seed": 0} and {k: v for k, v in tuned.items() if k != "held_out"} == plain


def test_a_selection_fine_tune_has_the_cells_params_at_its_rate_and_seed():
    training = {"epochs": 1, "learning_rate": 2e-4, "batch_size": 8, "warmup_ratio": 0.0, "weight_decay": 0.0,
                "max_grad_norm": 1.0, "group_by_length": True}
    params = job_params.tune_params(training, {**TUNING, "seed": 7}, 1e-4)
    assert params == job_params.finetune_params({**training, "learning_rate": 1e-4}, 7)


def test_the_estimate_counts_the_selection_fine_tunes():
    import yaml
    from tiny import REPO

    from dropbench.plan import estimate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    plain = estimate.estimate(config, "a100", 0.02, REPO)
    tuned = estimate.estimate({**config, "tuning": {"learning_rates": [1e-4, 2e-4, 4e-4], "held_out": 300, "seed": 0}},
                              "a100", 0.02, REPO)
    assert "tuning_fine_tunes" not in plain
    fixed = estimate.estimate({**config, "tuning": {"learning_rates": [2e-4], "held_out": 300, "seed": 0}}, "a100", 0.02, REPO)
    assert "tuning_fine_tunes" not in fixed and fixed["training_flops"] == plain["training_flops"]
    assert tuned["tuning_fine_tunes"] == 3 * plain["cells"] // len(config["seeds"])
    assert tuned["training_flops"] > plain["training_flops"]


# ------------------------------------------------------------------ the workflow (slow)
# The runs target the cells' metrics and reports/tuning.csv (not the report rules, which a tuned run
# plans as usual): a finished tiny tuned run with two candidates, then a third candidate, then the chosen
# one withdrawn (one candidate left: a fixed rate), then both again and poisoned dev labels (last: it
# re-prepares the task).


def choices(workdir: Path) -> dict:
    return {v: json.loads((workdir / f"results/tuning/tiny/{v}/sst2/choice.json").read_text()) for v in VARIANTS}


def finetune_times(workdir: Path) -> dict:
    return {(v, name): (workdir / f"results/cells/tiny/{v}/sst2/seed1/{name}").stat().st_mtime_ns
            for v in VARIANTS for name in ("train_log.json", "metrics.json")}


TARGETS = [f"results/cells/tiny/{v}/sst2/seed1/metrics.json" for v in VARIANTS] + ["reports/tuning.csv"]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tuned")
    config = tiny_config(workdir, strategies=("top",), k=(1,))
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    config["tuning"] = dict(TUNING)
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2", *TARGETS)
    return workdir, config


@pytest.mark.slow
def test_a_tuned_run_fine_tunes_each_variant_at_its_choice(tuned_run):
    workdir, config = tuned_run
    for variant, choice in choices(workdir).items():
        assert set(choice["candidates"]) == {"0.001", "0.0001"} and choice["chosen"] in (1e-3, 1e-4)
        cell = workdir / f"results/cells/tiny/{variant}/sst2/seed1"
        assert json.loads((cell / "train_log.json").read_text())["config"]["learning_rate"] == choice["chosen"]
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["tuning"] == choice and metrics["train_rows"] == 32 - 12
        assert metrics["held_out"]["rows"] == 12 and 0 <= metrics["held_out"]["task_score"] <= 1  # (issue 25 item 1)
        candidate_record = json.loads((workdir / f"results/tuning/tiny/{variant}/sst2/lr0.001.json").read_text())
        assert candidate_record["held_out_rows"] == 12 and candidate_record["seed"] == 0
    table = (workdir / "reports/tuning.csv").read_text().splitlines()
    assert table[0] == "model,strategy,k,task,learning_rate,held_out_score,chosen,held_out_rows,seed,selected"
    assert len(table) == 1 + 2 * len(VARIANTS)
    assert planned_jobs(workdir, *TARGETS) == {}


@pytest.mark.slow
def test_the_sensitivity_report_compares_the_candidates_on_held_out_rows(tuned_run):
    workdir, config = tuned_run
    assert "sensitivity" in planned_jobs(workdir)  # part of the default target with tuning
    snakemake(workdir, "--cores", "2", "reports/sensitivity.md")
    text = (workdir / "reports/sensitivity.md").read_text()
    assert "## tiny" in text and "Candidates: lr 0.0001, lr 0.001." in text and "top-k1 below full" in text
    assert planned_jobs(workdir, "reports/sensitivity.md") == {}


@pytest.mark.slow
def test_a_new_candidate_runs_its_selection_jobs_and_re_runs_only_the_variants_whose_choice_changed(tuned_run):
    workdir, config = tuned_run
    before, times = choices(workdir), finetune_times(workdir)
    config = changed(config, "tuning.learning_rates", [*TUNING["learning_rates"], NEW_RATE])
    write_config(workdir, config)
    plan = planned_jobs(workdir, *TARGETS)
    assert plan.get("tune_learning_rate") == len(VARIANTS) and plan.get("choose_learning_rate") == len(VARIANTS)
    assert not {"prepare_task", "prune", "measure_latency"} & set(plan)
    result = snakemake(workdir, "--cores", "2", *TARGETS)
    after, new_times = choices(workdir), finetune_times(workdir)
    assert all(tuning.lr_name(NEW_RATE) in c["candidates"] for c in after.values())
    moved = {v for v in VARIANTS if after[v]["chosen"] != before[v]["chosen"]}
    assert moved != set(VARIANTS), after  # NEW_RATE trains as 1e-3 does: it ties with it at best, and loses the tie
    for variant in VARIANTS:  # fine-tuned and evaluated again exactly when its choice changed
        for name in ("train_log.json", "metrics.json"):
            assert (new_times[variant, name] != times[variant, name]) == (variant in moved), (variant, name, result.stderr)
    executed = result.stdout + result.stderr
    assert executed.count("rule finetune:") == executed.count("rule evaluate:") == len(moved), executed
    assert planned_jobs(workdir, *TARGETS) == {}


@pytest.mark.slow
def test_a_changed_choice_re_runs_its_variants_cells_at_the_new_rate(tuned_run):
    workdir, config = tuned_run
    before, times = choices(workdir), finetune_times(workdir)
    kept = [lr for lr in config["tuning"]["learning_rates"] if lr != before["top-k1"]["chosen"]]
    write_config(workdir, changed(config, "tuning.learning_rates", kept))  # the chosen rate withdrawn
    result = snakemake(workdir, "--cores", "2", *TARGETS)
    after, new_times = choices(workdir), finetune_times(workdir)
    assert after["top-k1"]["chosen"] != before["top-k1"]["chosen"]
    # one candidate left is a fixed rate: no selection fine-tune, the choice says so
    assert "tune_learning_rate" not in result.stdout + result.stderr
    assert all(choice["fixed"] and choice["candidates"] == {tuning.lr_name(kept[0]): None} for choice in after.values())
    for variant in VARIANTS:
        moved = after[variant]["chosen"] != before[variant]["chosen"]
        for name in ("train_log.json", "metrics.json"):
            assert (new_times[variant, name] != times[variant, name]) == moved, (variant, name)
        cell = workdir / f"results/cells/tiny/{variant}/sst2/seed1"
        assert json.loads((cell / "train_log.json").read_text())["config"]["learning_rate"] == after[variant]["chosen"]
        assert json.loads((cell / "metrics.json").read_text())["tuning"]["chosen"] == after[variant]["chosen"]
    assert planned_jobs(workdir, *TARGETS) == {}


@pytest.mark.slow
def test_poisoned_dev_labels_change_no_choice(tuned_run):
    """The selection never reads the dev rows: the dev labels rewritten (all one class) leave every
    candidate's held-out score, and so the choice, exactly as they were (one variant, to keep it short)."""
    workdir, config = tuned_run
    write_config(workdir, config)  # both candidates again (the test before left one): the same choice as at first
    target = "results/tuning/tiny/top-k1/sst2/choice.json"
    snakemake(workdir, "--cores", "2", target)
    before = choices(workdir)["top-k1"]
    assert len(before["candidates"]) == 2 and "fixed" not in before
    dev = Path(config["tasks"]["sst2"]["source"]["path"]) / "dev.tsv"
    header, *lines = dev.read_text().splitlines(keepends=True)
    assert {line.rstrip("\n").rsplit("\t", 1)[1] for line in lines} == {"0", "1"}
    dev.write_text(header + "".join(line.rstrip("\n").rsplit("\t", 1)[0] + "\t1\n" for line in lines))
    assert planned_jobs(workdir, target).get("tune_learning_rate") == len(before["candidates"])  # run again on the new features
    snakemake(workdir, "--cores", "2", target)
    assert choices(workdir)["top-k1"] == before
