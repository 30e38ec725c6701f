"""Exactly what changed is recomputed (issue 12, items 4-6 and 9), on one finished tiny run.

Grid: model tiny (local, no sha256), strategy top, k 1, task sst2, seed 1 (plus a custom strategy from
the custom-strategy test on). The tests run in order; each edit of a file is undone (contents and
times) before the next test unless it says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_of_base_run
from tiny import changed, write_config
from workflow_runner import REPO, planned_jobs, snakemake

from dropbench.evaluate import predictions
from dropbench.plan.job_params import STAGE_VERSIONS

pytestmark = pytest.mark.slow

TOP = "results/cells/tiny/top-k1/sst2/seed1"
SCHEMA_DEFAULT_LEARNING_RATE = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())[
    "properties"]["training"]["properties"]["learning_rate"]["default"]
BASE = "results/cells/tiny/none-k0/sst2/seed1"
REPORTS = {"aggregate": 1, "tables": 1, "plot": 1, "stats": 1, "paper_comparison": 1, "plot_intervals": 1, "all": 1}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_run):
    workdir = tmp_path_factory.mktemp("recompute")
    return workdir, copy_of_base_run(base_run, workdir)


def plan_with(workdir: Path, config: dict) -> dict:
    write_config(workdir, config)
    return planned_jobs(workdir)


class restored:
    """Put a file's bytes and times back after an edit."""

    def __init__(self, path: Path):
        self.path, self.data, self.stat = path, path.read_bytes(), path.stat()

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        self.path.write_bytes(self.data)
        os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))


def test_every_result_records_the_stage_versions(finished_run):
    workdir, _ = finished_run
    for cell in (TOP, BASE):
        assert json.loads((workdir / cell / "metrics.json").read_text())["stage_versions"] == STAGE_VERSIONS


@pytest.mark.parametrize("key, value", [
    ("training.checkpoint_minutes", 3),
    ("evaluation.batch_size", 5),
    ("retry_diverged", 0),  # the default, given explicitly: no checkpoint, no retries
])
def test_operational_settings_plan_nothing(finished_run, key, value):
    workdir, config = finished_run
    assert plan_with(workdir, changed(config, key, value)) == {}


def test_the_slurm_profile_with_gpu_shards_plans_nothing(finished_run):
    workdir, _ = finished_run
    slurm = ["--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", "none"]
    assert planned_jobs(workdir, *slurm, env={"DROPBENCH_SLURM_GPU_SHARDS": "2"}) == {}


@pytest.mark.parametrize("key, value", [("evaluation.latency.repeats", 3), ("evaluation.latency.seq_len", 12)])
def test_a_new_latency_protocol_retimes_each_architecture_and_retrains_nothing(finished_run, key, value):
    workdir, config = finished_run
    plan = plan_with(workdir, changed(config, key, value))
    assert plan["measure_latency"] == 2  # the baseline and top-k1: once each, not per cell
    assert not {"finetune", "evaluate", "prune", "prepare_task", "download_model"} & set(plan)


def test_reordering_the_latency_protocol_plans_nothing(finished_run):
    workdir, config = finished_run
    protocol = config["evaluation"]["latency"]
    assert plan_with(workdir, changed(config, "evaluation.latency", dict(reversed(protocol.items())))) == {}


def test_a_rewritten_config_plans_nothing(finished_run):
    """Issue 27: the finished run's config written back with its keys sorted, or shuffled, is the same config."""
    import random

    from test_canonical_params import shuffled

    workdir, _ = finished_run
    with restored(workdir / "config.yaml") as path:
        config = yaml.safe_load(path.read_text())  # the finished grid, before the tests below change it
        assert planned_jobs(workdir) == {}
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        assert planned_jobs(workdir) == {}
        for seed in range(2):
            assert plan_with(workdir, shuffled(config, random.Random(seed))) == {}


