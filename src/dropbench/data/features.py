"""Tokenized task splits, stored once per (model, task) and shared by every strategy.

A split is saved as one ``.npz`` of flat token arrays plus row offsets, which loads with
``allow_pickle=False`` (no pickles anywhere) and keeps ragged rows without padding.

Batches are padded on the staged tokenizer's side (``tokenizer.padding_side``), recorded in the
features' ``info.json``: XLNet pads on the left because its classification head reads the last
position; a right-padded row would be classified from a pad token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PADDING_SIDES = ("right", "left")


@dataclass
class Features:
    """Token ids of one split; row i is ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    offsets: np.ndarray
    labels: np.ndarray
    padding_side: str

    def __post_init__(self) -> None:
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side: bad value {self.padding_side!r}; allowed: {', '.join(PADDING_SIDES)}")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices, pad_token_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Pad the rows at ``indices`` to the longest of them (dynamic padding), or to ``pad_to``,
        on ``self.padding_side``."""
        lengths = self.lengths()[indices]
        width = pad_to or int(lengths.max())
        ids = np.full((len(indices), width), pad_token_id, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        types = np.zeros((len(indices), width), dtype=np.int64) if self.token_type_ids is not None else None
        for row, i in enumerate(indices):
            start, end = self.offsets[i], self.offsets[i + 1]
            cols = slice(width - (end - start), width) if self.padding_side == "left" else slice(0, end - start)
            ids[row, cols] = self.input_ids[start:end]
            mask[row, cols] = 1
            if types is not None:
                types[row, cols] = self.token_type_ids[start:end]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types)
        out["labels"] = torch.from_numpy(self.labels[indices])
        return out


def tokenize(tokenizer, text_a, text_b, labels, max_length: int, is_regression: bool) -> Features:
    encoded = tokenizer(
        list(text_a),
        None if text_b is None else list(text_b),
        truncation=True,
        max_length=max_length,
    )
    rows = encoded["input_ids"]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    types = None
    if "token_type_ids" in encoded:
        types = np.fromiter((t for r in encoded["token_type_ids"] for t in r), dtype=np.int8, count=int(offsets[-1]))
    return Features(
        input_ids=np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1])),
        token_type_ids=types,
        offsets=offsets,
        labels=np.asarray(labels, dtype=np.float32 if is_regression else np.int64),
        padding_side=tokenizer.padding_side,
    )


def save(features: Features, path: Path) -> None:
    arrays = {"input_ids": features.input_ids, "offsets": features.offsets, "labels": features.labels}
    if features.token_type_ids is not None:
        arrays["token_type_ids"] = features.token_type_ids
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load(path: Path) -> Features:
    """One split, with the padding side recorded in ``info.json`` beside it."""
    side = padding_side(Path(path).parent)
    with np.load(path, allow_pickle=False) as data:
        return Features(
            input_ids=data["input_ids"],
            token_type_ids=data["token_type_ids"] if "token_type_ids" in data else None,
            offsets=data["offsets"],
            labels=data["labels"],
            padding_side=side,
        )


def padding_side(features_dir: Path) -> str:
    """The staged tokenizer's padding side. Features staged before it was recorded are refused:
    guessing "right" would silently misclassify XLNet rows, so they must be prepared again."""
    info = read_info(features_dir)
    if "padding_side" not in info:
        raise ValueError(
            f"{Path(features_dir) / 'info.json'}: no 'padding_side' (staged by an older dropbench); "
            f"delete {features_dir} and run the workflow again to re-run prepare_task"
        )
    return info["padding_side"]


def split_path(features_dir: Path, split: str) -> Path:
    return Path(features_dir) / f"{split}.npz"


def read_info(features_dir: Path) -> dict:
    return json.loads((Path(features_dir) / "info.json").read_text())
