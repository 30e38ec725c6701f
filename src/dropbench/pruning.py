"""Prune a saved checkpoint: load, drop layers, save beside its tokenizer files."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from transformers import AutoModel

from dropbench import architectures, strategies
from dropbench.layer_scores import per_layer_contribution

# Files that save_pretrained writes itself or that hold (old) weights; every
# other file in the source directory (tokenizer, vocab, README, ...) is copied.
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth", ".onnx")
_NOT_COPIED_NAMES = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "tf_model.h5.index.json",
    "pruning.json",
}


def prune_checkpoint(src_dir, out_dir, strategy: str, k: int, context: dict | None = None) -> dict:
    """Drop ``k`` layers chosen by ``strategy`` from the model in ``src_dir``; write it to ``out_dir``.

    ``context`` goes to the strategy (data-driven strategies need
    ``context["similarity"]`` from ``layer_scores.hidden_similarity`` on the
    unpruned model). Returns the info also written to ``out_dir/pruning.json``.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    context = dict(context or {})
    strategies.validate(strategy, k=k)
    model = AutoModel.from_pretrained(src_dir, use_safetensors=True, trust_remote_code=False)
    before = architectures.num_layers(model.config)
    params_before = _param_count(model)
    dropped = strategies.layers_to_drop(strategy, before, k, context)
    architectures.drop_layers(model, dropped)
    info = {
        "strategy": strategy,
        "k": k,
        "model_type": model.config.model_type,
        "num_layers_before": before,
        "num_layers_after": architectures.num_layers(model.config),
        "dropped": dropped,
        "kept": [i for i in range(before) if i not in dropped],
        "params_before": params_before,
        "params_after": _param_count(model),
        "seed": context.get("seed"),
        "scores": per_layer_contribution(context["similarity"]) if context.get("similarity") is not None else None,
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temp dir beside out_dir and rename, so a crash never leaves a
    # complete-looking out_dir behind.
    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        model.save_pretrained(tmp_dir)  # safetensors is the default (and, in transformers 5, the only) format
        _copy_tokenizer_files(src_dir, tmp_dir)
        (tmp_dir / "pruning.json").write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return info


def _copy_tokenizer_files(src_dir: Path, dst_dir: Path) -> None:
    for path in sorted(src_dir.iterdir()):
        if not path.is_file() or path.name in _NOT_COPIED_NAMES or path.name.endswith(_NOT_COPIED_SUFFIXES):
            continue
        if not (dst_dir / path.name).exists():
            shutil.copy2(path, dst_dir / path.name)


def _param_count(model) -> int:
    # parameters() yields shared tensors (ALBERT, tied embeddings) once.
    return sum(p.numel() for p in model.parameters())
