"""Optional per-variant learning-rate selection (config ``tuning``; issue 22 item 3b).

Rows held out from each task's TRAIN split (``held_out`` of them, chosen with ``tuning.seed``; the same
rows for every cell of the task, never trained on by any cell) score one selection fine-tune per
candidate learning rate and (model, strategy, k, task), run with seed ``tuning.seed``
(``tune_learning_rate``, one cached job per candidate: ``results/tuning/<model>/<strategy>-k<k>/<task>/lr<lr>.json``).
The checkpoint ``choose_learning_rate`` picks the candidate with the best held-out task score (ties go to
the smaller learning rate) into ``choice.json``; every seed of that variant is fine-tuned at the choice.
A single candidate is no selection: its rate is fixed, and ``choice.json`` records it with no selection
fine-tune (``fixed_choice``; ``job_params.selection_rates`` is empty).
The dev rows we report are never read by the selection.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from dropbench.runtime.atomic import write_json
from dropbench.plan.cells import variant_name
from dropbench.plan.grid import HELD_OUT  # noqa: F401 (tuning.HELD_OUT: the split it chooses on)



def lr_name(lr: float) -> str:
    """A learning rate as written in paths and records: ``repr(float(lr))`` (``0.0002``, ``1e-05``)."""
    return repr(float(lr))


def candidate_file(model: str, strategy: str, k, task: str, lr: float | str) -> str:
    lr = lr if isinstance(lr, str) else lr_name(lr)
    return f"{variant_dir(model, strategy, k, task)}/lr{lr}.json"


def choice_file(model: str, strategy: str, k, task: str) -> str:
    return f"{variant_dir(model, strategy, k, task)}/choice.json"


def variant_dir(model: str, strategy: str, k, task: str) -> str:
    return f"results/tuning/{model}/{variant_name(strategy, k)}/{task}"


def tune(model_dir, features_dir, task: str, cfg, state_dir, out_path, eval_batch_size: int = 128) -> dict:
    """Fine-tune at ``cfg`` (one candidate learning rate, seed tuning.seed) on the train split into a
    temporary directory (the weights are not kept), score on the held-out split, write ``out_path``."""
    from dropbench.data import features
    from dropbench.train import heads
    from dropbench.runtime.device import pick_device
    from dropbench.evaluate.evaluation import score_held_out
    from dropbench.train.loop import finetune

    if not features.split_path(features_dir, HELD_OUT).exists():  # before the fine-tune, not after it
        raise FileNotFoundError(f"{features_dir} has no {HELD_OUT} split: prepare_task without config tuning?")
    with tempfile.TemporaryDirectory(prefix="tune-") as tmp:
        summary = finetune(model_dir, features_dir, task, Path(tmp) / "model", state_dir, cfg, Path(tmp) / "train_log.json")
        device = pick_device()
        model = heads.load_classifier(Path(tmp) / "model").to(device)
        held_out = score_held_out(model, features_dir, task, device, eval_batch_size)
    record = {
        "task": task,
        "learning_rate": float(cfg.learning_rate),
        "seed": cfg.seed,
        "held_out_rows": held_out["rows"],
        "train_rows": summary["train_rows"],
        "task_score": held_out["task_score"],
        "metrics": held_out["metrics"],
        "fit": summary.get("fit"),
        "final_loss": summary["final_loss"],
        "train_seconds": summary["train_seconds"],
    }
    write_json(out_path, record)
    return record


def choose(candidate_paths) -> dict:
    """The candidate with the best held-out task score (an undefined score counts as the worst; ties go
    to the smaller learning rate), with every candidate's score."""
    records = [json.loads(Path(path).read_text()) for path in candidate_paths]
    if not records:
        raise ValueError("no learning-rate candidates to choose from")

    def rank(record):
        score = record["task_score"]
        return (-(score if score is not None else -math.inf), record["learning_rate"])

    best = min(records, key=rank)
    return {
        "candidates": {lr_name(r["learning_rate"]): r["task_score"] for r in sorted(records, key=lambda r: r["learning_rate"])},
        "chosen": float(best["learning_rate"]),
        "held_out_rows": best["held_out_rows"],
        "seed": best["seed"],
    }


def fixed_choice(learning_rate: float, held_out_rows: int, seed: int) -> dict:
    """The choice of a single candidate (config ``tuning`` with one learning rate): no selection fine-tune ran,
    so there is no held-out score; ``fixed`` says so (a selected choice has no such key)."""
    return {"candidates": {lr_name(learning_rate): None}, "chosen": float(learning_rate),
            "held_out_rows": held_out_rows, "seed": seed, "fixed": True}


def write_choice(candidate_paths, out_path, params: dict) -> dict:
    """``choice.json``: ``choose`` among the candidates' records, or, with ``params`` (job_params.choice_params)
    naming a fixed learning rate, ``fixed_choice`` (and no records)."""
    fixed = params["fixed_learning_rate"]
    if fixed is not None and candidate_paths:
        raise ValueError(f"a fixed learning rate ({fixed}) has no candidates to choose from, got {list(candidate_paths)}")
    choice = choose(candidate_paths) if fixed is None else fixed_choice(fixed, params["held_out_rows"], params["seed"])
    write_json(out_path, choice)
    return choice


def chosen_learning_rate(choice_path) -> float:
    return float(json.loads(Path(choice_path).read_text())["chosen"])


def read_choice(choice_path) -> dict:
    """The ``tuning`` block of a cell's metrics record."""
    return json.loads(Path(choice_path).read_text())


def split_off(n_rows: int, n: int, seed: int) -> list[int]:
    """Positions of the ``n`` held-out rows of a split of ``n_rows`` rows, chosen by ``seed`` (ranked by
    sha256, as ``glue.subsample``, salted so that they are not the subsample's rows), sorted."""
    import hashlib

    if n >= n_rows:
        raise ValueError(f"tuning.held_out: {n} rows held out of a train split of {n_rows} rows leaves none to train on")
    keys = [hashlib.sha256(f"held_out:{seed}:{i}".encode()).digest() for i in range(n_rows)]
    return sorted(sorted(range(n_rows), key=keys.__getitem__)[:n])


def summary_rows(choice_paths: dict) -> list[dict]:
    """One row per (variant, candidate) for reports/tuning.csv: ``choice_paths`` maps (model, strategy, k,
    task) to a choice file."""
    rows = []
    for (model, strategy, k, task), path in choice_paths.items():
        choice = read_choice(path)
        for lr, score in choice["candidates"].items():
            rows.append({"model": model, "strategy": strategy, "k": k, "task": task, "learning_rate": float(lr),
                         "held_out_score": score, "chosen": float(lr) == choice["chosen"],
                         "held_out_rows": choice["held_out_rows"], "seed": choice["seed"],
                         "selected": not choice.get("fixed", False)})
    return rows


# selected: chosen among two or more candidates on the held-out rows (False: a single candidate, fixed, no score)
SUMMARY_COLUMNS = ["model", "strategy", "k", "task", "learning_rate", "held_out_score", "chosen", "held_out_rows", "seed",
                   "selected"]


def write_summary(choice_paths: dict, out_csv) -> None:
    """reports/tuning.csv: ``summary_rows`` of every variant's choice."""
    import pandas as pd

    from dropbench.runtime.atomic import atomic_file

    with atomic_file(out_csv) as tmp:
        pd.DataFrame(summary_rows(choice_paths), columns=SUMMARY_COLUMNS).to_csv(tmp, index=False)
