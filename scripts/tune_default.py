"""Choose the default config's subsample sizes, epochs and learning rate on a held-out part of TRAIN.

The dev sets are the reported scores, so they are never looked at here. For each task, a fixed
held-out set is carved out of the train split (rows ranked by ``glue.subsample`` with seed 1001);
each setting fine-tunes the unpruned default model on a subsample of the remaining train rows and
scores it on the held-out rows. One line of JSON per run goes to stdout (and --out).

    .venv/bin/python scripts/tune_default.py --task sst2 --rows 2000 --lr 1e-4 --epochs 3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoTokenizer

from dropbench.data import features, glue, sources, tasks
from dropbench.evaluate import metrics
from dropbench.evaluate.evaluation import predict
from dropbench.train.loop import TrainConfig, finetune, load_for_task

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 1001


def split_train(task: str, held_out_rows: int):
    """(held-out rows, the rest) of the task's shipped train split; disjoint by construction."""
    source = {"kind": "local", "path": str(REPO / "resources" / "glue" / tasks.get_task(task).glue_dir)}
    frame = glue.load_split(task, source, "train").reset_index(drop=True)
    held = glue.subsample(frame, held_out_rows, HELD_OUT_SEED)
    return held, frame.drop(index=held.index)


def tokenized(tokenizer, task: str, frame, max_length: int) -> features.Features:
    spec = tasks.get_task(task)
    text_b = frame["text_b"] if spec.is_pair else None
    return features.tokenize(tokenizer, frame["text_a"], text_b, frame["label"], max_length, spec.is_regression)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--rows", type=int, required=True, help="train subsample size")
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--epochs", type=float, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-dir", default=str(REPO / "results" / "models" / "minilm_l6" / "pretrained"))
    parser.add_argument("--out", help="append the JSON line to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = Path(args.model_dir)
    if not model_dir.exists():
        source = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]["minilm_l6"]["source"]
        sources.stage_model(source, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    held, rest = split_train(args.task, args.held_out)
    train_frame = glue.subsample(rest.reset_index(drop=True), args.rows, 0)
    spec = tasks.get_task(args.task)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "features").mkdir()
        features.save(tokenized(tokenizer, args.task, train_frame, 128), features.split_path(tmp / "features", "train"))
        (tmp / "features" / "info.json").write_text(json.dumps({"padding_side": tokenizer.padding_side}))
        cfg = TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, checkpoint_minutes=0)
        started = time.perf_counter()
        finetune(model_dir, tmp / "features", args.task, tmp / "model", tmp / "state", cfg, tmp / "train_log.json")
        train_seconds = time.perf_counter() - started
        model = load_for_task(tmp / "model", args.task)
        held_features = tokenized(tokenizer, args.task, held, 128)
        preds = predict(model, held_features, torch.device("cpu"), 128, spec.is_regression, "held-out")
        scores = metrics.compute(args.task, preds, held_features.labels)
    line = json.dumps({"task": args.task, "rows": len(train_frame), "held_out": len(held), "lr": args.lr,
                       "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                       "train_seconds": round(train_seconds, 1), "held_out_scores": scores})
    print(line)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
