"""Length-grouped batches: similar lengths share a batch, so dynamic padding wastes little."""

from __future__ import annotations

import numpy as np


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, group_factor: int = 50) -> list[np.ndarray]:
    """Shuffle, sort within mega-batches of ``group_factor * batch_size`` rows, then shuffle the batches.

    The same seed always gives the same batches, which is what lets a resumed run skip
    exactly the batches it had already trained on.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    mega = batch_size * group_factor
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for inference: rows sorted by length, longest first (order is restored by the caller)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
