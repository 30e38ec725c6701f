"""Is a stored result whole? Cheap checks that find corrupt or truncated results, and where failure records are.

The workflow scans the results of its cells while planning (``find_damaged``, read-only) and forces
the jobs that rebuild the damaged ones, so that Snakemake recomputes just those. The checks read headers only: a
safetensors file's JSON header must be parseable and its tensors must end exactly at the end of
the file; a metrics JSON must match ``dropbench/schemas/metrics.schema.yaml`` (``records.record_problem``).

A job that fails writes ``results/failed/<model>/<strategy>-k<k>/<task>/seed<seed>.json``
(``failure_path``; written by dropbench.runtime.failures), which the summary lists; a later success removes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dropbench.plan import grid, job_params
from dropbench.evaluate import predictions
from dropbench.prune import strategies
from dropbench.plan.cells import FAILED_ROOT, Cell
from dropbench.plan.grid import HELD_OUT
from dropbench.plan.records import CorruptResultError, record_problem

# The safetensors format caps its header at 100 MB.
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class Problem:
    path: Path  # what to remove so that it is recomputed (a file or a directory output)
    reason: str
    result: str | None = None  # the finished result it discredits (a cell's metrics.json, a latency record), if any

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# ------------------------------------------------------------------ single files


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def read_json_checked(path: str | Path):
    """(data, None), or (None, why the file is not readable JSON)."""
    try:
        return json.loads(Path(path).read_text()), None
    except OSError as err:
        return None, f"unreadable ({err})"
    except ValueError as err:
        return None, f"truncated or corrupt JSON ({err})"


def read_metrics_checked(path: str | Path) -> tuple[dict | None, str | None]:
    """A cell's metrics JSON, read once, and why it is not a complete record (None when it is)."""
    record, problem = read_json_checked(path)
    return record, problem or record_problem(record)


def json_problem(path: str | Path, required: Iterable[str] = ()) -> str | None:
    data, problem = read_json_checked(path)
    if problem:
        return problem
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    return f"lacks key(s) {missing}" if missing else None


def predictions_problem(path: Path, cell: Cell | None = None, record: dict | None = None,
                        features_dir: str | Path | None = None) -> str | None:
    """A cell's dev predictions (written with its metrics): readable and matching their sha256; and, with
    ``cell``/``record``/``features_dir``, bound to that cell: the cell the file names (files written since
    issue 24) is ``cell``, its digest is the one ``record`` (the cell's metrics.json) records, each dev
    split has the record's ``dev_rows`` rows and the labels of the split in ``features_dir`` (if there)."""
    if not path.exists():
        return None  # a missing output: Snakemake re-runs evaluate by itself
    try:
        splits, owner, digest = predictions.read(path)
    except CorruptResultError as err:
        return str(err)
    if cell is not None and owner is not None and owner != _identity(cell):
        return f"{path.name} holds the predictions of another cell ({_variant(owner)}, not {_variant(cell)})"
    recorded = (record or {}).get("predictions_sha256")
    if recorded is not None and recorded != digest:
        return f"{path.name} is not the file this cell's evaluate wrote (sha256 {digest[:12]}..., metrics.json records {recorded[:12]}...)"
    rows = (record or {}).get("dev_rows")
    held_out = (record or {}).get("held_out")
    if isinstance(rows, dict) and isinstance(held_out, dict):  # the held-out train rows, scored as their own split
        rows = {**rows, HELD_OUT: held_out.get("rows")}
    if isinstance(rows, dict) and sorted(rows) != sorted(splits):
        return f"{path.name} holds dev splits {sorted(splits)}, metrics.json has {sorted(rows)}"
    for split, arrays in sorted(splits.items()):
        if isinstance(rows, dict) and len(arrays["label"]) != rows[split]:
            return f"{path.name}: split {split} has {len(arrays['label'])} rows, metrics.json counts {rows[split]}"
        labels = _feature_labels(features_dir, split)
        if labels is not None and not (len(labels) == len(arrays["label"]) and (labels == arrays["label"]).all()):
            return f"{path.name}: split {split} has other rows or labels than {features_dir}/{split}.npz"
    return None


def _identity(cell) -> dict:
    return Cell.of(cell).as_dict()


def _variant(cell: dict) -> str:
    return Cell.of(cell).name


