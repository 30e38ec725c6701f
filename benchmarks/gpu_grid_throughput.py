"""Fine-tuning throughput of several jobs sharing one GPU, projected onto the paper's grid.

Randomly initialised models shaped like bert-base-uncased (no weights needed) are fine-tuned with
dropbench's own step (``dropbench.train.loop.train_step``: fused AdamW, bf16 autocast or fp16 with a
gradient scaler) on synthetic batches whose lengths follow the GLUE train sets (each task's mean
WordPiece length, weighted by its train size), at the paper's batch sizes (8 and 32), with 1, 2, 4
and 8 jobs (separate processes, as the workflow's jobs are) on one GPU. Prints examples/s, the
useful FLOP rate (6 x tokens x 12 x hidden^2 x layers), cells per GPU-hour and the projected wall
time of the whole config/paper.yaml grid on one GPU (its training FLOPs from ``dropbench estimate``:
real GLUE train sizes). Last line: `best: ...`.

    python benchmarks/gpu_grid_throughput.py                       # on the GPU, bert-base shape
    python benchmarks/gpu_grid_throughput.py --device cpu --tiny   # a smoke run of the same code
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
import yaml
from common import REPO

from dropbench.plan.estimate import GLUE_MEAN_TOKENS, GLUE_TRAIN_ROWS, estimate


def glue_lengths(count: int, seed: int) -> np.ndarray:
    """Row lengths like the GLUE train sets: a task drawn by train size, its mean length +-50%."""
    rng = np.random.default_rng(seed)
    tasks = [t for t in GLUE_TRAIN_ROWS if t != "wnli"]
    weights = np.array([GLUE_TRAIN_ROWS[t] for t in tasks], dtype=float)
    chosen = rng.choice(len(tasks), size=count, p=weights / weights.sum())
    means = np.array([GLUE_MEAN_TOKENS[tasks[i]] for i in chosen])
    return np.clip(np.round(means * rng.uniform(0.5, 1.5, count)), 4, 128).astype(int)


def worker(rank, args, batch_size, start_barrier, results):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from dropbench.runtime.device import Precision
    from dropbench.train.loop import TrainConfig, make_optimizer, train_step

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if args.tiny else {}
    config = BertConfig(**shape)  # defaults: bert-base-uncased (12 x 768, vocab 30522)
    device = torch.device(args.device)
    model = BertForSequenceClassification(config).to(device).train()
    optimizer = make_optimizer(model, TrainConfig(learning_rate=2e-5))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    amp = Precision(device)
    lengths = glue_lengths(100_000, seed=rank)

    def batch(step):
        rows = lengths[(step * batch_size) % len(lengths):][:batch_size]
        ids = torch.zeros(len(rows), int(rows.max()), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, n in enumerate(rows):
            ids[i, :n] = torch.randint(1000, config.vocab_size, (int(n),))
            mask[i, :n] = 1
        labels = torch.randint(0, 2, (len(rows),))
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}, int(rows.sum())

    for step in range(args.warmup_steps):
        train_step(model, batch(step)[0], optimizer, scheduler, 1.0, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start_barrier.wait()
    examples = tokens = 0
    step, start, pending = args.warmup_steps, time.perf_counter(), []
    while time.perf_counter() - start < args.seconds:
        inputs, n_tokens = batch(step)
        pending.append(train_step(model, inputs, optimizer, scheduler, 1.0, amp))
        examples, tokens, step = examples + batch_size, tokens + n_tokens, step + 1
    torch.stack(pending).float().cpu()  # waits for the device
    results.put((examples, tokens, time.perf_counter() - start, amp.name, config.num_hidden_layers, config.hidden_size))


def run(args, jobs: int, batch_size: int) -> dict:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(jobs), context.Queue()
    processes = [context.Process(target=worker, args=(rank, args, batch_size, barrier, results)) for rank in range(jobs)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=args.seconds + 600) for _ in processes]
    for process in processes:
        process.join()
    seconds = max(o[2] for o in outcomes)
    _, _, _, precision, layers, hidden = outcomes[0]
    tokens_per_s = sum(o[1] for o in outcomes) / seconds
    return {"examples_per_s": sum(o[0] for o in outcomes) / seconds, "tokens_per_s": tokens_per_s,
            "flop_rate": 6 * tokens_per_s * 12 * hidden**2 * layers, "precision": precision}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer hidden-32 model: checks the code, not the GPU")
    parser.add_argument("--jobs", default="1,2,4,8")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per setting")
    parser.add_argument("--warmup-steps", type=int, default=5)
    args = parser.parse_args()

    paper = estimate(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), "a100", 1.0)
    print(f"paper grid: {paper['cells']} cells, {paper['training_tokens']:.3g} training tokens, {paper['training_flops']:.3g} FLOPs")
    best = None
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        for jobs in (int(j) for j in args.jobs.split(",")):
            result = run(args, jobs, batch_size)
            hours = paper["training_flops"] / result["flop_rate"] / 3600
            print(f"batch {batch_size:>2}, {jobs} job(s) on one {args.device} ({result['precision']}): "
                  f"{result['examples_per_s']:.1f} examples/s, {result['flop_rate'] / 1e12:.2f} useful TFLOP/s, "
                  f"{paper['cells'] / hours:.1f} cells per GPU-hour, paper grid {hours:.1f} GPU-hours")
            if best is None or hours < best[0]:
                best = (hours, batch_size, jobs, result["flop_rate"])
    hours, batch_size, jobs, rate = best
    print(f"best: batch {batch_size}, jobs_per_gpu {jobs}: {rate / 1e12:.2f} useful TFLOP/s, paper grid {hours:.1f} GPU-hours")


if __name__ == "__main__":
    main()
