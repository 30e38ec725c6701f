"""Model cards (dropbench.model_card, rule model_card): a publishable Hugging Face folder per fine-tuned cell."""

from __future__ import annotations

import json
import os

import pytest
import torch
from tiny import one_thread, tiny_config, write_config  # noqa: F401 (a fixture)
from workflow_runner import planned_jobs, snakemake

from dropbench import heads, job_params, model_card

MNLI_RECORD = {
    "model": "m", "strategy": "top", "k": 2, "task": "mnli", "seed": 3, "status": "ok", "task_score": 0.7,
    "metrics": {"validation_matched_accuracy": 0.71, "validation_mismatched_accuracy": 0.69},
    "chance": {"validation_matched_accuracy": 0.35, "validation_mismatched_accuracy": 0.35},
    "dropped_layers": [4, 5], "kept_layers": [0, 1, 2, 3], "num_layers_pretrained": 6, "num_layers": 4,
    "parameters": 1234, "train_rows": 100, "train_rows_available": 1000, "train_seconds": 12.0,
    "stage_versions": {"finetune": 1}, "head": "mean_pooling",
}


def metrics_of_card(card) -> dict:
    return {result.metric_name: result.metric_value for result in card.data.eval_results}


def test_a_card_parses_and_its_model_index_holds_every_metric_with_its_split():
    from huggingface_hub import ModelCard

    cell = {key: MNLI_RECORD[key] for key in job_params.CELL_KEYS}
    identity = {"base_model": "org/base", "license": "apache-2.0"}
    text = model_card.render(cell, MNLI_RECORD, {"config": {"epochs": 3, "learning_rate": 2e-4}}, [], "a note",
                             identity, "abc123", {"README.md": "this card"})
    card = ModelCard(text)
    assert card.data.base_model == "org/base" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["glue"]
    assert metrics_of_card(card) == MNLI_RECORD["metrics"]
    assert {(r.dataset_config, r.dataset_split) for r in card.data.eval_results} == {
        ("mnli", "validation_matched"), ("mnli", "validation_mismatched")}
    assert "| dropped (1-based, 1 = lowest) | 5, 6 |" in card.text
    assert "| kept (1-based, in order) | 1, 2, 3, 4 |" in card.text
    assert "load_classifier" in card.text and "a note" in card.text and "abc123" in card.text


def test_an_undefined_metric_is_left_out_of_the_model_index_and_said_in_the_body():
    from huggingface_hub import ModelCard

    record = {**MNLI_RECORD, "task": "stsb", "metrics": {"pearson": None, "spearmanr": None}, "chance": {},
              "status": "degenerate", "task_score": None, "head": "native"}
    cell = {key: record[key] for key in job_params.CELL_KEYS}
    card = ModelCard(model_card.render(cell, record, {}, [], "", {}, "unknown", {}))
    assert not card.data.eval_results and "undefined" in card.text
    assert "base_model" not in card.content.split("---")[1]  # unknown base: no made-up hub id
    assert card.data.pipeline_tag == "text-classification"


def test_the_card_params_hold_the_cell_note_and_base_not_the_commit():
    cfg = {"source": {"kind": "hub", "repo_id": "org/base", "revision": "abc"}, "note": "n"}
    cell = {"model": "m", "strategy": "top", "k": 2, "task": "sst2", "seed": 1}
    params = job_params.card_params(cell, cfg)  # (a new commit must not rewrite every card)
    assert params == {"cell": cell, "note": "n", "base": {"base_model": "org/base", "license": None},
                      "version": model_card.CARD_VERSION}
    assert job_params.card_params(cell, {**cfg, "base_model": "x/y", "license": "mit"})["base"] == {
        "base_model": "x/y", "license": "mit"}


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """The tiny BERT with each head (native, mean_pooling), baseline and top-1, on SST-2."""
    workdir = tmp_path_factory.mktemp("cards")
    config = tiny_config(workdir, strategies=("top",), k=(1,))
    config["tasks"] = {"sst2": config["tasks"]["sst2"]}
    tiny = config["models"]["tiny"]
    config["models"] = {"tiny": {**tiny, "note": "a tiny random BERT", "license": "mit"},
                        "tiny_mp": {**tiny, "head": "mean_pooling", "base_model": "org/tiny-bert"}}
    write_config(workdir, config)
    plan = planned_jobs(workdir, ignore=())
    snakemake(workdir, "--cores", "2")
    return workdir, config, plan


