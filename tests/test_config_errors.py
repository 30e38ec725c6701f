"""Every invalid config value is rejected before any job starts, naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from snakemake.utils import validate
from tiny import REPO, changed, tiny_config
from workflow_runner import snakemake

from dropbench.plan import config_check, config_files, optional_packages
from dropbench.plan.config_check import ConfigError

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid tiny config (local 4-layer BERT, sst2 + stsb) and its directory."""
    workdir = tmp_path_factory.mktemp("config_errors")
    return workdir, tiny_config(workdir, strategies=("top",), k=(1, 2))


def checked(config: dict) -> None:
    config_check.load_and_check(copy.deepcopy(config), SCHEMA)  # what the workflow and `dropbench estimate` run


def rejected(config: dict, *fragments: str) -> str:
    with pytest.raises(ConfigError) as err:
        checked(config)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def test_the_tiny_and_the_shipped_default_configs_pass(base):
    _, config = base
    checked(config)
    checked(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


# ------------------------------------------------------------------ one test per case


def test_unknown_strategy(base):
    rejected(changed(base[1], "strategies", ["top", "middle_out"]), "'strategies'", "'middle_out'", "bottom", "symmetric")


def test_strategy_family_needs_a_registered_base(base):
    rejected(changed(base[1], "strategies", ["task_specific_middle"]), "'strategies'", "'task_specific_middle'",
             "top", "task_specific_<base>", "iterative_<base>")
    checked(changed(base[1], "strategies", ["task_specific_top", "iterative_bottom"]))


def test_strategy_k_names_a_listed_strategy_and_valid_ks(base):
    config = changed(base[1], "strategies", ["top", "iterative_top"])
    checked(changed(config, "strategy_k", {"iterative_top": [3]}))
    rejected(changed(config, "strategy_k", {"bottom": [1]}), "'strategy_k'", "'bottom'", "top, iterative_top")
    rejected(changed(config, "strategy_k", {"iterative_top": [4]}), "'strategy_k.iterative_top'", "1..3", "4 layers")
    rejected(changed(config, "strategy_k", {"iterative_top": [1, 1]}), "'strategy_k.iterative_top'", "each value once")


def test_baseline_is_not_a_strategy(base):
    rejected(changed(base[1], "strategies", ["none"]), "'strategies'", "'none'", "always run")


def test_unknown_task(base):
    tasks = {**base[1]["tasks"], "qnli2": {"source": {"kind": "local", "path": "x"}}}
    rejected(changed(base[1], "tasks", tasks), "'tasks'", "'qnli2'", "mrpc")


def with_defaults(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, SCHEMA)
    return config


def test_unknown_model_source_kind(base):
    # The schema rejects it first (next test); config_check says the same to direct callers.
    config = with_defaults(base[1])
    config["models"]["tiny"]["source"] = {"kind": "ftp", "path": "x"}
    with pytest.raises(ConfigError, match=r"'models\.tiny\.source'.*'ftp'.*hub, local, package, split_packages"):
        config_check.check(config)


def test_unknown_model_source_kind_in_schema(base):
    from snakemake.exceptions import WorkflowError

    config = changed(base[1], "models.tiny.source", {"kind": "ftp", "path": "x"})
    with pytest.raises(WorkflowError, match=r"'ftp' is not one of \['hub', 'local', 'package', 'split_packages'\]"):
        validate(config, SCHEMA)


def test_unknown_architecture_read_from_local_config_json(base, tmp_path):
    model_dir = tmp_path / "gpt"
    shutil.copytree(base[1]["models"]["tiny"]["source"]["path"], model_dir)
    config_json = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config_json, "model_type": "gpt2"}))
    config = changed(base[1], "models.tiny.source", {"kind": "local", "path": str(model_dir)})
    rejected(config, "models.tiny.source", "'gpt2'", "bert", "roberta")


def test_local_model_without_config_json(base, tmp_path):
    (tmp_path / "empty").mkdir()
    config = changed(base[1], "models.tiny.source", {"kind": "local", "path": str(tmp_path / "empty")})
    rejected(config, "'models.tiny.source'", "config.json")


def test_missing_local_model_directory(base, tmp_path):
    config = changed(base[1], "models.tiny.source", {"kind": "local", "path": str(tmp_path / "nowhere")})
    rejected(config, "'models.tiny.source'", "nowhere", "is not a directory")


