"""Tokenized task splits, stored once per (model, task) and shared by every strategy.

A split is saved as one ``.npz`` of flat token arrays plus row offsets, which loads with
``allow_pickle=False`` (no pickles anywhere) and keeps ragged rows without padding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Features:
    """Token ids of one split; row i is ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices, pad_token_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Pad the rows at ``indices`` to the longest of them (dynamic padding), or to ``pad_to``."""
        lengths = self.lengths()[indices]
        width = pad_to or int(lengths.max())
        ids = np.full((len(indices), width), pad_token_id, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        types = np.zeros((len(indices), width), dtype=np.int64) if self.token_type_ids is not None else None
        for row, i in enumerate(indices):
            start, end = self.offsets[i], self.offsets[i + 1]
            ids[row, : end - start] = self.input_ids[start:end]
            mask[row, : end - start] = 1
            if types is not None:
                types[row, : end - start] = self.token_type_ids[start:end]
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
    )


def save(features: Features, path: Path) -> None:
    arrays = {"input_ids": features.input_ids, "offsets": features.offsets, "labels": features.labels}
    if features.token_type_ids is not None:
        arrays["token_type_ids"] = features.token_type_ids
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load(path: Path) -> Features:
    with np.load(path, allow_pickle=False) as data:
        return Features(
            input_ids=data["input_ids"],
            token_type_ids=data["token_type_ids"] if "token_type_ids" in data else None,
            offsets=data["offsets"],
            labels=data["labels"],
        )


def split_path(features_dir: Path, split: str) -> Path:
    return Path(features_dir) / f"{split}.npz"


def read_info(features_dir: Path) -> dict:
    return json.loads((Path(features_dir) / "info.json").read_text())