def test_the_repository_moved_or_copied_elsewhere_plans_nothing(finished_run, tmp_path):
    """Issue 24 item 5: the report rules had absolute paths of the code as inputs, so a moved repository
    re-ran the 8 report jobs."""
    import shutil
    import subprocess
    import sys

    workdir, _ = finished_run
    moved = tmp_path / "elsewhere" / "dropbench"
    shutil.copytree(REPO, moved, ignore=shutil.ignore_patterns(".venv", ".git", "results", "reports", ".snakemake", "logs",
                                                             "__pycache__", ".pytest_cache", "benchmarks"))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(moved / "Snakefile"), "--directory", str(workdir),
                             "--configfile", str(workdir / "config.yaml"), "-n"],
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, result.stdout + result.stderr


COMPUTE_RULES = {"download_model", "prepare_task", "prune", "finetune", "evaluate", "measure_latency"}


def test_a_step_edit_re_runs_no_cell_and_a_changed_script_is_carried_over_by_touch(finished_run, tmp_path):
    """Issue 23 item 3: every rule's script is one call into dropbench.steps that never changes, so editing a step
    re-runs no fine-tune or evaluation (only the report rules whose digest holds the step module); a one-time
    change of the scripts (this change itself) is carried over by `snakemake --touch` (README)."""
    workdir, _ = finished_run
    copy = tmp_path / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "results", "reports", ".snakemake", "logs",
                                                            "__pycache__", ".pytest_cache", "benchmarks"))
    snakefile = copy / "Snakefile"
    assert planned_jobs(workdir, snakefile=snakefile) == {}
    for module, expected in (("models", {"stats"}), ("reports", {"aggregate", "tables", "plot"})):
        path = copy / "src" / "dropbench" / "steps" / f"{module}.py"
        with restored(path):
            path.write_text(path.read_text() + "\n# edited\n")
            plan = planned_jobs(workdir, snakefile=snakefile)
            assert expected <= set(plan) and not set(plan) & COMPUTE_RULES, plan
    script = copy / "workflow" / "scripts" / "models_step.py"
    script.write_text(script.read_text() + "# a script changed once\n")
    assert {"finetune", "evaluate", "prune"} <= set(planned_jobs(workdir, snakefile=snakefile))
    snakemake(workdir, "--touch", "--cores", "1", snakefile=snakefile)
    assert planned_jobs(workdir, snakefile=snakefile) == {}
    snakemake(workdir, "--touch", "--cores", "1")  # back to this checkout's scripts for the tests below
    assert planned_jobs(workdir) == {}


def test_adding_a_sha256_to_the_model_source_plans_nothing(finished_run):
    workdir, config = finished_run
    weights = workdir / config["models"]["tiny"]["source"]["path"] / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert plan_with(workdir, changed(config, "models.tiny.source.sha256", sha)) == {}


def test_a_weight_setting_plans_every_fine_tune(finished_run):
    workdir, config = finished_run
    assert plan_with(workdir, changed(config, "training.learning_rate", 1e-3)) == {"finetune": 2, "evaluate": 2, **REPORTS}


