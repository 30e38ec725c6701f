"""The table of supported encoder architectures: where each keeps its layers and which config field
counts them. Plain data with no torch import, so config checks stay fast; ``layer_drop`` does the
dropping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adapter:
    model_type: str
    layers: str  # path of the nn.ModuleList of layers, relative to model.base_model
    count_field: str  # config field holding the number of layers
    count_mirrors: tuple[str, ...] = ()  # "module.path:attribute" copies of the count, relative to base_model
    shared_layers: bool = False  # ALBERT: layers are applications of shared groups


ADAPTERS = {
    adapter.model_type: adapter
    for adapter in [
        Adapter("bert", "encoder.layer", "num_hidden_layers"),
        Adapter("roberta", "encoder.layer", "num_hidden_layers"),
        Adapter("electra", "encoder.layer", "num_hidden_layers"),
        Adapter("deberta-v2", "encoder.layer", "num_hidden_layers"),
        # MPNet's relative attention bias lives on the encoder, outside the layer list.
        Adapter("mpnet", "encoder.layer", "num_hidden_layers"),
        Adapter("xlnet", "layer", "n_layer", count_mirrors=(":n_layer",)),
        Adapter("distilbert", "transformer.layer", "n_layers", count_mirrors=("transformer:n_layers",)),
        # ALBERT's module list holds the shared layer *groups*, not one module per layer.
        Adapter("albert", "encoder.albert_layer_groups", "num_hidden_layers", shared_layers=True),
    ]
}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for_type(model_type: str | None) -> Adapter:
    if model_type not in ADAPTERS:
        raise ValueError(
            f"unsupported architecture model_type={model_type!r}; supported: {', '.join(supported_model_types())}"
        )
    return ADAPTERS[model_type]


def depth_from_config_dict(config: dict) -> int:
    """Number of layers from a parsed config.json, without loading transformers."""
    return int(config[adapter_for_type(config.get("model_type")).count_field])
