"""Training of the strategy families ``task_specific_<base>`` and ``iterative_<base>`` (the paper's
section 5). Both end with the layers ``<base>`` drops removed, like a pruned model of ``<base>``;
they differ from it in how the encoder is trained on the task around the drop:

- ``task_specific``: fine-tune the full model with those layers frozen (``frozen_finetune``, a cached
  job of its own), drop them, then fine-tune the smaller model again with the same settings (the
  ordinary ``finetune`` job, started from the first stage's model).
- ``iterative``: fine-tune the full model and drop one layer, in ``<base>``'s order
  (``strategies.drop_order``), every ``EPOCHS_PER_DROP`` epochs until ``k`` are gone, then train the
  configured ``training.epochs`` more (``iterative_finetune``): one run, one optimizer and one
  learning-rate schedule over ``EPOCHS_PER_DROP * k + epochs`` epochs.

The layers come from the cell's ``pruning.json`` (written by ``prune``, which also scores layers for
data-driven bases), so these jobs never choose layers themselves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from dropbench.prune import strategies
from dropbench.train import loop as train
from dropbench.plan.job_params import ITERATIVE_EPOCHS_PER_DROP as EPOCHS_PER_DROP
from dropbench.train.loop import LayerSchedule, TrainConfig


def pruning_plan(pruned_dir: str | Path, family: str) -> dict:
    plan = json.loads((Path(pruned_dir) / "pruning.json").read_text())
    if strategies.family_of(plan["strategy"])[0] != family:
        raise ValueError(f"{pruned_dir}/pruning.json is for strategy {plan['strategy']!r}, not a {family}<base> strategy")
    return plan


def frozen_schedule(dropped: list[int], epochs: float) -> LayerSchedule:
    """Train with ``dropped`` frozen, remove them after the last step."""
    return LayerSchedule(freeze=tuple(dropped), drops=tuple((epochs, layer) for layer in dropped))


def iterative_schedule(order: list[int], epochs_per_drop: float) -> LayerSchedule:
    return LayerSchedule(drops=tuple(((i + 1) * epochs_per_drop, layer) for i, layer in enumerate(order)))


def frozen_finetune(pretrained_dir, pruned_dir, features_dir, task: str, out_dir, state_dir, cfg: TrainConfig,
                    train_log) -> dict:
    """Stage 1 of ``task_specific_<base>``: the smaller model, fine-tuned with its dropped layers frozen."""
    plan = pruning_plan(pruned_dir, strategies.TASK_SPECIFIC)
    summary = train.finetune(pretrained_dir, features_dir, task, out_dir, state_dir, cfg, train_log,
                             frozen_schedule(plan["dropped"], cfg.epochs))
    _check_kept(summary, plan)
    return summary


def iterative_finetune(pretrained_dir, pruned_dir, features_dir, task: str, out_dir, state_dir, cfg: TrainConfig,
                       train_log, epochs_per_drop: float = EPOCHS_PER_DROP) -> dict:
    plan = pruning_plan(pruned_dir, strategies.ITERATIVE)
    order = plan["drop_order"]
    cfg = replace(cfg, epochs=cfg.epochs + epochs_per_drop * len(order))
    summary = train.finetune(pretrained_dir, features_dir, task, out_dir, state_dir, cfg, train_log,
                             iterative_schedule(order, epochs_per_drop))
    _check_kept(summary, plan)
    return summary


def _check_kept(summary: dict, plan: dict) -> None:
    if summary["layers"]["kept"] != plan["kept"]:
        raise RuntimeError(f"training kept layers {summary['layers']['kept']}, pruning.json says {plan['kept']}")