def test_records_are_checked_against_the_config_without_snakemakes_metadata(finished_run, tmp_path):
    """Issue 24 item 1: the finished run copied without .snakemake/ (as to another machine, or after
    `rm -rf .snakemake`): the records themselves tell what the config must re-run."""
    workdir, config = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".snakemake"), symlinks=True)  # times kept
    write_config(copy, config)
    assert planned_jobs(copy) == {}
    trained = json.loads((copy / TOP / "metrics.json").read_text())["trained_with"]
    assert trained["learning_rate"] == 5e-5 and trained["seed"] == 1  # the schema's default rate

    # (a) another learning rate: both fine-tunes, with the reason
    write_config(copy, changed(config, "training.learning_rate", 1e-3))
    dry = snakemake(copy, "-n")
    for cell in (TOP, BASE):
        assert (f"WARNING: damaged result {cell}/finetuned: {cell}/metrics.json records training learning_rate "
                f"{trained['learning_rate']!r}, the config asks 0.001") in dry.stdout + dry.stderr
    assert planned_jobs(copy) == {"finetune": 2, "evaluate": 2, **REPORTS}
    # records made before they held their settings and their predictions' digest: unknown, trusted as before
    kept = [restored(copy / cell / "metrics.json") for cell in (TOP, BASE)]
    for keep in kept:
        record = json.loads(keep.path.read_text())
        keep.path.write_text(json.dumps({k: v for k, v in record.items() if k not in ("trained_with", "predictions_sha256")}))
        os.utime(keep.path, ns=(keep.stat.st_atime_ns, keep.stat.st_mtime_ns))
    assert planned_jobs(copy) == {}
    for keep in kept:
        keep.__exit__()
    write_config(copy, config)

    # (b) two cells' predictions swapped, then one written again with the library's own save
    top, base = copy / TOP / "predictions.npz", copy / BASE / "predictions.npz"
    with restored(top), restored(base):
        top_bytes = top.read_bytes()
        top.write_bytes(base.read_bytes())
        base.write_bytes(top_bytes)
        dry = snakemake(copy, "-n")
        assert f"WARNING: damaged result {TOP}/metrics.json: predictions.npz holds the predictions of another cell (tiny/none-k0/sst2/seed1, not tiny/top-k1/sst2/seed1)" in dry.stderr
        assert planned_jobs(copy) == {"evaluate": 2, **REPORTS}
    splits = predictions.load(top)  # every example right: a valid file, of no cell
    predictions.save(top, {split: (arrays["label"], arrays["label"]) for split, arrays in splits.items()})
    dry = snakemake(copy, "-n")
    assert f"WARNING: damaged result {TOP}/metrics.json: predictions.npz is not the file this cell's evaluate wrote" in dry.stderr
    assert planned_jobs(copy) == {"evaluate": 1, **REPORTS}
    snakemake(copy, "--cores", "2")  # the cell is evaluated again: its own predictions back
    assert predictions.read(top)[1] == {"model": "tiny", "strategy": "top", "k": 1, "task": "sst2", "seed": 1}
    assert planned_jobs(copy) == {}

    # (c) a truncated latency record, named while planning
    latency = copy / "results/latency/tiny/top-k1/any.json"
    latency.write_text(latency.read_text()[:-10])
    dry = snakemake(copy, "-n")
    assert "WARNING: damaged result results/latency/tiny/top-k1/any.json: truncated or corrupt JSON" in dry.stderr
    assert planned_jobs(copy) == {"measure_latency": 1, **REPORTS}


def test_a_models_own_learning_rate_re_runs_its_fine_tunes_only_when_it_differs(finished_run):
    workdir, config = finished_run
    same = config["training"].get("learning_rate", SCHEMA_DEFAULT_LEARNING_RATE)
    assert plan_with(workdir, changed(config, "models.tiny.learning_rate", same)) == {}
    assert plan_with(workdir, changed(config, "models.tiny.learning_rate", 1e-3)) == {"finetune": 2, "evaluate": 2, **REPORTS}


