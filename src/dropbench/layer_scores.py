"""How much each layer changes its input, measured on real data.

Depth 0 is the embeddings output and depth l+1 the output of layer l, so an
L-layer model has L+1 depths. Similarity between two depths is the cosine
similarity of the two hidden vectors *of the same token*, averaged over every
non-padding token in the batches (special tokens included, each token weighted
equally, no pooling to one vector per sequence first).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

import numpy as np
import torch

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def hidden_similarity(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> np.ndarray:
    """Mean per-token cosine similarity between every pair of depths, shape (L+1, L+1)."""
    accepted = _accepted_inputs(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = None, 0
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = {key: batch[key].to(device) for key in _INPUT_KEYS if key in batch and key in accepted}
                if "input_ids" not in inputs:
                    raise ValueError(f"each batch needs 'input_ids'; got keys {sorted(batch)}")
                outputs = model(**inputs, output_hidden_states=True)
                states = torch.stack(outputs.hidden_states)  # (depths, batch, tokens, hidden)
                mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"])).bool()
                tokens = torch.nn.functional.normalize(states[:, mask].double(), dim=-1)  # (depths, n, hidden)
                pair_sums = torch.einsum("ind,jnd->ij", tokens, tokens)
                total = pair_sums if total is None else total + pair_sums
                count += tokens.shape[1]
    finally:
        model.train(was_training)
    if not count:
        raise ValueError("hidden_similarity got no non-padding tokens (empty batches?)")
    return (total / count).cpu().numpy()


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
