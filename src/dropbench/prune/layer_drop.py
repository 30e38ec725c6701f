"""Drop layers from a loaded model in place, for every architecture in ``dropbench.prune.architectures``.

That table holds one ``Adapter`` per ``config.model_type``; its paths are relative to
``model.base_model``, so the same code prunes a bare ``AutoModel`` and a task
model such as ``AutoModelForSequenceClassification``. BERT-architecture
checkpoints such as MiniLM report ``model_type == "bert"`` and need no entry.

ALBERT is special: its ``num_hidden_layers`` layers are repeated applications of
``num_hidden_groups`` shared layer groups (usually one). Dropping layers there
means applying the shared group fewer times (``num_hidden_layers`` shrinks);
with one group no parameters are removed and *which* layers are dropped makes
no difference, only how many. With several groups a group whose applications
are all dropped is removed; drops that would leave groups applied an uneven
number of times are rejected, because ALBERT's fixed layer->group formula
could not reproduce them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from dropbench.prune.architectures import Adapter, adapter_for_type

# Config fields holding one entry per layer, re-indexed along with the layers.
PER_LAYER_CONFIG_FIELDS = ("layer_types",)
# Module attributes recent transformers use to address per-layer caches.
LAYER_INDEX_ATTRIBUTES = ("layer_idx",)


def adapter_for(model_or_config: PreTrainedModel | PretrainedConfig) -> Adapter:
    config = model_or_config if isinstance(model_or_config, PretrainedConfig) else getattr(model_or_config, "config", None)
    return adapter_for_type(getattr(config, "model_type", None))


def num_layers(config: PretrainedConfig) -> int:
    return int(getattr(config, adapter_for(config).count_field))


def drop_layers(model: PreTrainedModel, drop: Sequence[int]) -> PreTrainedModel:
    """Remove layers ``drop`` (0-indexed) from ``model`` in place and return it.

    Kept layers keep their weights and order; the config's layer count and any
    per-layer indices are updated so the model runs, saves and reloads as a
    smaller model of the same architecture.
    """
    adapter = adapter_for(model)
    total = num_layers(model.config)
    drop_set = _checked_drop(drop, total)
    if not drop_set:
        return model
    keep = [i for i in range(total) if i not in drop_set]
    base = model.base_model
    config_updates = {adapter.count_field: len(keep)}
    if adapter.shared_layers:
        config_updates["num_hidden_groups"] = _drop_albert(base, keep, total)
    else:
        old = base.get_submodule(adapter.layers)
        kept_layers = [old[i] for i in keep]
        for new_index, layer in enumerate(kept_layers):
            _set_layer_index(layer, new_index)
        _set_submodule(base, adapter.layers, nn.ModuleList(kept_layers))
    for mirror in adapter.count_mirrors:
        path, attribute = mirror.split(":")
        setattr(base.get_submodule(path), attribute, len(keep))
    # Submodules may hold their own reference to the config; update every one.
    configs = {id(m.config): m.config for m in model.modules() if isinstance(getattr(m, "config", None), PretrainedConfig)}
    for config in configs.values():
        for field, value in config_updates.items():
            setattr(config, field, value)
        for field in PER_LAYER_CONFIG_FIELDS:
            values = getattr(config, field, None)
            if isinstance(values, (list, tuple)) and len(values) == total:
                setattr(config, field, type(values)(values[i] for i in keep))
    return model


def _checked_drop(drop: Sequence[int], total: int) -> set[int]:
    drop = list(drop)
    try:
        indices = [operator.index(i) for i in drop]
    except TypeError:
        indices = None
    if indices is None or any(isinstance(i, bool) for i in drop) or any(not 0 <= i < total for i in indices):
        raise ValueError(f"layers to drop {drop!r} must be integers in 0..{total - 1}")
    drop_set = set(indices)
    if len(drop_set) != len(drop):
        raise ValueError(f"layers to drop {drop!r} contain duplicates")
    if len(drop_set) >= total:
        raise ValueError(f"cannot drop all {total} layers {sorted(drop_set)!r}; keep at least one")
    return drop_set


def _set_layer_index(layer: nn.Module, index: int) -> None:
    for module in layer.modules():
        for attribute in LAYER_INDEX_ATTRIBUTES:
            if isinstance(getattr(module, attribute, None), int):
                setattr(module, attribute, index)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, name, module)


def _albert_group(layer: int, num_layers_: int, num_groups: int) -> int:
    # Same expression as transformers' AlbertTransformer.forward.
    return int(layer / (num_layers_ / num_groups))


def _drop_albert(base: nn.Module, keep: list[int], total: int) -> int:
    """Drop applications of ALBERT's shared groups; returns the new group count."""
    config = base.config
    groups = config.num_hidden_groups
    kept_groups = [_albert_group(i, total, groups) for i in keep]
    used = sorted(set(kept_groups))
    wanted = [used.index(g) for g in kept_groups]
    actual = [_albert_group(i, len(keep), len(used)) for i in range(len(keep))]
    if wanted != actual:
        raise ValueError(
            f"ALBERT with num_hidden_groups={groups}: keeping layers {keep} would apply the shared groups "
            f"{kept_groups}, which ALBERT's fixed layer->group assignment cannot express; drop whole groups "
            f"or the same number of layers from every group"
        )
    encoder = base.get_submodule("encoder")
    encoder.albert_layer_groups = nn.ModuleList([encoder.albert_layer_groups[g] for g in used])
    return len(used)