def test_a_custom_strategy_runs_exactly_its_cells_and_follows_its_code(finished_run):
    workdir, config = finished_run
    code = workdir / "my_strategies.py"
    code.write_text("def second(num_layers, k, context):\n    return list(range(1, 1 + k))\n")
    config = {**config, "custom_strategies": ["my_strategies.py:second"], "strategies": ["top", "second"]}
    assert plan_with(workdir, config) == {"prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, **REPORTS}
    snakemake(workdir, "--cores", "2")
    assert json.loads((workdir / "results/cells/tiny/second-k1/sst2/seed1/metrics.json").read_text())["dropped_layers"] == [1]
    with restored(code):
        code.write_text("# a comment\n" + code.read_text())
        assert planned_jobs(workdir) == {}  # the same layers: nothing to redo
        code.write_text("def second(num_layers, k, context):\n    return list(range(2, 2 + k))\n")
        assert planned_jobs(workdir) == {"prune": 1, "measure_latency": 1, "finetune": 1, "evaluate": 1, **REPORTS}
    assert planned_jobs(workdir) == {}  # the later tests keep this grid: none, top and second on sst2


def test_editing_a_local_data_file_reruns_its_task(finished_run):
    workdir, config = finished_run
    train = workdir / config["tasks"]["sst2"]["source"]["path"] / "train.tsv"
    with restored(train):
        lines = train.read_text().splitlines(keepends=True)
        flipped = [lines[0]] + [line[:-2] + ("0" if line[-2] == "1" else "1") + "\n" for line in lines[1:]]
        train.write_text("".join(flipped))
        assert planned_jobs(workdir) == {"prepare_task": 1, "finetune": 3, "evaluate": 3, **REPORTS}
    assert planned_jobs(workdir) == {}


def test_editing_a_local_model_file_restages_it(finished_run):
    workdir, config = finished_run
    model_config = workdir / config["models"]["tiny"]["source"]["path"] / "config.json"
    with restored(model_config):
        model_config.write_text(model_config.read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
        assert planned_jobs(workdir) == {"download_model": 1, "prepare_task": 1, "prune": 2, "measure_latency": 3,
                                         "finetune": 3, "evaluate": 3, **REPORTS}


@pytest.mark.parametrize("command", [["-n"], ["--lint"], ["--summary"], ["--list-rules"], ["--unlock"]])
def test_no_planning_command_changes_a_file(finished_run, command):
    workdir, _ = finished_run
    metrics, weights = workdir / TOP / "metrics.json", workdir / BASE / "finetuned" / "model.safetensors"
    with restored(metrics), restored(weights):
        metrics.write_text(metrics.read_text()[:-30])
        weights.write_bytes(weights.read_bytes()[:100])
        before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file() and ".snakemake" not in p.parts}
        snakemake(workdir, *command, check=False)
        after = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file() and ".snakemake" not in p.parts}
        assert after == before


def test_a_damaged_result_is_listed_and_recomputed_and_a_damaged_intermediate_alone_is_not(finished_run):
    workdir, _ = finished_run
    metrics = workdir / TOP / "metrics.json"
    metrics.write_text(metrics.read_text()[:-30])
    (workdir / BASE / "finetuned" / "model.safetensors").unlink()  # a user saving disk
    (workdir / BASE / "train_log.json").unlink()
    dry = snakemake(workdir, "-n")
    output = dry.stdout + dry.stderr
    assert f"WARNING: damaged result {TOP}/metrics.json: truncated or corrupt JSON" in output
    assert f"{BASE}/finetuned" not in output  # under a valid metrics.json: left alone
    assert planned_jobs(workdir) == {"evaluate": 1, **REPORTS}
    assert metrics.exists()
    snakemake(workdir, "--cores", "2")
    assert json.loads(metrics.read_text())["dropped_layers"] == [3]
    assert json.loads((workdir / BASE / "metrics.json").read_text())["strategy"] == "none"
    assert planned_jobs(workdir) == {}


def test_a_failed_prepare_is_recorded_for_its_cells_with_its_reason(finished_run):
    workdir, config = finished_run
    train = workdir / config["tasks"]["sst2"]["source"]["path"] / "train.tsv"
    lines = train.read_text().splitlines(keepends=True)
    lines[3] = "no tabs here\n"
    train.write_text("".join(lines))
    result = snakemake(workdir, "--cores", "2", "--keep-going", check=False)
    assert result.returncode != 0
    variants = sorted(path.name for path in (workdir / "results/cells/tiny").iterdir())  # none-k0, top-k1, ...
    records = sorted(workdir.glob("results/failed/**/*.json"))
    assert [str(p.relative_to(workdir)) for p in records] == [f"results/failed/tiny/{v}/sst2/seed1.json" for v in variants]
    record = json.loads(records[0].read_text())
    named = train.relative_to(workdir)  # the file as the config names it (base_run's paths are relative)
    assert record["rule"] == "prepare_task" and f"{named}:4: expected 2 tab-separated fields" in record["error"]
    # the old results were made from the old data: a partial report shows the cells as failed, not ok
    snakemake(workdir, "--cores", "2", "--config", "partial_summary=true", "--", "report_only")
    missing = pd.read_csv(workdir / "reports" / "missing_cells.csv")
    assert sorted(f"{s}-k{k}" for s, k in zip(missing["strategy"], missing["k"])) == variants
    assert set(missing["status"]) == {"failed"}
    assert missing["reason"].str.contains("expected 2 tab-separated fields").all()