def _feature_labels(features_dir, split: str):
    """The labels of a prepared dev split, or None where it is not there (or not readable: features_problem's job)."""
    import numpy as np

    if features_dir is None:
        return None
    try:
        with np.load(Path(features_dir) / f"{split}.npz", allow_pickle=False) as data:
            return data["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def latency_problem(path: str | Path) -> str | None:
    """A latency record (``measure_latency``): readable, complete, and of the architecture its path names
    (``results/latency/<model>/<strategy>-k<k>/<scope>.json``)."""
    path = Path(path)
    problem = json_problem(path, ["architecture", "latency_ms", "parameters"])
    if problem:
        return problem
    architecture = json.loads(path.read_text())["architecture"]
    strategy, _, k = path.parent.name.rpartition("-k")
    named = {"model": path.parent.parent.name, "strategy": strategy, "k": k, "scope": path.stem}
    if not isinstance(architecture, dict) or {key: str(architecture.get(key)) for key in named} != named:
        return f"records the architecture {architecture!r}, not the one its path names"
    return None


def record_problems(record: dict, cell: grid.Cell, expected: dict, data_driven: set) -> list[Problem]:
    """Where a cell's valid metrics.json (or the info.json of its features, if there) disagrees with its
    cell and with what the config now asks (``expected``: ``features``, the prepare_task settings info.json
    records; ``training``, the fine-tune's ``job_params.trained_settings``; ``dropped``, the layers a
    data-free strategy drops, None if known only later): the output whose job must re-run first (so that
    it and everything below it are recomputed). Settings a record does not hold (records made before they
    were recorded) are unknown and trusted."""
    first = _first_training_output(cell)
    identity = _identity(cell.__dict__)
    recorded = {key: record.get(key) for key in identity}
    if recorded != identity:
        return [Problem(Path(first), f"metrics.json is the record of another cell ({_variant(recorded)})")]
    stages = {"download": grid.pretrained_dir(cell.model), "prepare": grid.features_dir(cell.model, cell.task),
              "prune": None if cell.is_baseline else _pruned(cell, data_driven), "finetune": first, "evaluate": cell.metrics}
    versions = record.get("stage_versions") or {}
    for stage, path in stages.items():  # the first stage whose code changed since the record was made
        if stage in versions and stage in job_params.STAGE_VERSIONS and versions[stage] != job_params.STAGE_VERSIONS[stage] and path:
            return [Problem(Path(path), f"{cell.metrics} was made by {stage} version {versions[stage]}, "
                                        f"the code is at version {job_params.STAGE_VERSIONS[stage]}")]
    features = grid.features_dir(cell.model, cell.task)
    info = read_json_checked(Path(features) / "info.json")[0] if (Path(features) / "info.json").exists() else None
    differ = _differences(info if isinstance(info, dict) else {}, expected.get("features") or {})
    if differ:
        return [Problem(Path(features), f"{features}/info.json (the features of {cell.metrics}) records {differ}")]
    if isinstance(info, dict) and info.get("held_out") and "held_out" not in record:
        return [Problem(Path(cell.metrics), f"{cell.metrics} has no scores on the held-out train rows its features "
                                            f"hold (evaluated before evaluate scored them)")]
    dropped = expected.get("dropped")
    if dropped is not None and not cell.is_baseline and sorted(record.get("dropped_layers") or []) != sorted(dropped):
        return [Problem(Path(_pruned(cell, data_driven)), f"{cell.metrics} records dropped layers "
                                                           f"{record.get('dropped_layers')}, the config drops {dropped}")]
    differ = _differences(record.get("trained_with") or {}, expected.get("training") or {})
    if differ:
        return [Problem(Path(first), f"{cell.metrics} records training {differ}")]
    return []


def _differences(recorded: dict, expected: dict) -> str:
    """'<key> <recorded>, the config asks <expected>' for each setting both hold that differs."""
    differ = [f"{key} {recorded[key]!r}, the config asks {expected[key]!r}"
              for key in sorted(set(recorded) & set(expected)) if not _same(recorded[key], expected[key])]
    return "; ".join(differ)


def _same(a, b) -> bool:
    a, b = job_params.canonical(a), job_params.canonical(b)
    if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float)) for v in (a, b)):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def _first_training_output(cell: grid.Cell) -> str:
    """The first fine-tune output of a cell: its first stage for task_specific_<base>, else ``finetuned``."""
    if strategies.family_of(cell.strategy)[0] == strategies.TASK_SPECIFIC:
        return f"{cell.dir}/frozen_finetune"
    return f"{cell.dir}/finetuned"


def _pruned(cell: grid.Cell, data_driven: set) -> str:
    return grid.pruned_dir(cell.model, cell.strategy, cell.k, cell.task if cell.strategy in data_driven else "any")