@pytest.mark.slow
def test_every_cell_of_a_finished_grid_has_a_card_matching_its_metrics(finished_grid):
    from huggingface_hub import ModelCard

    workdir, _, plan = finished_grid
    assert plan["model_card"] == plan["evaluate"] == 4
    folders = sorted(workdir.glob("results/cells/*/*/*/seed*/publish"))
    assert len(folders) == 4
    for folder in folders:
        record = json.loads((folder.parent / "metrics.json").read_text())
        card = ModelCard.load(folder / "README.md")
        assert metrics_of_card(card) == record["metrics"]
        assert card.data.eval_results[0].dataset_config == "sst2"
        assert card.data.eval_results[0].dataset_split == "validation"
        dropped = ", ".join(str(layer + 1) for layer in record["dropped_layers"]) or "none"
        assert f"| dropped (1-based, 1 = lowest) | {dropped} |" in card.text
        assert "| seed | 1 |" in card.text and str(record["stage_versions"]["finetune"]) in card.text
        assert "n/a (one seed)" in card.text  # the variant's row of results/stats.csv, one seed
        if record["model"] == "tiny":
            assert card.data.license == "mit" and "a tiny random BERT" in card.text
        else:
            assert card.data.base_model == "org/tiny-bert" and "load_classifier" in card.text
        # what upload_folder publishes (its file filter, with the card's ignore pattern): plain files, model
        # files hard links to the cell's
        from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
        from huggingface_hub.utils import filter_repo_objects

        names = [path.name for path in folder.iterdir()]
        published = set(filter_repo_objects(names, ignore_patterns=[*model_card.UPLOAD_IGNORE, *DEFAULT_IGNORE_PATTERNS]))
        head_files = {"classifier_head.json", "classifier_head.safetensors"} if record["model"] == "tiny_mp" else set()
        assert published == {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                             "vocab.txt", *head_files}
        assert all(path.is_file() and not path.is_symlink() for path in folder.iterdir())
        for path in (folder.parent / "finetuned").iterdir():
            if not path.name.startswith("."):  # Snakemake's .snakemake_timestamp is each folder's own
                assert os.stat(folder / path.name).st_ino == os.stat(path).st_ino
        assert os.stat(folder / ".snakemake_timestamp").st_ino != os.stat(folder.parent / "finetuned/.snakemake_timestamp").st_ino


@pytest.mark.slow
def test_a_published_folder_loads_with_from_pretrained(finished_grid, one_thread):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    workdir, _, _ = finished_grid
    for model, head in (("tiny", heads.NATIVE), ("tiny_mp", heads.MEAN_POOLING)):
        folder = workdir / f"results/cells/{model}/top-k1/sst2/seed1/publish"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        batch = tokenizer(["a good movie", "the plot was bad"], return_tensors="pt", padding=True)
        expected = heads.load_classifier(folder.parent / "finetuned").eval()
        with torch.no_grad():
            if head == heads.NATIVE:
                logits = AutoModelForSequenceClassification.from_pretrained(folder).eval()(**batch).logits
            else:
                assert AutoModel.from_pretrained(folder).config.num_hidden_layers == 3
                logits = heads.load_classifier(folder).eval()(**batch).logits
            assert torch.allclose(logits, expected(**batch).logits)


@pytest.mark.slow
def test_cards_are_cached_and_their_params_rerun_only_the_cards(finished_grid):
    workdir, config, _ = finished_grid
    assert planned_jobs(workdir, ignore=()) == {}
    config["models"]["tiny"]["license"] = "apache-2.0"  # only the cards show it
    write_config(workdir, config)
    assert planned_jobs(workdir, ignore=()) == {"model_card": 2, "all": 1}
