"""The per-cell metrics record: its schema (package data: dropbench/schemas/metrics.schema.yaml), checked
on write and on read. Kept free of torch and transformers so that aggregation and integrity scans stay light."""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path

import jsonschema
import yaml

# Shipped inside the package so that a plain `pip install .` (not only a checkout) can validate records.
METRICS_SCHEMA = importlib.resources.files("dropbench") / "schemas" / "metrics.schema.yaml"


class CorruptResultError(ValueError):
    """A result file exists but is not a complete, valid result."""


@functools.lru_cache(maxsize=1)
def metrics_validator():
    """One validator for many files: ``jsonschema.validate`` would re-check the schema on every call."""
    schema = yaml.safe_load(METRICS_SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def record_problem(record) -> str | None:
    """Why ``record`` is not a complete metrics record, or None."""
    error = jsonschema.exceptions.best_match(metrics_validator().iter_errors(record))
    return f"not a valid metrics record: {error.message}" if error else None


def check_record(record: dict, where) -> None:
    problem = record_problem(record)
    if problem:
        raise CorruptResultError(f"{where}: {problem}")


def read_cell_metrics(path: str | Path) -> dict:
    """Read one metrics JSON, raising CorruptResultError if it is truncated or incomplete."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise CorruptResultError(f"{path}: truncated or corrupt JSON ({err})") from None
    check_record(record, path)
    return record