def test_k_zero(base):
    rejected(changed(base[1], "k", [0, 1]), "config key 'k'", "bad value 0", "1..3")


def test_negative_k_for_one_model(base):
    rejected(changed(base[1], "models.tiny.k", [-1]), "'models.tiny.k'", "bad value -1", "1..3")


def test_k_equal_to_declared_depth(base):
    rejected(changed(base[1], "k", [1, 4]), "'k'", "bad value 4", "1..3 (model 'tiny' has 4 layers)")


def test_k_beyond_depth_read_from_config_json(base):
    config = changed(base[1], "k", [5])
    del config["models"]["tiny"]["num_layers"]
    rejected(config, "'k'", "bad value 5", "1..3 (model 'tiny' has 4 layers)")


def test_declared_depth_disagrees_with_config_json(base):
    rejected(changed(base[1], "models.tiny.num_layers", 6), "'models.tiny.num_layers'", "bad value 6", "4, the depth in")


@pytest.mark.parametrize("key, empty", [("models", {}), ("tasks", {}), ("seeds", []), ("strategies", []), ("k", [])])
def test_empty_grid(base, key, empty):
    expected = {"strategies": "prune: true", "k": "at least one k"}.get(key, f"at least one entry in {key}")
    rejected(changed(base[1], key, empty), f"'{key}'", expected)


@pytest.mark.parametrize("key", ["training.learning_rate", "training.batch_size", "training.epochs", "models.tiny.learning_rate"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_training_value(base, key, value):
    rejected(changed(base[1], key, value), f"'{key}'", f"bad value {value}", "> 0")


@pytest.mark.parametrize("key, value, allowed", [
    ("training.warmup_ratio", 1.0, "0 <= value < 1"),
    ("training.checkpoint_minutes", -5, ">= 0"),
    ("training.max_grad_norm", 0, "> 0"),
    ("evaluation.batch_size", 0, "> 0"),
    ("evaluation.latency.repeats", 0, "> 0"),
    ("resources.finetune.threads", 0, "> 0"),
])
def test_other_out_of_range_numbers(base, key, value, allowed):
    rejected(changed(base[1], key, value), f"'{key}'", f"bad value {value}", allowed)


def test_max_train_examples_zero(base):
    rejected(changed(base[1], "tasks.sst2.max_train_examples", 0), "'tasks.sst2.max_train_examples'", "bad value 0")


def test_negative_seed(base):
    rejected(changed(base[1], "seeds", [1, -3]), "'seeds'", "bad value -3", "0..")


def test_retry_seeds_would_collide_with_a_seed_of_1000_or_more(base):
    config = changed(changed(base[1], "seeds", [1, 1002]), "retry_diverged", 1)
    rejected(config, "'seeds'", "bad value 1002", "0..999 with retry_diverged")
    checked(changed(config, "retry_diverged", 0))  # without retries any seed is fine
    with pytest.raises(Exception, match="retry_diverged"):
        checked(changed(base[1], "retry_diverged", -1))


@pytest.mark.parametrize("key, values", [("strategies", ["top", "top"]), ("k", [1, 2, 1]), ("seeds", [7, 7])])
def test_duplicate_list_entries(base, key, values):
    rejected(changed(base[1], key, values), f"'{key}'", "each value once")


def test_duplicate_model_and_training_keys_in_the_yaml_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "models:\n"
        "  tiny: {source: {kind: local, path: a}}\n"
        "  other: {source: {kind: local, path: b}}\n"
        "  tiny: {source: {kind: local, path: c}}\n"
        "training:\n"
        "  epochs: 1\n"
        "  epochs: 2\n"
    )
    assert config_files.duplicate_keys(path) == ["'models.tiny' (lines 2 and 4)", "'training.epochs' (lines 6 and 7)"]
    with pytest.raises(ConfigError, match=r"'models\.tiny' \(lines 2 and 4\).*each model, task and key once"):
        config_files.check_config_files([path])


def test_missing_task_data_file(base, tmp_path):
    data = tmp_path / "SST-2"
    shutil.copytree(base[1]["tasks"]["sst2"]["source"]["path"], data)
    (data / "dev.tsv").unlink()
    config = changed(base[1], "tasks.sst2.source", {"kind": "local", "path": str(data)})
    rejected(config, "'tasks.sst2.source.path'", "split 'validation' missing", "dev.tsv")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "-x"])
