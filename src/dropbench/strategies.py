"""Layer-dropping strategies: which encoder layers to remove.

A strategy is a small pure function ``(num_layers, k, context) -> layers to drop``
(0-indexed, layer 0 is the one right after the embeddings). ``context`` is a dict;
data-driven strategies read per-task scores from it (``context["similarity"]``,
see ``dropbench.layer_scores``), ``random`` reads ``context["seed"]``.

Adding a strategy takes one function and one config line:

1. Write the function anywhere, e.g. ``my_strategies.py``::

       def every_third(num_layers, k, context):
           return list(range(num_layers - 1, -1, -3))[:k]

   Set ``every_third.needs_data = True`` if it reads ``context["similarity"]``.
   (Inside this package use the ``@register("name", needs_data=...)`` decorator.)

2. Name it in the config: ``custom_strategies: ["my_strategies.py:every_third"]`` and
   ``strategies: [..., every_third]``;
   the workflow calls ``load_user_strategies`` on that list, after which
   ``every_third`` is usable like any built-in strategy.

``layers_to_drop`` validates every result, so a strategy only has to return
``k`` distinct in-range indices, in any order.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import random as _random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

StrategyFn = Callable[[int, int, dict], Iterable[int]]


@dataclass(frozen=True)
class _Strategy:
    fn: StrategyFn
    needs_data: bool


_REGISTRY: dict[str, _Strategy] = {}
_FILE_MODULES: dict[Path, object] = {}


def register(name: str, needs_data: bool = False) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering ``fn`` as strategy ``name``."""

    def decorator(fn: StrategyFn) -> StrategyFn:
        _add(name, fn, needs_data)
        return fn

    return decorator


def _add(name: str, fn: StrategyFn, needs_data: bool) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"strategy name must be a Python identifier, got {name!r}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing.fn is not fn:
        raise ValueError(f"strategy {name!r} is already registered (by {existing.fn.__module__}.{existing.fn.__qualname__})")
    _REGISTRY[name] = _Strategy(fn, needs_data)


def available() -> list[str]:
    return sorted(_REGISTRY)


def _get(name: str) -> _Strategy:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        layer = single_layer_number(name)
        if layer is not None:
            return _Strategy(_single_layer(layer), False)
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(available())}, "
                         "or layer<i> (drop only layer i, 1-based, at k = 1)") from None


# ---- the layer-importance profile's family: layer<i> drops only layer i (1-based), at k = 1.
_SINGLE_LAYER = re.compile(r"layer([1-9][0-9]*)")


def single_layer_number(name) -> int | None:
    """i for a strategy named ``layer<i>``, else None."""
    match = _SINGLE_LAYER.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def _single_layer(layer: int) -> StrategyFn:
    def drop_one_layer(num_layers, k, context):
        if k != 1:
            raise ValueError(f"strategy 'layer{layer}' drops exactly one layer: k must be 1, got {k}")
        if layer > num_layers:
            raise ValueError(f"strategy 'layer{layer}': a {num_layers}-layer model has layers 1..{num_layers}")
        return [layer - 1]

    return drop_one_layer


def needs_data(name: str) -> bool:
    return _get(name).needs_data


def function(name: str) -> StrategyFn:
    return _get(name).fn


def validate(name: str, num_layers: int | None = None, k: int | None = None) -> None:
    """Cheap check of a (strategy, k) request; ``num_layers`` may be unknown yet."""
    _get(name)
    if num_layers is not None and (not _is_int(num_layers) or num_layers < 2):
        raise ValueError(f"num_layers must be an integer >= 2 (need a layer to keep after dropping one), got {num_layers!r}")
    if k is None:
        return
    if not _is_int(k):
        raise ValueError(f"k must be an integer, got {k!r}")
    if num_layers is None:
        if k < 1:
            raise ValueError(f"k={k} is out of range: k must be >= 1 (and <= num_layers - 1)")
    elif not 1 <= k <= num_layers - 1:
        raise ValueError(f"k={k} is out of range for a {num_layers}-layer model: allowed 1..{num_layers - 1}")


def layers_to_drop(name: str, num_layers: int, k: int, context: dict | None = None) -> list[int]:
    """Sorted, unique indices of the ``k`` layers strategy ``name`` drops."""
    validate(name, num_layers, k)
    strategy = _get(name)
    context = dict(context or {})
    if strategy.needs_data and context.get("similarity") is None:
        raise ValueError(f"strategy {name!r} is data-driven: pass context['similarity'] (see dropbench.layer_scores)")
    raw = list(strategy.fn(num_layers, k, context))
    drop = sorted(set(raw))
    if len(raw) != k or len(drop) != k or not all(_is_int(i) and 0 <= i < num_layers for i in drop):
        raise ValueError(
            f"strategy {name!r} returned {raw!r} for num_layers={num_layers}, k={k}; "
            f"expected {k} distinct integers in 0..{num_layers - 1}"
        )
    return [int(i) for i in drop]


