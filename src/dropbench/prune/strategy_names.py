"""The names of the strategies a config key implies instead of listing them (pure string grammar,
import-light: planning reads it).

- ``layer<i>`` drops layer i alone (1-based) at k = 1: the layer-importance profile (``layer_profile``).
- ``drop_<i>_<j>...`` drops exactly layers i, j, ... (1-based, strictly ascending) at k = their number: the
  cells of ``subsets`` (one layer is ``layer<i>``).
- ``cls_above_<thousandths>`` is the paper's [CLS]-threshold rule at one threshold (``cls_thresholds``): it
  decides k itself (its cells have k = 0).

dropbench.prune.strategies resolves each of them as a family of names (``strategies.family_of``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

SINGLE_LAYER_PREFIX, SUBSET_PREFIX, CLS_THRESHOLD_PREFIX = "layer", "drop_", "cls_above_"
_SINGLE_LAYER = re.compile(r"layer([1-9][0-9]*)")
_SUBSET = re.compile(r"drop((?:_[1-9][0-9]*){2,})")


def single_layer_number(name) -> int | None:
    """i for a strategy named ``layer<i>``, else None."""
    match = _SINGLE_LAYER.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def subset_layers(name) -> tuple[int, ...] | None:
    """The 1-based layers a named subset drops (``drop_1_4`` -> (1, 4), ``layer3`` -> (3,)); None for any
    other name, including a ``drop_`` name whose layers are not strictly ascending."""
    layer = single_layer_number(name)
    if layer is not None:
        return (layer,)
    match = _SUBSET.fullmatch(name) if isinstance(name, str) else None
    if not match:
        return None
    layers = tuple(int(part) for part in match.group(1).split("_")[1:])
    return layers if all(a < b for a, b in zip(layers, layers[1:])) else None


def subset_name(layers: Iterable[int]) -> str:
    """The strategy that drops exactly ``layers`` (1-based): ``layer<i>`` for one, ``drop_<i>_<j>...`` else."""
    layers = sorted(layers)
    return f"layer{layers[0]}" if len(layers) == 1 else "drop_" + "_".join(map(str, layers))


def cls_threshold_name(threshold: float) -> str:
    """The strategy of one threshold, named by it in thousandths: 0.95 -> ``cls_above_950``."""
    thousandths = round(threshold * 1000) if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) else None
    if thousandths is None or not 0 < thousandths < 1000 or abs(thousandths - threshold * 1000) > 1e-6:
        raise ValueError(f"[CLS] threshold {threshold!r}: allowed numbers 0 < t < 1 with at most 3 decimals (e.g. 0.95, 0.925)")
    return f"{CLS_THRESHOLD_PREFIX}{thousandths:03d}"


def cls_threshold_of(name: str) -> float | None:
    """The threshold of a ``cls_above_<thousandths>`` name (``cls_above_950`` -> 0.95), else None."""
    if not isinstance(name, str) or not name.startswith(CLS_THRESHOLD_PREFIX):
        return None
    digits = name.removeprefix(CLS_THRESHOLD_PREFIX)
    if len(digits) != 3 or not digits.isdigit() or digits == "000":
        return None
    return int(digits) / 1000
