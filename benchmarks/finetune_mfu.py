"""Model FLOP utilisation of dropbench's fine-tuning loop on this machine.

1. Peak: the fp32 matrix-product rate (torch.mm at the fastest square size of 256-2048) with the job's
   threads, measured in turn with the loop (below).
2. Useful FLOP rate of ``dropbench.train.loop.train_step`` (the loop the finetune job runs: dynamic
   padding, fused AdamW, clipping, scheduler) for the default model (all-MiniLM-L6-v2) at full depth
   and with 4 of 6 layers dropped, on real SST-2 train rows at the default batch size (16).

Useful FLOPs per step = 6 x (real, unpadded tokens in the batch) x (weights of the nn.Linear layers in
the kept encoder layers): 2 for the forward and 4 for the backward multiply-adds of each weight.
Not counted: padding tokens, embeddings, pooler and classifier, attention scores (QK^T, AV), the
optimizer. The loop's time includes everything (batch building, optimizer, clipping).
With one thread (the default, as the default config's finetune jobs) both the peak and the loop are
timed by the thread's CPU time (``time.thread_time``), so other processes on a shared machine do
not distort the ratio; with several threads, by wall time. This machine's own speed drifts (other
tenants of the host share its caches and memory), so the peak is not measured once beforehand: after
every 5 timed steps, a burst of peak-size matrix products runs for as long as those steps took, and a
loop's MFU is its useful rate over the rate of its bursts, both taken at the same moments. Each round
picks the fastest size, then runs both loops (10 warm-up steps, then ``--steps`` timed ones); the
printed MFU is the median over rounds.
Prints `mfu_full: X` and `mfu_pruned: Y` last. `--reference` times the loop as it was before
issue 13 (per-parameter AdamW, per-step `.item()`, freed memory returned to the OS), for the
before/after comparison.

    python benchmarks/finetune_mfu.py [--threads 1] [--steps 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import default_model_dir, glue_source
from transformers import AutoTokenizer

from dropbench.data import features, glue, tasks
from dropbench.data.batching import length_grouped_batches
from dropbench.runtime.device import Precision, reuse_freed_memory
from dropbench.prune.layer_drop import drop_layers
from dropbench.train.loop import TrainConfig, load_for_task, make_optimizer, train_step


# Untimed first steps: lazy optimizer state, and the heap settling so that freed blocks are reused
# (dropbench.runtime.device.reuse_freed_memory; glibc needs a few rounds). A real fine-tune runs hundreds of steps.
WARMUP_STEPS = 10
# Timed steps between two matmul bursts.
CHUNK = 5


def clock():
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


SIZES = (256, 512, 1024, 2048)


def matmul_rate(n: int, seconds: float) -> tuple[float, float]:
    """(FLOPs done, seconds spent) multiplying two n x n fp32 matrices for about ``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    calls, start = 0, clock()
    while clock() - start < seconds:
        torch.mm(a, b)
        calls += 1
    return 2 * n**3 * calls, clock() - start


def best_matmul_size(seconds: float = 0.5) -> int:
    """The square size at which torch.mm is fastest here."""
    def rate(n: int) -> float:
        flops, spent = matmul_rate(n, seconds)
        return flops / spent

    return max(SIZES, key=rate)


def linear_weights(model) -> int:
    """Weights of the nn.Linear layers inside the encoder's layers (attention and feed-forward)."""
    layers = model.base_model.encoder.layer
    return sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))


