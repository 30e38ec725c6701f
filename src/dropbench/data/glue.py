"""GLUE split readers (pandas): `load_split` returns a DataFrame with columns ``text_a``, ``text_b`` and
``label``. For single-sentence tasks (CoLA, SST-2) ``text_b`` is ``None`` on every row; `TaskSpec.is_pair`
says which convention applies. Labels are int class indices into `TaskSpec.labels`, or floats for STS-B.
The task table and the split files are dropbench.data.tasks (import-light, used while planning).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from dropbench.data.tasks import GlueDataError, TaskSpec, find_split_file, get_task, local_data_dir


# ---------------------------------------------------------------- subsampling


def subsample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Keep `n` rows chosen by `seed`, in their original order (n=None or n >= len: all rows).

    Rows are ranked by sha256(f"{seed}:{position}") and the n lowest kept. This
    does not depend on numpy's RNG streams, so the choice is stable across
    library versions, and for one seed a smaller sample is a subset of a larger.
    The original index is kept so the chosen rows can be traced.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"subsample seed must be an int, got {seed!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"subsample size must be a positive int or None, got {n!r}")
    if n is None or n >= len(df):
        return df
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(len(df))]
    keep = sorted(sorted(range(len(df)), key=keys.__getitem__)[:n])
    return df.iloc[keep]


# ---------------------------------------------------------------- loading

_SOURCE_KEYS = {"local": {"kind", "path"}, "hub": {"kind", "dataset", "revision"}}


def load_split(task: str | TaskSpec, source: dict[str, Any], split: str) -> pd.DataFrame:
    """Read one split of `task` from `source` as columns text_a, text_b, label.

    source is {"kind": "local", "path": DIR} (GLUE TSV, .tsv.gz or HF-style
    parquet found in DIR) or {"kind": "hub", "dataset": ..., "revision": ...}.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if split not in spec.splits:
        raise ValueError(f"task {spec.name}: unknown split {split!r}; allowed: {', '.join(spec.splits)}")
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind not in _SOURCE_KEYS:
        raise ValueError(f"data source {source!r}: 'kind' must be one of {sorted(_SOURCE_KEYS)}")
    keys = set(source)
    if keys != _SOURCE_KEYS[kind]:
        raise ValueError(f"data source {source!r}: kind {kind!r} needs exactly the keys "
                         f"{sorted(_SOURCE_KEYS[kind])} (missing {sorted(_SOURCE_KEYS[kind] - keys)}, "
                         f"unexpected {sorted(keys - _SOURCE_KEYS[kind])})")
    if kind == "local":
        path = find_split_file(spec, local_data_dir(source["path"]), split)
        return _read_parquet(spec, path) if path.name.endswith(".parquet") else _read_tsv(spec, path)
    return _read_hub(spec, source["dataset"], source["revision"], split)


def _open_text(path: Path):
    # utf-8-sig drops the BOM that GLUE's MRPC files carry before the header.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_tsv(spec: TaskSpec, path: Path) -> pd.DataFrame:
    try:
        return _read_tsv_rows(spec, path)
    except UnicodeDecodeError as err:
        raise GlueDataError(f"{path}:{_first_non_utf8_line(path)}: not UTF-8 text ({err.reason}: "
                            f"{err.object[err.start:err.start + 1]!r}); GLUE files are UTF-8") from None


def _first_non_utf8_line(path: Path) -> int | str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return "?"


def _read_tsv_rows(spec: TaskSpec, path: Path) -> pd.DataFrame:
    rows: list[tuple[str, str | None, int | float]] = []
    with _open_text(path) as handle:
        # GLUE quotes are literal text, so no quote processing at all.
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        text_idx, label_idx, num_fields = _tsv_layout(spec, path, reader)
        for fields in reader:
            where = f"{path}:{reader.line_num}"
            if len(fields) != num_fields:
                raise GlueDataError(f"{where}: expected {num_fields} tab-separated fields, found {len(fields)}")
            texts = [fields[i] for i in text_idx]
            rows.append(_make_row(spec, where, texts, _parse_tsv_label(spec, where, fields[label_idx])))
    return _to_frame(spec, rows, str(path))


