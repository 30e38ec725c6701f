"""Layer-dropping strategies: which encoder layers to remove.

A strategy is a small pure function ``(num_layers, k, context) -> layers to drop``
(0-indexed, layer 0 is the one right after the embeddings). ``context`` is a dict;
data-driven strategies read per-task scores from it (``context["similarity"]``,
see ``dropbench.prune.layer_scores``), ``random`` reads ``context["seed"]``.

Adding one (a function here under ``@register``, or in your own file named by ``custom_strategies``, which
``load_from_config`` registers): README "Add a strategy". ``layers_to_drop`` validates every result, so a
strategy only has to return ``k`` distinct in-range indices, in any order.

A name is resolved in one way: a registered name (the built-ins below, user strategies), else a family of
names, ``<prefix><rest>`` (``family_of``): ``task_specific_<base>`` and ``iterative_<base>`` (a registered base
trained differently, dropbench.train.families), and the names a config key implies (dropbench.prune.strategy_names):
``layer<i>``, ``drop_<i>_<j>...`` and ``cls_above_<thousandths>``. A strategy with ``decides_k`` chooses how
many layers to drop itself: its cells have k = 0 ("decided by the strategy") and it may return any number of
layers but all; the paper's [CLS]-threshold rule is such a family.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from dropbench.prune.strategy_names import (CLS_THRESHOLD_PREFIX, SINGLE_LAYER_PREFIX, SUBSET_PREFIX, cls_threshold_name,
                                            cls_threshold_of, subset_layers, subset_name)
from dropbench.prune.user_strategies import import_function

StrategyFn = Callable[[int, int, dict], Iterable[int]]


@dataclass(frozen=True)
class _Strategy:
    fn: StrategyFn
    needs_data: bool
    decides_k: bool = False


_REGISTRY: dict[str, _Strategy] = {}
# Families of strategies named by a prefix: prefix -> (resolver of the rest of the name, its pattern, whether
# the config's `strategies` may list it).
_FAMILIES: dict[str, tuple[Callable[[str], _Strategy], str, bool]] = {}


def register(name: str, needs_data: bool = False) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering ``fn`` as strategy ``name``."""

    def decorator(fn: StrategyFn) -> StrategyFn:
        _add(name, fn, needs_data)
        return fn

    return decorator


def _add(name: str, fn: StrategyFn, needs_data: bool, decides_k: bool = False) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"strategy name must be a Python identifier, got {name!r}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing.fn is not fn:
        raise ValueError(f"strategy {name!r} is already registered (by {existing.fn.__module__}.{existing.fn.__qualname__})")
    _REGISTRY[name] = _Strategy(fn, needs_data, decides_k)


def register_family(prefix: str, resolve: Callable[[str], _Strategy], pattern: str, listed: bool = True) -> None:
    """Names ``<prefix><rest>`` not registered themselves are strategies of this family: ``resolve(rest)``
    returns the strategy or raises ValueError saying what is allowed. ``pattern`` (``"iterative_<base>"``)
    names the family in errors; ``listed``: the config's ``strategies`` may name it (``layer<i>`` may not)."""
    _FAMILIES[prefix] = (resolve, pattern, listed)


def family_of(name: str) -> tuple[str | None, str]:
    """``(prefix, rest)`` of a family strategy's name, ``(None, name)`` for any other name."""
    if isinstance(name, str) and name not in _REGISTRY:
        for prefix in sorted(_FAMILIES, key=len, reverse=True):
            if name.startswith(prefix) and len(name) > len(prefix):
                return prefix, name[len(prefix):]
    return None, name


def base_of(name: str) -> str:
    """The base of ``task_specific_<base>`` or ``iterative_<base>``, else ``name`` itself."""
    prefix, rest = family_of(name)
    return rest if prefix in (TASK_SPECIFIC, ITERATIVE) else name


def available() -> list[str]:
    """Registered strategy names (families are listed by ``families()``)."""
    return sorted(_REGISTRY)


def families(listed: bool = True) -> list[str]:
    """The patterns of the families the config's ``strategies`` may name (``listed=False``: the others)."""
    return [pattern for prefix, (_, pattern, in_list) in sorted(_FAMILIES.items()) if in_list == listed]


def allowed() -> str:
    return ", ".join(available() + families())


def is_known(name) -> bool:
    try:
        _get(name)
    except ValueError:
        return False
    return True


def _get(name: str) -> _Strategy:
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    prefix, rest = family_of(name)
    if prefix is not None:
        return _FAMILIES[prefix][0](rest)
    raise ValueError(f"unknown strategy {name!r}; available: {allowed()}, or {', or '.join(families(listed=False))}")