def reference_step(model, batch, optimizer, scheduler, max_grad_norm, amp) -> torch.Tensor:
    """The pre-issue-13 step: per-parameter AdamW is chosen by the caller; `.item()` every step."""
    loss = model(**batch).loss
    loss.item()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def useful_flop_rate(model_dir, split, batches, drop: list[int], reference: bool, peak_size: int) -> tuple[float, float]:
    """(useful FLOP/s of the loop, matmul FLOP/s) timed in turn: after every ``CHUNK`` timed steps, a burst of
    peak-size matrix products as long as those steps took. Both rates then see the same moments of this
    machine, whose speed drifts from second to second (other tenants of the host)."""
    torch.manual_seed(0)
    model = load_for_task(model_dir, "sst2")
    if drop:
        drop_layers(model, drop)
    model.train()
    cfg = TrainConfig(learning_rate=2e-4, batch_size=16)
    optimizer = make_optimizer(model, cfg)
    if reference:  # the groups' own settings would win over foreach/fused: pass only params and decay
        groups = [{"params": group["params"], "weight_decay": group["weight_decay"]} for group in optimizer.param_groups]
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=False, fused=False)
        assert not any(group["fused"] or group["foreach"] for group in optimizer.param_groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    amp, step = Precision(torch.device("cpu")), reference_step if reference else train_step
    weights, tokens, loop_seconds, peak_flops, peak_seconds = linear_weights(model), 0, 0.0, 0.0, 0.0
    pending = []
    for i, indices in enumerate(batches):
        if i >= WARMUP_STEPS and (i - WARMUP_STEPS) % CHUNK == 0:
            start = clock()
        batch = split.batch(indices, model.config.pad_token_id or 0)
        pending.append(step(model, batch, optimizer, scheduler, cfg.max_grad_norm, amp))
        if i < WARMUP_STEPS:
            continue
        tokens += int(split.lengths()[indices].sum())
        if (i - WARMUP_STEPS) % CHUNK == CHUNK - 1 or i == len(batches) - 1:
            torch.stack(pending).tolist()  # the losses are read back as the loop does (every 50 steps there)
            pending.clear()
            chunk_seconds = clock() - start
            loop_seconds += chunk_seconds
            flops, spent = matmul_rate(peak_size, chunk_seconds)
            peak_flops, peak_seconds = peak_flops + flops, peak_seconds + spent
    return 6 * tokens * weights / loop_seconds, peak_flops / peak_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1, help="as the default config's finetune jobs (1)")
    parser.add_argument("--rows", type=int, default=800, help="SST-2 train rows (the default config uses 800)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="rounds (peak, then both loops); the median ratio is printed")
    parser.add_argument("--reference", action="store_true", help="time the pre-issue-13 loop instead")
    parser.add_argument("--model-dir", help="a staged model directory (default: the default config's model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.reference:
        reuse_freed_memory()  # as dropbench.train.loop.finetune does

    model_dir = args.model_dir or default_model_dir()
    spec = tasks.get_task("sst2")
    frame = glue.subsample(glue.load_split(spec, glue_source(spec.glue_dir), "train"), args.rows, 0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    split = features.tokenize(tokenizer, frame["text_a"], None, frame["label"], 128, spec.is_regression)
    batches = length_grouped_batches(split.lengths(), 16, seed=0)[: WARMUP_STEPS + args.steps]
    timed = batches[WARMUP_STEPS:]
    mean_tokens = sum(int(split.lengths()[b].sum()) for b in timed) / len(timed) / 16
    print(f"{model_dir}: {WARMUP_STEPS} warm-up + {len(timed)} timed steps of 16 SST-2 rows, mean {mean_tokens:.1f} real tokens/row, "
          f"{args.threads} thread(s) timed by {'thread CPU time' if args.threads == 1 else 'wall time'}, "
          f"{'reference' if args.reference else 'dropbench'} loop")

    # The peak is measured in turn with the loop (useful_flop_rate): the machine's speed drifts, and a
    # ratio of rates taken at the same moments cancels the drift. Median over rounds.
    ratios = {"full": [], "pruned": []}
    for round_ in range(args.repeats):
        size = best_matmul_size()
        rates = {name: useful_flop_rate(model_dir, split, batches, drop, args.reference, size)
                 for name, drop in (("full", []), ("pruned", [2, 3, 4, 5]))}  # pruned: the `top` strategy, k=4
        print(f"round {round_ + 1}: matmul {size}x{size}, " + ", ".join(
            f"{name} useful {loop / 1e9:.1f} GFLOP/s against peak {peak / 1e9:.1f}" for name, (loop, peak) in rates.items()), flush=True)
        for name, (loop, peak) in rates.items():
            ratios[name].append(loop / peak)
    mfu = {name: statistics.median(values) for name, values in ratios.items()}
    print(f"mfu_full: {mfu['full']:.2f}")
    print(f"mfu_pruned: {mfu['pruned']:.2f}")


if __name__ == "__main__":
    main()