def test_model_names_cannot_escape_results(base, name):
    from snakemake.exceptions import WorkflowError

    config = copy.deepcopy(base[1])
    config["models"] = {name: config["models"]["tiny"]}
    with pytest.raises(WorkflowError, match="does not match"):
        validate(copy.deepcopy(config), SCHEMA)
    config = with_defaults(base[1])
    config["models"] = {name: config["models"]["tiny"]}
    with pytest.raises(ConfigError, match=r"config key 'models': bad value .*directory under results/"):
        config_check.check(config)


# ------------------------------------------------------------------ strict keys and small holes (issue 12)


@pytest.mark.parametrize("path, value, fragments", [
    ("training.learnig_rate", 1e-4, ["'training.learnig_rate'", "did you mean 'learning_rate'?"]),
    ("stratgies", ["top"], ["'stratgies'", "did you mean 'strategies'?"]),
    ("evaluation.latency.seqlen", 8, ["'evaluation.latency.seqlen'", "did you mean 'seq_len'?"]),
    ("models.tiny.sorce", {}, ["'models.tiny.sorce'", "did you mean 'source'?"]),
    ("tasks.sst2.source.paht", "x", ["'tasks.sst2.source.paht'", "did you mean 'path'?"]),
    ("extra_tasks", {"qnli_like": {"like": "qnli"}}, ["'extra_tasks'", "allowed here: models"]),
])
def test_unknown_keys_at_any_level_name_their_path_and_the_closest_key(base, path, value, fragments):
    rejected(changed(base[1], path, value), "unknown config key(s)", *fragments)


