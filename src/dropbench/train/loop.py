"""Fine-tune one (possibly pruned) encoder on one GLUE task: the ``finetune`` step.

Protocol (the paper's, via HF ``run_glue.py``): AdamW, linear decay without warm-up by default,
max length 128, 3 epochs. Speed: dynamic padding with length-grouped batches, fused AdamW, no
per-step host-device sync (losses are read back in blocks), bf16/fp16 autocast on a GPU (see
``dropbench.runtime.device``). Robustness: state is saved every ``checkpoint_minutes`` of wall time and a
killed job resumes bit for bit.

A ``LayerSchedule`` freezes layers during training and drops layers during or after it (the
``task_specific_<base>`` and ``iterative_<base>`` strategies, ``dropbench.train.families``).
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
from transformers import get_linear_schedule_with_warmup

from dropbench.train import convergence, heads
from dropbench.data import features, tasks
from dropbench.plan import job_params
from dropbench.prune import layer_drop
from dropbench.runtime.atomic import atomic_dir, write_json
from dropbench.data.batching import length_grouped_batches
from dropbench.runtime.device import Precision, pick_device, reuse_freed_memory
from dropbench.plan.integrity import sha256_file
from dropbench.train.train_state import clear_state, load_state, save_state, saved_step

log = logging.getLogger(__name__)
LOSS_BLOCK = 50  # steps between reads of the loss from the device
_clock = time.monotonic  # when state is due; tests replace it with a fake clock


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    checkpoint_minutes: float = 10.0
    group_by_length: bool = True
    min_steps: int = 0  # at least this many optimisation steps, whatever ``epochs`` gives (small subsamples)
    head: str = heads.NATIVE  # the classifier head (dropbench.train.heads), a model setting

    # Operational: how often state is saved does not change the weights, so it is not fingerprinted.
    OPERATIONAL = job_params.OPERATIONAL_KEYS

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"training setting(s) {unknown} are unknown; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


@dataclass(frozen=True)
class LayerSchedule:
    """Layers (0-based indices of the loaded model) frozen for the whole run, and dropped during it:
    ``drops`` holds (epochs, layer): drop ``layer`` once that many epochs are trained (the run's length
    drops it after the last step, before the model is saved). Frozen layers get no gradient and are
    not in the optimizer; a dropped layer leaves the model and the optimizer, whose state for every
    other parameter carries on."""

    freeze: tuple[int, ...] = ()
    drops: tuple[tuple[float, int], ...] = ()

    def as_dict(self) -> dict:
        return {"freeze": list(self.freeze), "drops": [list(drop) for drop in self.drops]}


def freeze_layers(model, layers) -> None:
    if not layers:
        return
    adapter = layer_drop.adapter_for(model)
    if adapter.shared_layers:
        raise ValueError(f"cannot freeze layers {list(layers)} of a {model.config.model_type} model: its layers share weights")
    modules = model.base_model.get_submodule(adapter.layers)
    for layer in layers:
        modules[layer].requires_grad_(False)


def drop_layer(model, kept: list[int], layer: int, optimizer=None) -> None:
    """Remove layer ``layer`` (an index of the loaded model; ``kept`` lists the ones still there, and
    loses it) from ``model``, and its parameters from ``optimizer``."""
    before = list(model.parameters())
    layer_drop.drop_layers(model, [kept.index(layer)])
    kept.remove(layer)
    if optimizer is not None:
        remaining = {id(p) for p in model.parameters()}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) in remaining]
        for p in before:
            if id(p) not in remaining:
                optimizer.state.pop(p, None)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def load_for_task(model_dir, task: str, head: str = heads.NATIVE):
    spec = tasks.get_task(task)
    problem_type = "regression" if spec.is_regression else "single_label_classification"
    return heads.build(model_dir, head, spec.num_labels, problem_type)


def epoch_batches(train: features.Features, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    seed = cfg.seed * 1000 + epoch
    if cfg.group_by_length:
        return length_grouped_batches(train.lengths(), cfg.batch_size, seed)
    order = np.random.default_rng(seed).permutation(len(train))
    return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]


def make_optimizer(model, cfg: TrainConfig):
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # frozen layers stay out
    groups = [
        {"params": [p for n, p in trained if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in trained if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return adamw(groups, cfg.learning_rate)


def adamw(groups, lr: float) -> torch.optim.AdamW:
    """Fused AdamW (one kernel for all parameters; CPU and CUDA in torch >= 2.4), else the foreach one.

    The fused kernel computes the same update as the reference loop (tests/test_train.py checks it),
    ~7x faster than the per-parameter loop on CPU.
    """
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError) as error:  # a device or dtype without a fused kernel
        log.info("fused AdamW unavailable (%s); using foreach AdamW", error)
        return torch.optim.AdamW(groups, lr=lr, foreach=True)


def train_step(model, batch: dict, optimizer, scheduler, max_grad_norm: float, amp: Precision) -> torch.Tensor:
    """One optimisation step. Returns the loss still on the device: reading it (``.item()``) would
    make the host wait for the GPU at every step."""
    with amp.autocast():
        loss = model(**batch).loss
    amp.backward(loss)
    amp.unscale(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm, foreach=True)
    amp.step(optimizer)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def record_losses(pending: list[torch.Tensor], progress: dict, total_steps: int, task: str, cfg: TrainConfig) -> None:
    """Read the pending losses back (one sync) into ``progress``; fail on the first non-finite one."""
    values = torch.stack(pending).float().cpu().tolist()
    first_step = progress["step"] - len(values) + 1
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss is {value} at step {first_step + offset} of {total_steps} "
                f"(task {task}, learning_rate {cfg.learning_rate}); lower training.learning_rate or check the data"
            )
    progress["losses"].extend(round(value, 5) for value in values)
    pending.clear()


def run_fingerprint(model_dir, features_dir, task: str, cfg: TrainConfig, total_steps: int) -> dict:
    """What a saved training state must match to be resumed: settings and the exact input files."""
    inputs = sorted(Path(model_dir).glob("*.safetensors")) + [features.split_path(features_dir, "train")]
    return {
        "task": task,
        "config": {k: v for k, v in asdict(cfg).items() if k not in cfg.OPERATIONAL},
        "total_steps": total_steps,
        "inputs": {path.name: sha256_file(path) for path in inputs},
    }


def _build(model_dir, task: str, device, cfg: TrainConfig, schedule: LayerSchedule, drop_steps: dict, done_step: int,
           total_steps: int):
    """The model with the schedule's frozen layers and the drops due by ``done_step`` applied, its
    optimizer and its learning-rate schedule."""
    seed_everything(cfg.seed)
    model = load_for_task(model_dir, task, cfg.head)
    kept = list(range(layer_drop.num_layers(model.config)))
    freeze_layers(model, schedule.freeze)
    for step in sorted(s for s in drop_steps if s <= done_step):
        for layer in drop_steps[step]:
            drop_layer(model, kept, layer)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    return model, kept, optimizer, scheduler


def finetune(
    model_dir: str | Path,
    features_dir: str | Path,
    task: str,
    out_dir: str | Path,
    state_dir: str | Path,
    cfg: TrainConfig,
    train_log: str | Path,
    schedule: LayerSchedule | None = None,
) -> dict:
    """Train, save the fine-tuned model to ``out_dir`` and a summary to ``train_log`` (JSON)."""
    schedule = schedule or LayerSchedule()
    device = pick_device()
    reuse_freed_memory()
    train = features.load(features.split_path(features_dir, "train"))
    amp = Precision(device)
    steps_per_epoch = len(epoch_batches(train, cfg, 0))
    total_steps = max(int(np.ceil(steps_per_epoch * cfg.epochs)), cfg.min_steps)
    drop_steps: dict[int, list[int]] = {}  # step -> layers dropped once it is done
    for epochs, layer in schedule.drops:
        if not 0 < epochs <= cfg.epochs:
            raise ValueError(f"a layer drop after {epochs} epochs is outside the run's {cfg.epochs} epochs")
        drop_steps.setdefault(min(total_steps, int(np.ceil(epochs * steps_per_epoch))), []).append(layer)

    fingerprint = run_fingerprint(model_dir, features_dir, task, cfg, total_steps)
    if schedule != LayerSchedule():
        fingerprint["layers"] = schedule.as_dict()
    # A saved state after a drop holds the smaller model: build that one to load it into.
    saved = saved_step(state_dir) or 0
    model, kept, optimizer, scheduler = _build(model_dir, task, device, cfg, schedule, drop_steps, saved, total_steps)
    progress = load_state(state_dir, model, optimizer, scheduler, fingerprint)
    if progress is None and any(step <= saved for step in drop_steps):  # state discarded: start afresh
        model, kept, optimizer, scheduler = _build(model_dir, task, device, cfg, schedule, drop_steps, 0, total_steps)
    pad_id = model.config.pad_token_id or 0
    resumed_from_step = progress["step"] if progress else 0
    progress = progress or {"step": 0, "seconds": 0.0, "losses": []}
    if resumed_from_step:
        log.info("resuming from step %d of %d (state in %s)", progress["step"], total_steps, state_dir)
        amp.load_scaler_state(progress.get("grad_scaler"))
    model.train()
    session_start = time.perf_counter()
    last_save = _clock()
    pending: list[torch.Tensor] = []  # losses not yet read back from the device
    bar = tqdm(total=total_steps, initial=progress["step"], desc=f"train {task}", file=sys.stderr, mininterval=5)
    while progress["step"] < total_steps:
        epoch, offset = divmod(progress["step"], steps_per_epoch)
        for indices in epoch_batches(train, cfg, epoch)[offset:]:
            batch = {k: v.to(device, non_blocking=True) for k, v in train.batch(indices, pad_id).items()}
            pending.append(train_step(model, batch, optimizer, scheduler, cfg.max_grad_norm, amp))
            progress["step"] += 1
            bar.update(1)
            for layer in drop_steps.get(progress["step"], []):
                drop_layer(model, kept, layer, optimizer)
                log.info("step %d: dropped layer %d, %d left", progress["step"], layer, len(kept))
            due = cfg.checkpoint_minutes and _clock() - last_save >= cfg.checkpoint_minutes * 60
            if len(pending) == LOSS_BLOCK or due or progress["step"] >= total_steps:
                record_losses(pending, progress, total_steps, task, cfg)
                bar.set_postfix(loss=f"{progress['losses'][-1]:.4f}", refresh=False)
            if progress["step"] >= total_steps:
                break
            if due:
                progress["seconds"] += time.perf_counter() - session_start
                session_start = time.perf_counter()
                progress["grad_scaler"] = amp.scaler_state()
                save_state(state_dir, model, optimizer, scheduler, progress, fingerprint)
                last_save = _clock()
    bar.close()
    session_seconds = time.perf_counter() - session_start

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)  # safetensors, the only format transformers 5 writes
    summary = {
        "task": task,
        "device": str(device),
        "precision": amp.name,
        "config": asdict(cfg),
        "train_rows": len(train),
        "steps": total_steps,
        "train_seconds": progress["seconds"] + session_seconds,
        "examples_per_second": total_steps * len(train) / steps_per_epoch / (progress["seconds"] + session_seconds),
        "resumed_from_step": resumed_from_step,
        "final_loss": progress["losses"][-1] if progress["losses"] else None,
        "fit": convergence.train_fit(progress["losses"], steps_per_epoch, train.labels, tasks.get_task(task).is_regression),
        "losses": progress["losses"],
    }
    if schedule != LayerSchedule():
        summary["layers"] = {**schedule.as_dict(), "drop_steps": {str(s): ls for s, ls in sorted(drop_steps.items())},
                             "kept": kept}
    write_json(train_log, summary)
    clear_state(state_dir)
    return summary