# ---- named subsets: drop_<i>_<j>... drops exactly layers i, j, ... (1-based, ascending) at k = their number
# (config ``subsets``, every subset of a model); one layer is the layer-importance profile's layer<i>.
def _subset(layers: tuple[int, ...]) -> StrategyFn:
    name = subset_name(layers)

    def drop_subset(num_layers, k, context):
        if k != len(layers):
            raise ValueError(f"strategy {name!r} drops exactly {len(layers)} layer(s): k must be {len(layers)}, got {k}")
        if layers[-1] > num_layers:
            raise ValueError(f"strategy {name!r}: a {num_layers}-layer model has layers 1..{num_layers}")
        return [layer - 1 for layer in layers]

    return drop_subset


def _resolve_subset(prefix: str) -> Callable[[str], _Strategy]:
    def resolve(rest: str) -> _Strategy:
        if (layers := subset_layers(prefix + rest)) is None:
            raise ValueError(f"unknown strategy {prefix + rest!r}: allowed {_FAMILIES[prefix][1]}")
        return _Strategy(_subset(layers), False)

    return resolve


def needs_data(name: str) -> bool:
    return _get(name).needs_data


def decides_k(name: str) -> bool:
    """True when the strategy chooses the number of layers itself (its cells have k = 0)."""
    return _get(name).decides_k


def function(name: str) -> StrategyFn:
    return _get(name).fn


def validate(name: str, num_layers: int | None = None, k: int | None = None) -> None:
    """Cheap check of a (strategy, k) request; ``num_layers`` may be unknown yet."""
    strategy = _get(name)
    if num_layers is not None and (not _is_int(num_layers) or num_layers < 2):
        raise ValueError(f"num_layers must be an integer >= 2 (need a layer to keep after dropping one), got {num_layers!r}")
    if k is None:
        return
    if strategy.decides_k:
        if k != 0:
            raise ValueError(f"strategy {name!r} decides how many layers to drop: its k must be 0, got {k!r}")
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
    if strategy.needs_data and context.get("similarity") is None and context.get("cls_similarity") is None:
        raise ValueError(f"strategy {name!r} is data-driven: pass context['similarity'] and context['cls_similarity'] "
                         "(see dropbench.prune.layer_scores)")
    raw = list(strategy.fn(num_layers, k, context))
    drop = sorted(set(raw))
    count_ok = len(drop) < num_layers if strategy.decides_k else len(drop) == k
    if len(raw) != len(drop) or not count_ok or not all(_is_int(i) and 0 <= i < num_layers for i in drop):
        expected = f"at most {num_layers - 1}" if strategy.decides_k else f"{k}"
        raise ValueError(f"strategy {name!r} returned {raw!r} for num_layers={num_layers}, k={k}; "
                         f"expected {expected} distinct integers in 0..{num_layers - 1}")
    return [int(i) for i in drop]


def load_user_strategies(specs: Iterable[str] | Mapping[str, str]) -> list[str]:
    """Register user functions (``"module.path:function"`` or ``"path/to/file.py:function"``, under the
    function's name, or a mapping ``{name: spec}``); returns their names. A function's ``needs_data`` attribute
    (default False) marks it data-driven."""
    items = specs.items() if isinstance(specs, Mapping) else ((None, spec) for spec in specs)
    names = []
    for name, spec in items:
        fn = import_function(spec)
        name = name or fn.__name__
        _add(name, fn, bool(getattr(fn, "needs_data", False)))
        names.append(name)
    return names


def load_from_config(config: Mapping) -> None:
    """What every process that resolves the config's strategy names calls first (planning, the prune step):
    registers its ``custom_strategies``. Every other name resolves without registering."""
    load_user_strategies(config.get("custom_strategies") or [])


def drop_order(name: str, num_layers: int, k: int, context: dict | None = None) -> list[int]:
    """The ``k`` layers of ``layers_to_drop`` in the order to drop them one at a time: the layer the
    strategy adds going from ``j - 1`` to ``j`` dropped layers, when its choices are nested for
    j = 1..k (top: the topmost first); otherwise the order in which it lists its ``k`` layers."""
    final = layers_to_drop(name, num_layers, k, context)
    fn, context = _get(name).fn, dict(context or {})
    order, previous = [], set()
    for j in range(1, k + 1):
        chosen = set(layers_to_drop(name, num_layers, j, context))
        if not previous < chosen:
            raw = [int(i) for i in fn(num_layers, k, context)]
            return list(dict.fromkeys(raw))
        order += sorted(chosen - previous)
        previous = chosen
    assert sorted(order) == final
    return order


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _similarity(context: dict, num_layers: int, key: str = "similarity") -> np.ndarray:
    if context.get(key) is None:
        raise ValueError(f"this strategy needs context[{key!r}] (see dropbench.prune.layer_scores)")
    sim = np.asarray(context[key], dtype=float)
    if sim.shape != (num_layers + 1, num_layers + 1):
        raise ValueError(f"context[{key!r}] has shape {sim.shape}; expected ({num_layers + 1}, {num_layers + 1}) "
                         f"for a {num_layers}-layer model (depth 0 = embeddings)")
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


