"""Inference speed-up of a pruned model against the ideal L/(L-k), for the default model with k = half
its layers (top strategy), measured with the evaluate step's latency protocol, both models in one run.
Prints `fraction_of_ideal: Y` last (measured speed-up / ideal).

    python benchmarks/pruned_inference.py [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from common import default_model_dir
from transformers import AutoModelForSequenceClassification

from dropbench.evaluate import latency
from dropbench.prune import layer_drop, step as prune


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two models this many times")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    full_dir = default_model_dir()
    layers = layer_drop.num_layers(AutoModelForSequenceClassification.from_pretrained(full_dir).config)
    k = layers // 2
    pruned_dir = Path(tempfile.mkdtemp(prefix="dropbench-bench-")) / "pruned"
    prune.prune_checkpoint(full_dir, pruned_dir, "top", k)
    models = {
        "full": AutoModelForSequenceClassification.from_pretrained(full_dir, num_labels=2),
        "pruned": AutoModelForSequenceClassification.from_pretrained(pruned_dir, num_labels=2),
    }
    device = torch.device("cpu")
    medians = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            medians[name].append(latency.measure(model, device)["latency_ms_median"])
    full, pruned = statistics.median(medians["full"]), statistics.median(medians["pruned"])
    ideal = layers / (layers - k)
    print(f"protocol: batch 32, seq 128, 3 warm-up + median of 10, {args.rounds} alternating rounds, {args.threads} threads")
    print(f"full ({layers} layers): {full:.1f} ms per batch")
    print(f"pruned ({layers - k} layers, top-{k}): {pruned:.1f} ms per batch")
    print(f"speed-up: {full / pruned:.2f} (ideal {ideal:.2f})")
    print(f"fraction_of_ideal: {full / pruned / ideal:.2f}")


if __name__ == "__main__":
    main()
