"""Fine-tune one (possibly pruned) encoder on one GLUE task: the ``finetune`` step.

Protocol (the paper's, via HF ``run_glue.py``): AdamW, linear decay without warm-up by default,
max length 128, 3 epochs. Speed: dynamic padding with length-grouped batches, bf16 autocast on a
GPU. Robustness: state is saved every ``checkpoint_every`` steps and a killed job resumes.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    get_linear_schedule_with_warmup,
)

from dropbench import features, glue
from dropbench.atomic import atomic_dir, write_json
from dropbench.batching import length_grouped_batches
from dropbench.device import autocast, pick_device
from dropbench.sources import sha256_file
from dropbench.train_state import clear_state, load_state, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    checkpoint_every: int = 200
    group_by_length: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"training setting(s) {unknown} are unknown; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def load_for_task(model_dir, task: str):
    spec = glue.get_task(task)
    return AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=spec.num_labels,
        problem_type="regression" if spec.is_regression else "single_label_classification",
        use_safetensors=True,
        trust_remote_code=False,
    )


def epoch_batches(train: features.Features, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    seed = cfg.seed * 1000 + epoch
    if cfg.group_by_length:
        return length_grouped_batches(train.lengths(), cfg.batch_size, seed)
    order = np.random.default_rng(seed).permutation(len(train))
    return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]


def make_optimizer(model, cfg: TrainConfig):
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def run_fingerprint(model_dir, features_dir, task: str, cfg: TrainConfig, total_steps: int) -> dict:
    """What a saved training state must match to be resumed: settings and the exact input files."""
    inputs = sorted(Path(model_dir).glob("*.safetensors")) + [features.split_path(features_dir, "train")]
    return {
        "task": task,
        "config": asdict(cfg),
        "total_steps": total_steps,
        "inputs": {path.name: sha256_file(path) for path in inputs},
    }


def finetune(
    model_dir: str | Path,
    features_dir: str | Path,
    task: str,
    out_dir: str | Path,
    state_dir: str | Path,
    cfg: TrainConfig,
    train_log: str | Path,
) -> dict:
    """Train, save the fine-tuned model to ``out_dir`` and a summary to ``train_log`` (JSON)."""
    seed_everything(cfg.seed)
    device = pick_device()
    train = features.load(features.split_path(features_dir, "train"))
    model = load_for_task(model_dir, task).to(device)
    pad_id = model.config.pad_token_id or 0
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(epoch_batches(train, cfg, 0))
    total_steps = int(np.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    fingerprint = run_fingerprint(model_dir, features_dir, task, cfg, total_steps)
    progress = load_state(state_dir, model, optimizer, scheduler, fingerprint)
    resumed_from_step = progress["step"] if progress else 0
    progress = progress or {"step": 0, "seconds": 0.0, "losses": []}
    if resumed_from_step:
        log.info("resuming from step %d of %d (state in %s)", progress["step"], total_steps, state_dir)
    model.train()
    session_start = time.perf_counter()
    bar = tqdm(total=total_steps, initial=progress["step"], desc=f"train {task}", file=sys.stderr, mininterval=5)
    while progress["step"] < total_steps:
        epoch, offset = divmod(progress["step"], steps_per_epoch)
        for indices in epoch_batches(train, cfg, epoch)[offset:]:
            batch = {k: v.to(device) for k, v in train.batch(indices, pad_id).items()}
            with autocast(device):
                loss = model(**batch).loss
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"training loss is {loss_value} at step {progress['step'] + 1} of {total_steps} "
                    f"(task {task}, learning_rate {cfg.learning_rate}); lower training.learning_rate or check the data"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress["step"] += 1
            progress["losses"].append(round(loss_value, 5))
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)  # a refresh per step would flood the log
            bar.update(1)
            if progress["step"] >= total_steps:
                break
            if cfg.checkpoint_every and progress["step"] % cfg.checkpoint_every == 0:
                progress["seconds"] += time.perf_counter() - session_start
                session_start = time.perf_counter()
                save_state(state_dir, model, optimizer, scheduler, progress, fingerprint)
    bar.close()
    session_seconds = time.perf_counter() - session_start

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)  # safetensors, the only format transformers 5 writes
    summary = {
        "task": task,
        "device": str(device),
        "config": asdict(cfg),
        "train_rows": len(train),
        "steps": total_steps,
        "train_seconds": progress["seconds"] + session_seconds,
        "examples_per_second": len(train) * cfg.epochs / (progress["seconds"] + session_seconds),
        "resumed_from_step": resumed_from_step,
        "final_loss": progress["losses"][-1] if progress["losses"] else None,
        "losses": progress["losses"],
    }
    write_json(train_log, summary)
    clear_state(state_dir)
    return summary