def _tsv_layout(spec: TaskSpec, path: Path, reader: Iterator[list[str]]) -> tuple[list[int], int, int]:
    if not spec.tsv_has_header:
        return list(spec.tsv_text_columns), int(spec.tsv_label_column), int(spec.tsv_num_fields)
    header = next(reader, None)
    if header is None:
        raise GlueDataError(f"{path}: empty file, expected a header line")
    wanted = [*spec.tsv_text_columns, spec.tsv_label_column]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise GlueDataError(f"{path}:1: header lacks column(s) {missing}; found {header}; "
                            f"task {spec.name} needs {wanted}")
    return [header.index(c) for c in spec.tsv_text_columns], header.index(spec.tsv_label_column), len(header)


def _parse_tsv_label(spec: TaskSpec, where: str, raw: str) -> int | float:
    if spec.is_regression:
        try:
            score = float(raw)
        except ValueError:
            raise GlueDataError(f"{where}: label {raw!r} is not a number; task {spec.name} needs a score "
                                f"in [{spec.label_range[0]}, {spec.label_range[1]}]") from None
        return _check_score(spec, where, score)
    try:
        return spec.tsv_label_values.index(raw)
    except ValueError:
        raise GlueDataError(f"{where}: label {raw!r} not allowed; task {spec.name} allows "
                            f"{list(spec.tsv_label_values)}") from None


def _check_score(spec: TaskSpec, where: str, value: float) -> float:
    low, high = spec.label_range
    if not (math.isfinite(value) and low <= value <= high):
        raise GlueDataError(f"{where}: label {value!r} outside [{low}, {high}] for task {spec.name}")
    return value


def _check_class(spec: TaskSpec, where: str, value: Any) -> int:
    if isinstance(value, np.generic):
        value = value.item()  # so messages show -1, not np.int64(-1)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < spec.num_labels:
        raise GlueDataError(f"{where}: label {value!r} not allowed; task {spec.name} allows class indices "
                            f"0..{spec.num_labels - 1} ({', '.join(spec.labels)})")
    return int(value)


def _make_row(spec: TaskSpec, where: str, texts: list[Any], label: int | float):
    for column, text in zip(spec.hf_text_columns, texts):
        if not isinstance(text, str) or not text.strip():
            raise GlueDataError(f"{where}: empty or missing text in column {column!r} ({text!r})")
    return texts[0], (texts[1] if spec.is_pair else None), label


def _to_frame(spec: TaskSpec, rows: list, origin: str) -> pd.DataFrame:
    if not rows:
        raise GlueDataError(f"{origin}: split has no examples")
    df = pd.DataFrame(rows, columns=["text_a", "text_b", "label"])
    df["label"] = df["label"].astype("float64" if spec.is_regression else "int64")
    return df


def _read_parquet(spec: TaskSpec, path: Path) -> pd.DataFrame:
    return _frame_from_hf(spec, pd.read_parquet(path), str(path))


def _frame_from_hf(spec: TaskSpec, table: pd.DataFrame, origin: str) -> pd.DataFrame:
    wanted = [*spec.hf_text_columns, "label"]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise GlueDataError(f"{origin}: lacks column(s) {missing}; found {list(table.columns)}; "
                            f"task {spec.name} needs {wanted}")
    # HF stores STS-B scores as float32, so they differ from the TSV's decimals by up to ~1e-7.
    labels = table["label"].to_numpy()
    texts = [table[c].tolist() for c in spec.hf_text_columns]
    rows = []
    for i, label in enumerate(labels.tolist() if spec.is_regression else labels):
        where = f"{origin}: row {i} (0-based)"
        if spec.is_regression:
            if isinstance(label, bool) or not isinstance(label, (int, float)):
                raise GlueDataError(f"{where}: label {label!r} is not a number")
            label = _check_score(spec, where, float(label))
        else:
            label = _check_class(spec, where, label)
        rows.append(_make_row(spec, where, [t[i] for t in texts], label))
    return _to_frame(spec, rows, origin)


def _read_hub(spec: TaskSpec, dataset: str, revision: str, split: str) -> pd.DataFrame:
    if not isinstance(dataset, str) or not dataset or not isinstance(revision, str) or not revision:
        raise ValueError(f"hub source needs non-empty strings 'dataset' and 'revision' (a commit hash pins "
                         f"the data), got dataset={dataset!r}, revision={revision!r}")
    import datasets  # heavy; only needed for this source kind

    ds = datasets.load_dataset(dataset, spec.name, split=split, revision=revision)
    return _frame_from_hf(spec, ds.to_pandas(), f"{dataset}@{revision} config {spec.name} split {split}")