def test_every_object_of_the_schema_refuses_unknown_keys():
    schema = yaml.safe_load(open(SCHEMA).read())

    def objects(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" and isinstance(node.get("properties"), dict):
                yield where, node
            for key, child in node.items():
                yield from objects(child, f"{where}.{key}")

    found = list(objects(schema, "$"))
    assert len(found) > 10
    assert [where for where, node in found if node.get("additionalProperties") is not False] == []


def test_train_config_rejects_unknown_keys():
    from dropbench.train.loop import TrainConfig

    with pytest.raises(ValueError, match=r"\['learnig_rate'\] are unknown; allowed: .*'learning_rate'"):
        TrainConfig.from_dict({"learnig_rate": 1e-4})


def test_a_fractional_k_is_rejected(base):
    rejected(changed(base[1], "k", [2.0]), "config key 'k': bad value 2.0", "whole numbers")


def test_a_negative_scoring_seed_is_rejected(base):
    rejected(changed(base[1], "scoring", {"seed": -1}), "config key 'scoring.seed': bad value -1")


@pytest.mark.parametrize("key", ["evaluation.latency.seq_len", "training.max_length"])
def test_lengths_beyond_the_models_positions_are_rejected(base, key):
    # the tiny BERT has 160 position embeddings
    rejected(changed(base[1], key, 600), f"config key {key!r}: bad value 600", "1..160", "160 position embeddings")


# ------------------------------------------------------------------ through a real snakemake -n


def dry_run_rejects(workdir, config_text: str, *fragments: str) -> None:
    (workdir / "config.yaml").write_text(config_text)
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr  # snakemake prints the error to stdout when not on a terminal
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in output:\n{output}"
    assert "Job stats" not in output  # nothing was planned, so nothing ran
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


def hub_config(base_config: dict) -> dict:
    """The tiny config with a hub model: its depth is only what num_layers declares (and no torch import)."""
    config = copy.deepcopy(base_config)
    config["models"] = {"tiny": {"source": {"kind": "hub", "repo_id": "org/tiny", "revision": "0" * 40}, "num_layers": 4}}
    return config


def test_snakemake_rejects_k_beyond_depth_before_any_job(base, tmp_path):
    config = changed(hub_config(base[1]), "k", [1, 4])
    dry_run_rejects(tmp_path, yaml.safe_dump(config), "config key 'k': bad value 4", "1..3 (model 'tiny' has 4 layers)")


def test_snakemake_rejects_a_model_name_that_escapes_results(base, tmp_path):
    config = hub_config(base[1])
    config["models"] = {"../evil": config["models"]["tiny"]}
    dry_run_rejects(tmp_path, yaml.safe_dump(config), "'../evil' does not match")


def test_snakemake_rejects_a_model_given_twice(base, tmp_path):
    text = yaml.safe_dump(hub_config(base[1]), sort_keys=False)
    text = text.replace("models:\n", "models:\n  tiny:\n    source: {kind: local, path: elsewhere}\n", 1)
    dry_run_rejects(tmp_path, text, "'models.tiny' (lines 2 and 4)", "each model, task and key once")


def test_snakemake_rejects_a_misspelt_key_before_any_job(base, tmp_path):
    config = changed(hub_config(base[1]), "training.learnig_rate", 1e-4)
    dry_run_rejects(tmp_path, yaml.safe_dump(config), "'training.learnig_rate' (did you mean 'learning_rate'?")



@pytest.mark.parametrize("name", ["layer3", "iterative_layer3"])
def test_single_layer_strategies_come_only_from_layer_profile(base, name):
    rejected(changed(base[1], "strategies", [name]), "'strategies'", f"'{name}'", "layer_profile")


def test_seeds_and_k_given_on_the_command_line_become_integers():
    schema = config_files.load_schema()
    config = {"seeds": ["1", "2", " 3"], "k": ["2", 4], "strategies": ["1"]}
    config_files.values_from_command_line(config, schema)
    assert config == {"seeds": [1, 2, 3], "k": [2, 4], "strategies": ["1"]}
    bad = {"seeds": ["one"]}
    config_files.values_from_command_line(bad, schema)
    assert bad == {"seeds": ["one"]}  # left for the schema to refuse, naming it


# ------------------------------------------------------------------ command-line values (issue 24 item 4)


def test_values_inside_lists_and_mappings_from_the_command_line_take_the_schemas_types():
    # --config 'training={learning_rate: 1.0e-3, ...}' hands every nested value over as a string
    config = {"training": {"learning_rate": "1.0e-3", "epochs": "30", "group_by_length": "false", "warmup_ratio": "1e-1"},
              "tasks": {"sst2": {"max_train_examples": "null", "source": {"kind": "local", "path": "7"}}},
              "evaluation": {"latency": {"tolerance": ".05", "repeats": "+4"}}, "cls_thresholds": ["0.95", "1"],
              "models": {"m": {"prune": "True", "k": ["2"], "note": "3", "source": {"kind": "hub", "revision": "0000"}}},
              "partial_summary": "true", "layer_profile": "false"}
    config_files.values_from_command_line(config, config_files.load_schema())
    assert config["training"] == {"learning_rate": 1e-3, "epochs": 30, "group_by_length": False, "warmup_ratio": 0.1}
    assert config["tasks"]["sst2"] == {"max_train_examples": None, "source": {"kind": "local", "path": "7"}}
    assert config["evaluation"]["latency"] == {"tolerance": 0.05, "repeats": 4}
    assert config["cls_thresholds"] == [0.95, 1]
    assert config["models"]["m"] == {"prune": True, "k": [2], "note": "3", "source": {"kind": "hub", "revision": "0000"}}
    assert (config["partial_summary"], config["layer_profile"]) == ("true", "false")  # the schema takes these strings


def test_a_command_line_number_passes_and_a_bad_one_is_named_by_its_key(base):
    # before: "'1.0e-3' is not of type 'number'" for a valid number
    checked(changed(base[1], "training.learning_rate", "1.0e-3"))
    checked(changed(base[1], "k", ["1", "3"]))
    rejected(changed(base[1], "training.learning_rate", "fast"), "config key 'training.learning_rate': 'fast' is not of type 'number'")
    rejected(changed(base[1], "k", ["2.0"]), "config key 'k[0]': '2.0' is not of type 'integer'")


def test_snakemake_takes_nested_command_line_values_and_k_from_an_overlay_file(base, tmp_path):
    config = hub_config(base[1])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    ok = snakemake(tmp_path, "-n", "--config", "training={learning_rate: 1.0e-3, epochs: 2}", "seeds=[1,2]", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Snakemake itself refuses a one-character top-level key before the workflow runs; config/README.md
    # documents the overlay instead
    refused = snakemake(tmp_path, "-n", "--config", "k=[2]", check=False)
    assert refused.returncode != 0 and "Config entry must start with a valid identifier" in refused.stdout + refused.stderr
    (tmp_path / "overlay.yaml").write_text("k: [9]\n")
    overlay = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "config.yaml"), str(tmp_path / "overlay.yaml"), check=False)
    assert overlay.returncode != 0
    assert "config key 'k': bad value 9; allowed: 1..3 (model 'tiny' has 4 layers)" in overlay.stdout + overlay.stderr


