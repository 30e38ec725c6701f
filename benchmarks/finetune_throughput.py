"""Fine-tuning throughput: dropbench's loop (dynamic padding, length-grouped batches) versus a loop
that pads every example to 128 tokens (the reference run_glue.py setting), same model, task, batch
size and hardware, measured side by side in one run. Prints `ratio: X` last (ours / pad-to-128).

    python benchmarks/finetune_throughput.py [--rows 512] [--steps 6] [--threads 2]
    python benchmarks/finetune_throughput.py --model-dir DIR --task rte --batch-size 8   # another model/task
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import default_model_dir, glue_source
from transformers import AutoTokenizer

from dropbench.data import features, glue, tasks
from dropbench.data.batching import length_grouped_batches
from dropbench.train.loop import TrainConfig, load_for_task, make_optimizer


def timed_steps(model, optimizer, split, batches, pad_to) -> tuple[float, int]:
    """Seconds and examples for the given batches (one untimed warm-up step first)."""
    model.train()
    seconds, examples = 0.0, 0
    for i, indices in enumerate(batches):
        batch = split.batch(indices, model.config.pad_token_id or 0, pad_to=pad_to)
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i > 0:
            seconds += time.perf_counter() - start
            examples += len(indices)
    return seconds, examples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--task", default="mrpc", help="a GLUE task shipped in resources/glue")
    parser.add_argument("--model-dir", help="a staged model directory (default: the default config's model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = args.model_dir or default_model_dir()
    spec = tasks.get_task(args.task)
    frame = glue.subsample(glue.load_split(spec, glue_source(spec.glue_dir), "train"), args.rows, 0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text_b = frame["text_b"] if spec.is_pair else None
    split = features.tokenize(tokenizer, frame["text_a"], text_b, frame["label"], 128, spec.is_regression)
    print(f"{model_dir}, task {args.task}: {len(split)} train rows, mean {split.lengths().mean():.1f} tokens, batch {args.batch_size}")

    ours_batches = length_grouped_batches(split.lengths(), args.batch_size, seed=0)[: args.steps + 1]
    order = np.random.default_rng(0).permutation(len(split))
    padded_batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)][: args.steps + 1]

    results = {}
    for name, batches, pad_to in (("pad_to_128", padded_batches, 128), ("dropbench", ours_batches, None)):
        torch.manual_seed(0)
        model = load_for_task(model_dir, args.task)
        optimizer = make_optimizer(model, TrainConfig())
        seconds, examples = timed_steps(model, optimizer, split, batches, pad_to)
        results[name] = examples / seconds
        print(f"{name:>10}: {examples} examples in {seconds:.2f} s = {results[name]:.1f} examples/s")
    print(f"ratio: {results['dropbench'] / results['pad_to_128']:.2f}")


if __name__ == "__main__":
    main()