# ------------------------------------------------- the paper's [CLS] threshold rule

def select_above_threshold(scores: Iterable[float], threshold: float) -> list[int]:
    """The layers whose score (similarity of the [CLS] vector before and after the layer) is strictly
    above ``threshold``. When every layer is, the one with the lowest score (the layer that changes
    [CLS] most; on a tie the lower layer) is kept, so a model always keeps a layer."""
    scores = [float(s) for s in scores]
    drop = [layer for layer, score in enumerate(scores) if score > threshold]
    if len(drop) == len(scores):
        drop.remove(min(range(len(scores)), key=lambda layer: (scores[layer], layer)))
    return drop


def _cls_threshold_strategy(threshold: float) -> StrategyFn:
    def cls_above(num_layers, k, context):
        """Layers whose [CLS] similarity (context['cls_similarity'][l][l+1]) is above the threshold."""
        sim = _similarity(context, num_layers, key="cls_similarity")
        return select_above_threshold([sim[l, l + 1] for l in range(num_layers)], threshold)

    cls_above.__qualname__ = cls_threshold_name(threshold)
    return cls_above


def _resolve_cls_threshold(rest: str) -> _Strategy:
    if (threshold := cls_threshold_of(CLS_THRESHOLD_PREFIX + rest)) is None:
        raise ValueError(f"unknown strategy {CLS_THRESHOLD_PREFIX + rest!r}: allowed {_FAMILIES[CLS_THRESHOLD_PREFIX][1]}")
    return _Strategy(_cls_threshold_strategy(threshold), needs_data=True, decides_k=True)


# ---------------------------------------------------------------- greedy search

# ``greedy`` drops the layers a search chose by fine-tuning on held-out train rows (dropbench.prune.greedy, the
# checkpoint greedy_step); its order reaches the strategy through the context at prune time.
GREEDY = "greedy"


@register(GREEDY)
def greedy(num_layers: int, k: int, context: dict) -> list[int]:
    """The first k layers of the search's order (context['greedy_order'], 1-based; dropbench.prune.greedy)."""
    order = context.get("greedy_order")
    if order is None:
        raise ValueError("strategy 'greedy' drops the layers its search chose: pass context['greedy_order'] "
                         "(the 'order' of results/greedy/<model>/<task>/step<k>.json)")
    if len(order) < k:
        raise ValueError(f"strategy 'greedy' at k={k}: the search's order {list(order)} has only {len(order)} layers")
    if any(not 1 <= int(layer) <= num_layers for layer in order):
        raise ValueError(f"strategy 'greedy': order {list(order)} names layers outside 1..{num_layers}")
    return [int(layer) - 1 for layer in order[:k]]


def is_searched(name: str) -> bool:
    """True for ``greedy``: its layers come from a search on task data (so, like a data-driven strategy, its
    pruned model is per task) but it scores no layer similarities."""
    return name == GREEDY


# ---------------------------------------------------------------- families

# ``task_specific_<base>`` and ``iterative_<base>`` drop the layers ``<base>`` drops, but train
# differently (dropbench.train.families); ``<base>`` is any registered strategy, built-in or custom.
TASK_SPECIFIC, ITERATIVE = "task_specific_", "iterative_"


def _family_base(prefix: str) -> Callable[[str], _Strategy]:
    def resolve(base: str) -> _Strategy:
        if base == GREEDY:
            raise ValueError(f"unknown strategy {prefix + base!r}: {prefix}<base> is not built for the greedy search's "
                             f"layers; allowed bases: {', '.join(b for b in available() if b != GREEDY)}")
        if base not in _REGISTRY:
            raise ValueError(f"unknown strategy {prefix + base!r}: {prefix}<base> needs a registered base strategy, "
                             f"and {base!r} is not one; allowed bases: {', '.join(available())}")
        return _REGISTRY[base]

    return resolve


register_family(TASK_SPECIFIC, _family_base(TASK_SPECIFIC), f"{TASK_SPECIFIC}<base>")
register_family(ITERATIVE, _family_base(ITERATIVE), f"{ITERATIVE}<base>")
# named by their config keys (dropbench.prune.strategy_names), never listed in `strategies`
register_family(SINGLE_LAYER_PREFIX, _resolve_subset(SINGLE_LAYER_PREFIX), "layer<i> (drop only layer i, 1-based, at k = 1)", listed=False)
register_family(SUBSET_PREFIX, _resolve_subset(SUBSET_PREFIX), "drop_<i>_<j>... (drop exactly layers i, j, ..., 1-based and "
                "ascending, at k = their number)", listed=False)
register_family(CLS_THRESHOLD_PREFIX, _resolve_cls_threshold, "cls_above_<thousandths> (the [CLS] rule at threshold "
                "<thousandths>/1000, three digits 001..999, k = 0)", listed=False)
