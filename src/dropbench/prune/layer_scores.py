"""How much each layer changes its input, measured on real data.

Depth 0 is the embeddings output and depth l+1 the output of layer l, so an
L-layer model has L+1 depths. Similarity between two depths is the cosine
similarity of the two hidden vectors *of the same token*, averaged over every
non-padding token in the batches (special tokens included, each token weighted
equally, no pooling to one vector per sequence first).

The [CLS] similarity (the paper's contribution score) compares only the classification token's
vectors, one per sequence: the token the model's sequence classifier reads. That is the first
non-padding token for every supported architecture except XLNet, whose <cls> is the last token (its
config says ``summary_type: last``). The token is found from the attention mask, so it is the same on
either padding side (features' ``padding_side``: XLNet pads on the left).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

import numpy as np
import torch

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def hidden_similarity(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> np.ndarray:
    """Mean per-token cosine similarity between every pair of depths, shape (L+1, L+1)."""
    return layer_similarities(model, batches)["all_tokens"]


def layer_similarities(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    """Both similarity matrices, shape (L+1, L+1), in one pass over ``batches``: ``all_tokens`` (every
    non-padding token) and ``cls`` (the classification token of each sequence, see the module doc)."""
    accepted = _accepted_inputs(model)
    device = next(model.parameters()).device
    position = classification_position(model.config)
    was_training = model.training
    model.eval()
    totals, counts = {"all_tokens": 0.0, "cls": 0.0}, {"all_tokens": 0, "cls": 0}
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = {key: batch[key].to(device) for key in _INPUT_KEYS if key in batch and key in accepted}
                if "input_ids" not in inputs:
                    raise ValueError(f"each batch needs 'input_ids'; got keys {sorted(batch)}")
                outputs = model(**inputs, output_hidden_states=True)
                states = torch.stack(outputs.hidden_states)  # (depths, batch, tokens, hidden)
                mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"])).bool()
                for name, vectors in (("all_tokens", states[:, mask]), ("cls", classification_vectors(states, mask, position))):
                    unit = torch.nn.functional.normalize(vectors.double(), dim=-1)  # (depths, n, hidden)
                    totals[name] = totals[name] + torch.einsum("ind,jnd->ij", unit, unit)
                    counts[name] += unit.shape[1]
    finally:
        model.train(was_training)
    if not counts["all_tokens"]:
        raise ValueError("hidden_similarity got no non-padding tokens (empty batches?)")
    return {name: (totals[name] / counts[name]).cpu().numpy() for name in totals}


def classification_position(model_config) -> str:
    """``last`` for models whose classifier reads the last token (XLNet: ``summary_type: last``), else ``first``."""
    return "last" if getattr(model_config, "summary_type", None) == "last" else "first"


def classification_vectors(states: torch.Tensor, mask: torch.Tensor, position: str) -> torch.Tensor:
    """The first (or last) non-padding token's vector of each sequence at every depth.
    ``states``: (depths, batch, tokens, hidden); ``mask``: (batch, tokens), True on real tokens;
    returns (depths, batch, hidden). Rows without a real token are left out."""
    if position not in ("first", "last"):
        raise ValueError(f"position: bad value {position!r}; allowed: first, last")
    mask = mask.bool()
    has_token = mask.any(dim=1)
    if position == "first":
        index = mask.int().argmax(dim=1)
    else:
        index = mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)
    rows = torch.arange(mask.shape[0], device=mask.device)
    return states[:, rows, index][:, has_token]


def per_layer_contribution(similarity: np.ndarray) -> list[float]:
    """similarity[l][l+1] for each layer l: how similar a layer's output is to its input."""
    similarity = np.asarray(similarity)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] < 2:
        raise ValueError(f"similarity must be a square (L+1)x(L+1) matrix with L >= 1, got shape {similarity.shape}")
    return [float(similarity[l, l + 1]) for l in range(similarity.shape[0] - 1)]


def _accepted_inputs(model: torch.nn.Module) -> set[str]:
    # Only pass inputs the forward names explicitly: DistilBERT has no
    # token_type_ids, and a catch-all **kwargs could swallow them silently.
    parameters = inspect.signature(model.forward).parameters
    return {key for key in _INPUT_KEYS if key in parameters}
