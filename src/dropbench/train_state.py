"""Resumable training state, saved as safetensors + JSON (no pickles).

A fine-tune job writes its state every few steps into a directory that is *not* a Snakemake
output; when the job is killed, the next run finds it and continues from the last save.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dropbench.atomic import atomic_dir


def save_state(state_dir: Path, model, optimizer, scheduler, progress: dict) -> None:
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    with atomic_dir(state_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file(optim_tensors, str(tmp / "optimizer.safetensors"))
        save_file({"cpu_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        meta = {"progress": progress, "optimizer": optim_meta, "scheduler": scheduler.state_dict()}
        (tmp / "state.json").write_text(json.dumps(meta))


def load_state(state_dir: Path, model, optimizer, scheduler) -> dict | None:
    """Restore model, optimizer, scheduler and RNG; return the saved progress, or None if no state."""
    state_dir = Path(state_dir)
    if not (state_dir / "state.json").exists():
        return None
    meta = json.loads((state_dir / "state.json").read_text())
    model.load_state_dict(load_file(str(state_dir / "model.safetensors")))
    _restore_optimizer(optimizer, load_file(str(state_dir / "optimizer.safetensors")), meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(load_file(str(state_dir / "rng.safetensors"))["cpu_rng"])
    return meta["progress"]


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
