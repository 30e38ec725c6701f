"""GLUE task registry and split readers.

`load_split` returns a DataFrame with columns ``text_a``, ``text_b`` and
``label``. For single-sentence tasks (CoLA, SST-2) ``text_b`` is ``None`` on
every row; `TaskSpec.is_pair` says which convention applies. Labels are int
class indices into `TaskSpec.labels`, or floats for STS-B.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

TRAIN = "train"


class GlueDataError(ValueError):
    """A GLUE file, split or source description is missing or malformed."""


@dataclass(frozen=True)
class TaskSpec:
    """How to read one task's files and score it."""

    name: str
    glue_dir: str  # directory name in the GLUE distribution, e.g. "SST-2"
    tsv_has_header: bool
    tsv_text_columns: tuple[str, ...] | tuple[int, ...]  # header names, or indices when headerless
    tsv_label_column: str | int
    tsv_num_fields: int | None  # fixed field count for headerless files; else the header's count
    tsv_label_values: tuple[str, ...] | None  # raw TSV label strings, in class-index order
    hf_text_columns: tuple[str, ...]
    labels: tuple[str, ...] | None  # class names in index order; None for regression
    num_labels: int
    is_regression: bool
    label_range: tuple[float, float] | None  # allowed closed interval for regression labels
    dev_splits: tuple[str, ...]
    metrics: tuple[str, ...]
    primary_metric: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"task name {self.name!r}: allowed are lowercase letters, digits and '_'")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"task {self.name}: primary metric {self.primary_metric!r} not in {self.metrics}")
        if len(self.tsv_text_columns) != len(self.hf_text_columns) or len(self.hf_text_columns) not in (1, 2):
            raise ValueError(f"task {self.name}: needs 1 or 2 text columns, the same number for TSV and HF")
        if self.is_regression:
            if self.labels is not None or self.num_labels != 1 or self.label_range is None:
                raise ValueError(f"task {self.name}: regression needs labels=None, num_labels=1 and a label_range")
        elif self.labels is None or len(self.labels) != self.num_labels or (
            self.tsv_label_values is not None and len(self.tsv_label_values) != self.num_labels
        ):
            raise ValueError(f"task {self.name}: labels and tsv_label_values must both have num_labels entries")
        if TRAIN in self.dev_splits or not self.dev_splits:
            raise ValueError(f"task {self.name}: dev_splits must be non-empty and must not contain 'train'")

    @property
    def is_pair(self) -> bool:
        return len(self.hf_text_columns) == 2

    @property
    def splits(self) -> tuple[str, ...]:
        return (TRAIN, *self.dev_splits)


def _classification(name, glue_dir, tsv_text, label_col, hf_text, labels, tsv_values=None,
                    metrics=("accuracy",), header=True, num_fields=None, dev_splits=("validation",)):
    return TaskSpec(
        name=name, glue_dir=glue_dir, tsv_has_header=header, tsv_text_columns=tsv_text,
        tsv_label_column=label_col, tsv_num_fields=num_fields,
        tsv_label_values=tsv_values or tuple(str(i) for i in range(len(labels))),
        hf_text_columns=hf_text, labels=labels, num_labels=len(labels), is_regression=False,
        label_range=None, dev_splits=dev_splits, metrics=metrics, primary_metric=metrics[0],
    )


_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_GLUE_TASKS = (
    # CoLA TSVs have no header: source code, label, original-judgement mark, sentence.
    _classification("cola", "CoLA", (3,), 1, ("sentence",), ("unacceptable", "acceptable"),
                    metrics=("matthews_correlation",), header=False, num_fields=4),
    _classification("sst2", "SST-2", ("sentence",), "label", ("sentence",), ("negative", "positive")),
    _classification("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2"),
                    ("not_equivalent", "equivalent"), metrics=("f1", "accuracy")),
    _classification("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("question1", "question2"),
                    ("not_duplicate", "duplicate"), metrics=("f1", "accuracy")),
    TaskSpec(
        name="stsb", glue_dir="STS-B", tsv_has_header=True, tsv_text_columns=("sentence1", "sentence2"),
        tsv_label_column="score", tsv_num_fields=None, tsv_label_values=None,
        hf_text_columns=("sentence1", "sentence2"), labels=None, num_labels=1, is_regression=True,
        label_range=(0.0, 5.0), dev_splits=("validation",), metrics=("pearson", "spearmanr"),
        primary_metric="pearson",
    ),
    _classification("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
                    _NLI3, tsv_values=_NLI3, dev_splits=("validation_matched", "validation_mismatched")),
    _classification("qnli", "QNLI", ("question", "sentence"), "label", ("question", "sentence"),
                    _NLI2, tsv_values=_NLI2),
    _classification("rte", "RTE", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"),
                    _NLI2, tsv_values=_NLI2),
    # WNLI's class 0 is not_entailment; its TSV stores 0/1.
    _classification("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"),
                    ("not_entailment", "entailment")),
)
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _GLUE_TASKS}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


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

_EXTENSIONS = (".tsv", ".tsv.gz", ".parquet")
# The workflow checkout this package is imported from (the workflow puts its src/ first on the path):
# its resources/glue is the data the workflow ships.
WORKFLOW_DIR = Path(__file__).resolve().parents[3]


def local_data_dir(path: str | Path, workdir: str | Path | None = None) -> Path:
    """The directory of a local task source. A relative path is the user's, relative to the working directory
    (``workdir``, else the process's); one that does not exist there but exists under the workflow's directory
    is the data the workflow ships (``resources/glue/...``), so a config copied into another working
    directory, e.g. a Snakemake module's, still reads it. Absolute paths are taken as they are."""
    directory = Path(path).expanduser()
    if directory.is_absolute():
        return directory
    here = Path(workdir) / directory if workdir is not None else directory
    if here.is_dir():
        return here
    shipped = WORKFLOW_DIR / directory
    return shipped if shipped.is_dir() else here
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


def _file_stems(split: str) -> tuple[str, ...]:
    # GLUE names dev files dev*.tsv; HF exports name them validation*.
    return (split,) if split == TRAIN else (split.replace("validation", "dev", 1), split)


def find_split_file(spec: TaskSpec, directory: Path, split: str) -> Path:
    """The one file in `directory` that holds `split`; error if none or several."""
    if not directory.is_dir():
        raise GlueDataError(f"task {spec.name}: data directory {directory} does not exist")
    candidates = [directory / (stem + ext) for stem in _file_stems(split) for ext in _EXTENSIONS]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise GlueDataError(f"task {spec.name}: split {split!r} is ambiguous in {directory}: "
                            f"{', '.join(p.name for p in found)}; keep only one")
    if not found:
        present = [f"{s} ({', '.join(p.name for p in ps)})" for s in spec.splits
                   if (ps := [directory / (st + e) for st in _file_stems(s) for e in _EXTENSIONS
                              if (directory / (st + e)).is_file()])]
        raise GlueDataError(
            f"task {spec.name}: split {split!r} missing in {directory}: expected one of "
            f"{', '.join(p.name for p in candidates)}; splits present: {', '.join(present) or 'none'}")
    return found[0]


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
