"""Stage and tokenize one GLUE task for one model: the ``prepare_task`` step."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoTokenizer

from dropbench import features, glue
from dropbench.atomic import atomic_dir, write_json

log = logging.getLogger(__name__)


def prepare_task(
    model_dir: str | Path,
    task: str,
    source: dict,
    out_dir: str | Path,
    max_length: int,
    max_train_examples: int | None = None,
    seed: int = 0,
) -> dict:
    """Tokenize the train split (subsampled to ``max_train_examples``) and every dev split."""
    spec = glue.get_task(task)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    info = {"task": task, "source": source, "max_length": max_length, "padding_side": tokenizer.padding_side, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split in ["train", *spec.dev_splits]:
            frame = glue.load_split(task, source, split)
            available = len(frame)
            if split == "train":
                frame = glue.subsample(frame, max_train_examples, seed)
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
        write_json(Path(tmp) / "info.json", info)
    return info
