"""Did a cell's fine-tune fit its training rows? Its loss against the trivial predictor's.

The trivial predictor knows only the training labels: their mean for a regression task (its squared
error is the labels' variance), their class frequencies for a classification task (its cross-entropy
is the entropy of that prior). A cell's *train fit* is its mean training loss over the last epoch's
steps divided by that trivial loss; its *dev fit* is its loss on the dev rows, same objective, divided
by the same trivial loss. 1 means "learnt nothing beyond the label distribution", 0 a perfect fit.

A cell is **underfit** when its train fit is above ``UNDERFIT_FIT`` (0.5): the optimiser did not get its
training loss to half of what the label distribution alone gives, so its dev score says more about the
head, budget or learning rate than about the layers it kept. Underfit is a different thing from
diverged (a dev score at chance: ``dropbench.evaluate.chance``): an underfit cell can score above chance, and a
well-fitted one can be at chance on dev (memorised its rows). The dev fit minus the train fit is the
generalisation gap.

No torch here: the aggregate and the reports use it too.
"""

from __future__ import annotations

import math

import numpy as np

UNDERFIT_FIT = 0.5


def trivial_loss(labels, is_regression: bool) -> float:
    labels = np.asarray(labels)
    if is_regression:
        return float(np.var(labels.astype(np.float64)))
    prior = np.bincount(labels.astype(np.int64)) / len(labels)
    prior = prior[prior > 0]
    return float(-(prior * np.log(prior)).sum())


def last_epoch_mean(losses, steps_per_epoch: int) -> float | None:
    """Mean training loss over the last epoch's steps (every training row seen once, online)."""
    if not losses:
        return None
    return float(np.mean(losses[-max(1, steps_per_epoch):]))


def ratio(loss: float | None, trivial: float) -> float | None:
    if loss is None or not math.isfinite(loss) or trivial <= 0:
        return None
    return loss / trivial


def is_underfit(train_fit: float | None) -> bool:
    return train_fit is not None and train_fit > UNDERFIT_FIT


def train_fit(losses, steps_per_epoch: int, train_labels, is_regression: bool) -> dict:
    """The ``fit`` block of a train log."""
    trivial = trivial_loss(train_labels, is_regression)
    loss = last_epoch_mean(losses, steps_per_epoch)
    fit = ratio(loss, trivial)
    return {"train_loss": loss, "trivial_loss": trivial, "train_fit": fit, "underfit": is_underfit(fit),
            "underfit_above": UNDERFIT_FIT}


def dev_loss(logits: np.ndarray, labels: np.ndarray, is_regression: bool) -> float:
    """The training objective on dev rows: squared error, or cross-entropy of the softmax."""
    logits = np.asarray(logits, dtype=np.float64)
    if is_regression:
        return float(np.mean((logits[:, 0] - np.asarray(labels, dtype=np.float64)) ** 2))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)].mean())


def cell_fit(train_block: dict | None, dev_losses: dict) -> dict | None:
    """The ``fit`` block of a metrics record: the train log's, plus each dev split's loss and fit."""
    if not train_block:
        return None  # a train log written before convergence was recorded
    trivial = train_block["trivial_loss"]
    dev = {split: {"loss": loss, "fit": ratio(loss, trivial)} for split, loss in dev_losses.items()}
    return {**train_block, "dev": dev}
