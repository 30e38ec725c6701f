"""Is a stored result whole? Cheap checks that find corrupt or truncated results, and failure records.

The workflow scans the results of its cells before planning (``find_corrupt``) and removes the bad
ones (``remove``) so that Snakemake recomputes just those. The checks read headers only: a
safetensors file's JSON header must be parseable and its tensors must end exactly at the end of
the file; a metrics JSON must match ``workflow/schemas/metrics.schema.yaml`` (``records.record_problem``).

A job that fails writes ``results/failed/<model>/<strategy>-k<k>/<task>/seed<seed>.json``
(``failure_record``), which the summary lists; a later success removes it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dropbench import grid
from dropbench.atomic import write_json
from dropbench.records import record_problem

FAILED_ROOT = "results/failed"
# The safetensors format caps its header at 100 MB.
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class Problem:
    path: Path  # what to remove so that it is recomputed (a file or a directory output)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# ------------------------------------------------------------------ single files


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or None if its header and size agree."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"truncated: {size} bytes, shorter than the 8-byte header length"
            header_len = struct.unpack("<Q", head)[0]
            if not 2 <= header_len <= min(size - 8, MAX_HEADER_BYTES):
                return f"bad header length {header_len} for a file of {size} bytes"
            header = json.loads(handle.read(header_len))
    except OSError as err:
        return f"unreadable ({err})"
    except (ValueError, UnicodeDecodeError):
        return "header is not valid JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name!r} has bad data_offsets {offsets!r}"
        data_end = max(data_end, offsets[1])
    data_size = size - 8 - header_len
    if data_end != data_size:
        return f"truncated or padded: tensors need {data_end} data bytes, the file holds {data_size}"
    return None


def checkpoint_problem(model_dir: str | Path) -> str | None:
    """Why a saved model directory is incomplete, or None: config.json and every weights file are checked."""
    model_dir = Path(model_dir)
    try:
        json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        return f"config.json missing or corrupt ({err.__class__.__name__})"
    weights = sorted(model_dir.glob("*.safetensors"))
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as err:
            return f"{index.name} is corrupt ({err.__class__.__name__})"
        missing = sorted(s for s in shards if not (model_dir / s).is_file())
        if missing:
            return f"shard(s) {missing} listed in {index.name} are missing"
    if not weights:
        return "no *.safetensors weights file"
    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            return f"{path.name}: {problem}"
    return None


def _read_json(path: str | Path):
    """(data, None), or (None, why the file is not readable JSON)."""
    try:
        return json.loads(Path(path).read_text()), None
    except OSError as err:
        return None, f"unreadable ({err})"
    except ValueError as err:
        return None, f"truncated or corrupt JSON ({err})"


def metrics_problem(path: str | Path) -> str | None:
    """Why a cell's metrics JSON is not a complete record, or None."""
    record, problem = _read_json(path)
    return problem or record_problem(record)


def json_problem(path: str | Path, required: Iterable[str] = ()) -> str | None:
    data, problem = _read_json(path)
    if problem:
        return problem
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    return f"lacks key(s) {missing}" if missing else None


def features_problem(features_dir: str | Path) -> str | None:
    """Tokenized splits: info.json parses and every .npz is a readable zip (its directory is at the end)."""
    features_dir = Path(features_dir)
    problem = json_problem(features_dir / "info.json", ["splits"])
    if problem:
        return f"info.json: {problem}"
    for split in json.loads((features_dir / "info.json").read_text())["splits"]:
        path = features_dir / f"{split}.npz"
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as err:
            return f"{path.name}: missing or truncated ({err})"
    return None


# ------------------------------------------------------------------ the grid's results


def find_corrupt(cells: Iterable[grid.Cell], data_driven: Iterable[str]) -> list[Problem]:
    """Existing results of ``cells`` (and the models and features they use) that are not whole.

    Results that do not exist yet are not problems; Snakemake plans them anyway.
    """
    data_driven = set(data_driven)
    cells = list(cells)
    problems = []
    models = sorted({c.model for c in cells})
    pruned = sorted({grid.pruned_dir(c.model, c.strategy, c.k, c.task if c.strategy in data_driven else "any")
                     for c in cells if not c.is_baseline})
    for model_dir in [*(grid.pretrained_dir(m) for m in models), *pruned]:
        if Path(model_dir).exists():
            problems += _as_problem(model_dir, checkpoint_problem(model_dir))
    for features_dir in sorted({grid.features_dir(c.model, c.task) for c in cells}):
        if Path(features_dir).exists():
            problems += _as_problem(features_dir, features_problem(features_dir))
    for cell in cells:
        problems += _cell_problems(cell)
    return problems


def _cell_problems(cell: grid.Cell) -> list[Problem]:
    """A damaged fine-tune output takes the cell's metrics with it: Snakemake would not rebuild a
    missing intermediate under an existing metrics.json, and the cell should stay one whole set."""
    finetuned, train_log, metrics = Path(cell.dir) / "finetuned", Path(cell.dir) / "train_log.json", Path(cell.metrics)
    problems = []
    if finetuned.exists():
        problems += _as_problem(finetuned, checkpoint_problem(finetuned))
    if train_log.exists():
        problems += _as_problem(train_log, json_problem(train_log, ["train_seconds", "device"]))
    if problems:
        return problems + _as_problem(metrics, "its fine-tuned model is damaged, so the cell is recomputed"
                                      if metrics.exists() else None)
    return _as_problem(metrics, metrics_problem(metrics)) if metrics.exists() else []


def _as_problem(path, reason: str | None) -> list[Problem]:
    return [Problem(Path(path), reason)] if reason else []


def remove(problems: Iterable[Problem]) -> list[Problem]:
    """Delete each corrupt result (file or directory); returns what was removed."""
    removed = []
    for problem in problems:
        if problem.path.is_dir():
            shutil.rmtree(problem.path)
        else:
            problem.path.unlink(missing_ok=True)
        removed.append(problem)
    return removed


# ------------------------------------------------------------------ failure records


def failure_path(cell: dict, root: str | Path = FAILED_ROOT) -> Path:
    return Path(root) / cell["model"] / f"{cell['strategy']}-k{cell['k']}" / cell["task"] / f"seed{cell['seed']}.json"


def cell_from_wildcards(wildcards) -> dict:
    return {"model": wildcards.model, "strategy": wildcards.strategy, "k": int(wildcards.k),
            "task": wildcards.task, "seed": int(wildcards.seed)}


@contextlib.contextmanager
def failure_record(cell: dict, rule: str, root: str | Path = FAILED_ROOT):
    """Record an exception of ``rule`` for ``cell`` (then re-raise it); clear an old record on success.

    The record is ``{"model", "strategy", "k", "task", "seed", "rule", "error"}``. Interrupts
    (KeyboardInterrupt, SystemExit) are not failures of the cell and are not recorded.
    """
    path = failure_path(cell, root)
    try:
        yield
    except Exception as err:
        record = {key: cell[key] for key in ("model", "strategy", "k", "task", "seed")}
        write_json(path, {**record, "rule": rule, "error": f"{type(err).__name__}: {err}"})
        raise
    path.unlink(missing_ok=True)
