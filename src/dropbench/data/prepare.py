"""Stage and tokenize one GLUE task for one model: the ``prepare_task`` step."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from dropbench.data import features, glue, tasks
from dropbench.train import tuning
from dropbench.runtime.atomic import atomic_dir, write_json

log = logging.getLogger(__name__)


def prepare_task(
    model_dir: str | Path,
    task: str,
    source: dict,
    out_dir: str | Path,
    max_length: int,
    max_train_examples: int | None = None,
    seed: int = 0,
    held_out: dict | None = None,
) -> dict:
    """Tokenize the train split (subsampled to ``max_train_examples``) and every dev split.

    ``held_out`` ({"rows": n, "seed": s}, config ``tuning``): n rows of the train split, chosen by s, go to
    an extra split ``held_out`` (learning-rate selection, ``dropbench.train.tuning``) and out of ``train``, whose
    subsample is drawn from the rest; ``row_indices.npz`` records which rows of the task's train file each
    of the two holds."""
    spec = tasks.get_task(task)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    info = {"task": task, "source": source, "max_length": max_length, "padding_side": tokenizer.padding_side, "splits": {}}
    if held_out:
        info["held_out"] = {"rows": held_out["rows"], "seed": held_out["seed"]}
    row_indices = {}
    with atomic_dir(out_dir) as tmp:
        splits = ["train", *spec.dev_splits]
        frames = {}
        for split in splits:
            frames[split] = glue.load_split(task, source, split)
        if held_out:
            train = frames["train"].reset_index(drop=True)  # index = row of the train file
            positions = tuning.split_off(len(train), held_out["rows"], held_out["seed"])
            frames[tuning.HELD_OUT] = train.iloc[positions]
            frames["train"] = train.drop(index=positions)
            splits.insert(1, tuning.HELD_OUT)
        for split in splits:
            frame = frames[split]
            available = len(frame)
            if split == "train":
                frame = glue.subsample(frame, max_train_examples, seed)
            if held_out and split in ("train", tuning.HELD_OUT):
                row_indices[split] = np.asarray(frame.index, dtype=np.int64)
            text_b = frame["text_b"] if spec.is_pair else None
            split_features = features.tokenize(
                tokenizer, frame["text_a"], text_b, frame["label"], max_length, spec.is_regression
            )
            features.save(split_features, features.split_path(tmp, split))
            lengths = split_features.lengths()
            info["splits"][split] = {
                "rows": len(frame),
                "rows_available": available,
                "subsampled": len(frame) < available,
                "truncated_rows": int((lengths >= max_length).sum()),
                "mean_tokens": float(lengths.mean()),
            }
            log.info("%s/%s: %d of %d rows, mean %.1f tokens", task, split, len(frame), available, lengths.mean())
        if row_indices:
            with open(Path(tmp) / "row_indices.npz", "wb") as handle:
                np.savez(handle, **row_indices)
        write_json(Path(tmp) / "info.json", info)
    return info
