"""Resumable training state, saved as safetensors + JSON (no pickles).

A fine-tune job writes its state every few steps into a directory that is *not* a Snakemake
output; when the job is killed, the next run finds it and continues from the last save. The state
records a fingerprint of what is being trained (config, data size, schedule length): a state left
by a run with other settings, or one that is damaged, is discarded with a warning, never resumed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dropbench.runtime.atomic import atomic_dir
from dropbench.plan.integrity import safetensors_problem

log = logging.getLogger(__name__)
STATE_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")


def save_state(state_dir: Path, model, optimizer, scheduler, progress: dict, fingerprint: dict | None = None) -> None:
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    rng = {"cpu_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda_rng"] = torch.cuda.get_rng_state()
    with atomic_dir(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file(optim_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng, str(tmp / "rng.safetensors"))
        meta = {"progress": progress, "optimizer": optim_meta, "scheduler": scheduler.state_dict(),
                "fingerprint": fingerprint}
        (tmp / "state.json").write_text(json.dumps(meta))


def saved_step(state_dir: Path) -> int | None:
    """The step a saved state reached (read without checking the state; ``load_state`` checks it)."""
    try:
        step = json.loads((Path(state_dir) / "state.json").read_text())["progress"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def load_state(state_dir: Path, model, optimizer, scheduler, fingerprint: dict | None = None) -> dict | None:
    """Restore model, optimizer, scheduler and RNG; return the saved progress, or None to start afresh.

    None when there is no state, when it is damaged, or when its fingerprint differs from ``fingerprint``.
    """
    state_dir = Path(state_dir)
    if not state_dir.exists():
        return None
    meta, problem = _read_meta(state_dir)
    if problem is None and meta.get("fingerprint") != fingerprint:
        problem = f"it was saved for other settings ({meta.get('fingerprint')} != {fingerprint})"
    if problem:
        log.warning("discarding training state in %s: %s; training starts from step 0", state_dir, problem)
        clear_state(state_dir)
        return None
    model.load_state_dict(load_file(str(state_dir / "model.safetensors")))
    _restore_optimizer(optimizer, load_file(str(state_dir / "optimizer.safetensors")), meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    rng = load_file(str(state_dir / "rng.safetensors"))
    torch.set_rng_state(rng["cpu_rng"])
    if "cuda_rng" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda_rng"])
    return meta["progress"]


def _read_meta(state_dir: Path) -> tuple[dict, str | None]:
    try:
        meta = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError) as err:
        return {}, f"state.json missing or corrupt ({err.__class__.__name__})"
    if not isinstance(meta, dict) or not {"progress", "optimizer", "scheduler"} <= set(meta):
        return {}, "state.json is incomplete"
    for name in STATE_FILES:
        problem = safetensors_problem(state_dir / name)
        if problem:
            return meta, f"{name}: {problem}"
    return meta, None


def clear_state(state_dir: Path) -> None:
    if Path(state_dir).exists():
        shutil.rmtree(state_dir)
    parent = Path(state_dir).parent
    if parent.exists() and not os.listdir(parent):
        parent.rmdir()


def _flatten_optimizer(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.contiguous()
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer, tensors: dict, meta: dict) -> None:
    per_param: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        param_id, key = flat.split(".", 1)
        per_param.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
