"""The GLUE task table and where a task's files are: `TaskSpec` (how to read and score one task), `TASKS`,
`get_task`, and the split files of a local source (`local_data_dir`, `find_split_file`). Import-light (no pandas or
numpy): planning needs it (dropbench.plan); the readers are in dropbench.data.glue."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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


# ---------------------------------------------------------------- split files

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
