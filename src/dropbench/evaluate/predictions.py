"""A cell's dev-set predictions, so that any statistic can be recomputed without retraining.

One ``predictions.npz`` per cell (numpy, read with ``allow_pickle=False``), per dev split:
``<split>/index`` (row index in the dev split), ``<split>/prediction`` (class index, or score for
STS-B) and ``<split>/label``. ``sha256`` holds the digest of every other array (names, dtypes,
shapes and bytes), checked on every read; the zip's own CRCs catch truncation. The labels travel
with the predictions so that two cells are only ever compared on the same examples.

``cell`` (written by ``evaluate`` since issue 24) names the cell the predictions belong to (JSON of model,
strategy, k, task, seed), inside the digest; the cell's ``metrics.json`` records the digest
(``predictions_sha256``), so a file of another cell, or one written again, is told apart from the cell's
own (``dropbench.plan.integrity.predictions_problem``). Files written before have no ``cell``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from dropbench.runtime.atomic import atomic_file
from dropbench.plan.cells import Cell
from dropbench.plan.records import CorruptResultError

DIGEST = "sha256"
CELL = "cell"


def digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def save(path: str | Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]], cell: Mapping | None = None) -> str:
    """Write ``{split: (predictions, labels)}`` atomically, with the identity of ``cell`` if given; returns
    the digest."""
    arrays = {} if cell is None else {CELL: np.array(cell_identity(cell))}
    for split, (prediction, label) in splits.items():
        prediction, label = np.asarray(prediction), np.asarray(label)
        if prediction.shape != label.shape or prediction.ndim != 1:
            raise ValueError(f"split {split}: predictions {prediction.shape} and labels {label.shape} must be equal 1-D shapes")
        arrays[f"{split}/index"] = np.arange(len(prediction), dtype=np.int32)
        arrays[f"{split}/prediction"] = prediction
        arrays[f"{split}/label"] = label
    arrays[DIGEST] = np.array(digest(arrays))
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return str(arrays[DIGEST])


def cell_identity(cell: Mapping) -> str:
    """The JSON a predictions file holds to name its cell."""
    return json.dumps(Cell.of(cell).as_dict())


def read(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict | None, str]:
    """(splits as ``load`` gives them, the cell the file names or None, its digest); CorruptResultError if
    the file is damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CorruptResultError(f"{path}: unreadable predictions file ({err})") from None
    recorded = arrays.pop(DIGEST, None)
    if recorded is None or str(recorded) != digest(arrays):
        raise CorruptResultError(f"{path}: predictions do not match their recorded sha256")
    cell = json.loads(str(arrays.pop(CELL))) if CELL in arrays else None
    splits: dict[str, dict[str, np.ndarray]] = {}
    for name, arr in arrays.items():
        split, _, field = name.rpartition("/")
        splits.setdefault(split, {})[field] = arr
    return splits, cell, str(recorded)


def load(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {"index", "prediction", "label"}}``; CorruptResultError if the file is damaged."""
    return read(path)[0]


def check_paired(a: Mapping, b: Mapping, where: str) -> None:
    """Two cells' predictions cover the same dev splits with the same labels, row for row."""
    if set(a) != set(b):
        raise ValueError(f"{where}: dev splits differ ({sorted(a)} vs {sorted(b)})")
    for split in a:
        if not (np.array_equal(a[split]["index"], b[split]["index"]) and np.array_equal(a[split]["label"], b[split]["label"])):
            raise ValueError(f"{where}: split {split} has different dev rows or labels; the cells are not paired")
