"""Model cards (dropbench.report.model_card, rule model_card): a publishable Hugging Face folder per fine-tuned cell."""

from __future__ import annotations

from dropbench.plan import job_params
from dropbench.plan.cells import Cell
from dropbench.report import model_card

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

    cell = Cell.of(MNLI_RECORD)
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
    assert "evaluated at commit" not in card.text  # a record from before the environment block


def test_a_record_says_which_commit_and_libraries_evaluated_it_and_the_card_repeats_it():
    from huggingface_hub import ModelCard

    from dropbench.runtime import provenance

    environment = provenance.environment()
    assert environment["commit"] == provenance.workflow_commit() and len(environment["commit"]) == 40
    assert environment["versions"]["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    assert set(environment["versions"]) == {"python", *provenance.LIBRARIES}
    assert provenance.workflow_commit("/") == "unknown"
    record = {**MNLI_RECORD, "environment": {"commit": "f00", "versions": {"torch": "9.9", "numpy": "1.0"}}}
    cell = Cell.of(record)
    card = ModelCard(model_card.render(cell, record, {}, [], "", {}, "abc", {}))
    assert "- evaluated at commit `f00` with torch 9.9, numpy 1.0" in card.text


def test_the_card_says_how_the_learning_rate_was_set_under_tuning():
    cell = Cell.of(MNLI_RECORD)
    selected = {**MNLI_RECORD, "tuning": {"candidates": {"0.0001": 0.6, "0.0002": 0.7}, "chosen": 2e-4, "held_out_rows": 300, "seed": 0}}
    fixed = {**MNLI_RECORD, "tuning": {"candidates": {"0.0002": None}, "chosen": 2e-4, "held_out_rows": 300, "seed": 0, "fixed": True}}
    text = {name: model_card.render(cell, record, {}, [], "", {}, "abc", {}) for name, record in
            (("plain", MNLI_RECORD), ("selected", selected), ("fixed", fixed))}
    assert "| learning rate chosen on held-out train rows among | {'0.0001': 0.6, '0.0002': 0.7} |" in text["selected"]
    assert "| learning rate | fixed at 0.0002 (a single `tuning` candidate, no selection) |" in text["fixed"]
    assert "chosen on held-out" not in text["fixed"] and "tuning" not in text["plain"]


def test_an_undefined_metric_is_left_out_of_the_model_index_and_said_in_the_body():
    from huggingface_hub import ModelCard

    record = {**MNLI_RECORD, "task": "stsb", "metrics": {"pearson": None, "spearmanr": None}, "chance": {},
              "status": "degenerate", "task_score": None, "head": "native"}
    cell = Cell.of(record)
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