def load_user_strategies(specs: Iterable[str] | Mapping[str, str]) -> list[str]:
    """Register user functions; returns their strategy names.

    Each spec is ``"module.path:function"`` or ``"path/to/file.py:function"``,
    registered under the function's name. Pass a mapping ``{name: spec}`` to
    choose the names. A function's ``needs_data`` attribute (default False)
    marks it data-driven.
    """
    items = specs.items() if isinstance(specs, Mapping) else ((None, spec) for spec in specs)
    names = []
    for name, spec in items:
        fn = _import_function(spec)
        name = name or fn.__name__
        _add(name, fn, bool(getattr(fn, "needs_data", False)))
        names.append(name)
    return names


def _import_function(spec: str) -> StrategyFn:
    target, sep, attr = str(spec).rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"strategy spec {spec!r} must look like 'module.path:function' or 'path/to/file.py:function'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target), spec)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"strategy spec {spec!r}: {target!r} has no function {attr!r}")
    return fn


def _import_file(path: Path, spec: str):
    # Cached so that loading the same config line twice yields the same function.
    path = path.resolve()
    if path not in _FILE_MODULES:
        if not path.is_file():
            raise ValueError(f"strategy spec {spec!r}: file {str(path)!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"dropbench_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        _FILE_MODULES[path] = module
    return _FILE_MODULES[path]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _similarity(context: dict, num_layers: int) -> np.ndarray:
    sim = np.asarray(context["similarity"], dtype=float)
    if sim.shape != (num_layers + 1, num_layers + 1):
        raise ValueError(
            f"context['similarity'] has shape {sim.shape}; expected ({num_layers + 1}, {num_layers + 1}) "
            f"for a {num_layers}-layer model (depth 0 = embeddings)"
        )
    return sim


def _alternate(num_layers: int, k: int, first: int) -> list[int]:
    # Once the alternating positions run out, keep dropping the remaining
    # layers from the top down, so any 0 < k < L works.
    alternating = list(range(first, -1, -2))
    rest = [i for i in range(num_layers - 1, -1, -1) if i not in alternating]
    return (alternating + rest)[:k]


# ---------------------------------------------------------------- built-ins


@register("top")
def top(num_layers, k, context):
    return list(range(num_layers - k, num_layers))


@register("bottom")
def bottom(num_layers, k, context):
    return list(range(k))


@register("even_alternate")
def even_alternate(num_layers, k, context):
    """Every other layer starting at the top (L-1, L-3, ...); then remaining layers top-down."""
    return _alternate(num_layers, k, num_layers - 1)


@register("odd_alternate")
def odd_alternate(num_layers, k, context):
    """Every other layer starting one below the top (L-2, L-4, ...); then remaining layers top-down."""
    return _alternate(num_layers, k, num_layers - 2)


@register("symmetric")
def symmetric(num_layers, k, context):
    """A middle block of k layers. When L-k is odd the extra kept layer goes to the
    bottom half (lower layers hold the general features the paper finds hardest to lose)."""
    start = math.ceil((num_layers - k) / 2)
    return list(range(start, start + k))


@register("contribution", needs_data=True)
def contribution(num_layers, k, context):
    """Layers whose output is most similar to their input (similarity[l][l+1]);
    exact ties drop the lower layer first."""
    sim = _similarity(context, num_layers)
    scores = [sim[l, l + 1] for l in range(num_layers)]
    return sorted(range(num_layers), key=lambda l: (-scores[l], l))[:k]


@register("angular", needs_data=True)
def angular(num_layers, k, context):
    """Contiguous block l..l+k-1 minimising arccos(similarity[l][l+k]) / pi
    (ShortGPT-style block influence); exact ties pick the lowest block."""
    sim = _similarity(context, num_layers)
    distances = [np.arccos(np.clip(sim[l, l + k], -1.0, 1.0)) / np.pi for l in range(num_layers - k + 1)]
    start = min(range(len(distances)), key=lambda l: (distances[l], l))
    return list(range(start, start + k))


@register("random")
def random(num_layers, k, context):
    """k layers sampled uniformly without replacement, seeded by context['seed'] (default 0)."""
    seed = context.get("seed", 0)
    if not _is_int(seed):
        raise ValueError(f"context['seed'] must be an integer, got {seed!r}")
    return _random.Random(int(seed)).sample(range(num_layers), k)