def with_second_entry(config: dict, name: str, source: dict | None = None) -> dict:
    config = copy.deepcopy(config)
    config["models"][name] = {**copy.deepcopy(config["models"]["tiny"]), **({"source": source} if source else {})}
    return config


def test_sensitivity_compares_two_or_more_entries_of_one_checkpoint(base):
    workdir, config = base
    two = with_second_entry(config, "tiny_cls")
    checked(changed(two, "sensitivity", ["tiny", "tiny_cls"]))
    rejected(changed(two, "sensitivity", ["tiny"]), "'sensitivity'", "two or more model entries")
    rejected(changed(two, "sensitivity", ["tiny", "tiny_clss"]), "'tiny_clss'", "model entries of this config: tiny, tiny_cls")
    rejected(changed(two, "sensitivity", ["tiny", "tiny"]), "'sensitivity'")
    copy_dir = workdir / "tiny_model_copy"
    if not copy_dir.exists():
        shutil.copytree(config["models"]["tiny"]["source"]["path"], copy_dir)
    other = with_second_entry(config, "other", {"kind": "local", "path": str(copy_dir)})
    rejected(changed(other, "sensitivity", ["tiny", "other"]), "'other'", "with the source of 'tiny'")


def test_tracking_needs_a_store_mlflow_can_log_to(base, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    config = changed(base[1], "tracking", {"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    checked(config)
    checked(changed(config, "tracking.mlflow.tracking_uri", "http://localhost:5000"))
    rejected(changed(config, "tracking.mlflow.tracking_uri", "mlruns"), "'tracking.mlflow.tracking_uri'", "'mlruns'",
             "sqlite:///mlflow.db")
    rejected(changed(config, "tracking.mlflow.tracking_uri", "sqlite:///:memory:"), "'sqlite:///:memory:'", "database file")
    rejected(changed(config, "tracking.mlflow.tracking_uri", "file:mlruns"), "'file:mlruns'", "MLFLOW_ALLOW_FILE_STORE=true")
    rejected(changed(config, "tracking.mlflow.tracking_uri", ""), "'tracking.mlflow.tracking_uri'")
    rejected(changed(config, "tracking.mlflow.experment", "x"), "'tracking.mlflow.experment'", "did you mean 'experiment'?")
    rejected(changed(config, "tracking.wandb", {}), "unknown config key(s)", "'tracking.wandb'")
    rejected(changed(base[1], "tracking", {"mlflow": {"experiment": "x"}}), "'tracking.mlflow'", "'tracking_uri' is a required property")


def test_tracking_without_mlflow_installed_stops_before_any_job(base, monkeypatch):
    import importlib.util

    config = changed(base[1], "tracking", {"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}})
    checked(config)
    optional_packages.check_optional_packages(config, uses_conda=False)  # installed here (requirements.txt)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("mlflow", "alembic") else real(name, *a))
    with pytest.raises(ConfigError, match=r"'tracking': this Python lacks mlflow, alembic; install them with `pip install -e \.\[tracking\]`"):
        optional_packages.check_optional_packages(config, uses_conda=False)
    optional_packages.check_optional_packages(config, uses_conda=True)  # the job's conda env has them
    optional_packages.check_optional_packages(base[1], uses_conda=False)  # no tracking: nothing looked up


def test_export_without_onnx_installed_stops_before_any_job(base, monkeypatch):
    import importlib.util

    config = changed(base[1], "export", {"variants": ["top-k1"]})
    checked(config)
    optional_packages.check_optional_packages(config, uses_conda=False)  # installed here (requirements.txt)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError, match=r"'export': this Python lacks onnxruntime; install them with `pip install -e \.\[export\]`"):
        optional_packages.check_optional_packages(config, uses_conda=False)
    optional_packages.check_optional_packages(config, uses_conda=True)