def features_problem(features_dir: str | Path) -> str | None:
    """Tokenized splits: info.json parses and every .npz is a readable zip (its directory is at the end)."""
    features_dir = Path(features_dir)
    problem = json_problem(features_dir / "info.json", ["splits", "padding_side"])
    if problem:
        return f"info.json: {problem}"
    for split in json.loads((features_dir / "info.json").read_text())["splits"]:
        path = features_dir / f"{split}.npz"
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()  # reads every member and checks its CRC
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
            return f"{path.name}: missing or truncated ({err})"
        if bad is not None:
            return f"{path.name}: member {bad} is corrupt (CRC mismatch)"
    return None


# ------------------------------------------------------------------ the grid's results


def find_damaged(cells: Iterable[grid.Cell], data_driven: Iterable[str], sources: dict | None = None,
                 expected: Callable[[grid.Cell], dict] | None = None, latency: Iterable[str] = ()) -> list[Problem]:
    """Damaged results that Snakemake must recompute: corrupt metrics files; predictions that are not
    their cell's (``predictions_problem``); records that disagree with their cell or with what the config
    now asks (``expected``: cell -> what ``record_problems`` compares; none without it); damaged latency
    records (``latency``: the grid's latency files); and the damaged intermediates (staged models, features,
    pruned models, fine-tuned models) of cells that have no valid metrics yet. A damaged intermediate
    under a valid metrics file is left alone: it never invalidates a valid result by itself.
    ``sources``: model -> its configured source (for the sha256).

    Only reads files; the workflow forces the jobs that rebuild them (Snakemake then replaces them).
    """
    data_driven, sources = set(data_driven), sources or {}
    problems, pending = [], []
    for cell in cells:
        metrics = Path(cell.metrics)
        if not metrics.exists():
            pending.append(cell)
            continue
        record, reason = read_metrics_checked(metrics)  # the predictions' check uses the same record
        if reason := reason or predictions_problem(
                Path(cell.dir) / "predictions.npz", cell, record, grid.features_dir(cell.model, cell.task)):
            problems.append(Problem(metrics, reason, cell.metrics))
            pending.append(cell)
        elif stale := record_problems(record, cell, expected(cell) if expected else {}, data_driven):
            problems += [dataclasses.replace(problem, result=cell.metrics) for problem in stale]
            pending.append(cell)
    for path in sorted(set(latency)):
        if Path(path).exists() and (reason := latency_problem(path)):
            problems.append(Problem(Path(path), reason, path))
    checks = {}
    for cell in pending:
        checks[grid.pretrained_dir(cell.model)] = lambda path, m=cell.model: pretrained_problem(path, sources.get(m, {}))
        checks[grid.features_dir(cell.model, cell.task)] = features_problem
        if not cell.is_baseline:
            scope = cell.task if cell.strategy in data_driven else "any"
            checks[grid.pruned_dir(cell.model, cell.strategy, cell.k, scope)] = pruned_problem
        checks[f"{cell.dir}/finetuned"] = checkpoint_problem
        if strategies.family_of(cell.strategy)[0] == strategies.TASK_SPECIFIC:  # its first stage (dropbench.train.families)
            checks[f"{cell.dir}/frozen_finetune"] = checkpoint_problem
        checks[f"{cell.dir}/train_log.json"] = lambda path: json_problem(path, ["train_seconds", "device"])
    for path, check in sorted(checks.items()):
        if Path(path).exists():
            problems += _as_problem(path, check(path))
    return problems


def pretrained_problem(model_dir: str | Path, source: dict) -> str | None:
    """A staged model: whole, and its weights file has the configured sha256 (if one is configured)."""
    problem, sha256 = checkpoint_problem(model_dir), source.get("sha256")
    if problem or not sha256:
        return problem
    weights = Path(model_dir) / source.get("weights_file", "model.safetensors")
    actual = sha256_file(weights)
    if actual != sha256.lower():
        return f"{weights.name} has sha256 {actual}, the config says {sha256}"
    return None


def pruned_problem(model_dir: str | Path) -> str | None:
    return checkpoint_problem(model_dir) or _prefixed("pruning.json", json_problem(Path(model_dir) / "pruning.json", ["dropped", "kept"]))


def _prefixed(name: str, problem: str | None) -> str | None:
    return f"{name}: {problem}" if problem else None


def _as_problem(path, reason: str | None) -> list[Problem]:
    return [Problem(Path(path), reason)] if reason else []


# ------------------------------------------------------------------ failure records


def failure_path(cell: Cell, root: str | Path = FAILED_ROOT) -> Path:
    return Path(root) / f"{cell.name}.json"
