"""Do equal-depth architectures, and two runs of one architecture, get latencies within 5%?

Times the default run's architectures (config/config.yaml: all-MiniLM-L6-v2 unpruned and with each of
its strategies at each k: top and bottom at k = 2 and 4) the way the ``measure_latency`` jobs do: each in a process of its own
(``dropbench.evaluate.latency.measure_architecture``, one thread, the default config's protocol), the full model
first and alone, then each pruned checkpoint beside the full model, and expresses them as the aggregate
does (``aggregate.in_full_models_figure``: each ratio times the lowest of the full model's timings of
that round); ``--rounds`` rounds, the pruned architectures in a different order each round.
Prints per architecture each round's figure, then `relative_repeat_disagreement` (the largest max/min - 1
over the rounds of one architecture's ratio to the full model), then, last:
`equal_depth_spread: X` (the largest max/min - 1 among architectures of one depth, within a round) and
`repeat_disagreement: Y` (the largest max/min - 1 over the rounds of one architecture's latency_ms); target 0.05 each.

    python benchmarks/latency_repeatability.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml
from common import REPO, default_model_dir

from dropbench.prune import step as prune
from dropbench.report.aggregate import in_full_models_figure

TIME_ONE = """
import json, sys
from dropbench.runtime.device import set_threads
from dropbench.evaluate.latency import measure_architecture
set_threads(1)  # as the measure_latency step (dropbench.steps.models)
measure_architecture(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], {}, full_model_dir=(sys.argv[4:] or [None])[0])
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    protocol = config["evaluation"]["latency"]
    architectures = [("none", 0)] + [(strategy, k) for k in config["k"] for strategy in config["strategies"]]
    full_dir = default_model_dir()
    work = Path(tempfile.mkdtemp(prefix="dropbench-bench-"))
    dirs = {}
    for strategy, k in architectures:
        dirs[(strategy, k)] = full_dir if k == 0 else work / f"{strategy}-k{k}"
        if k:
            prune.prune_checkpoint(full_dir, dirs[(strategy, k)], strategy, k)
    print(f"protocol {protocol} (config/config.yaml and the schema's defaults), one process per timing")

    figures: dict[tuple, list[float]] = defaultdict(list)
    relative: dict[tuple, list[float]] = defaultdict(list)
    depth = {}
    for round_ in range(args.rounds):
        pruned = random.Random(round_).sample(architectures[1:], len(architectures) - 1)
        records = {}
        for arch in [("none", 0)] + pruned:
            out = work / f"{arch[0]}-k{arch[1]}-{round_}.json"
            beside = [] if arch[1] == 0 else [str(full_dir)]
            subprocess.run([sys.executable, "-c", TIME_ONE, str(dirs[arch]), json.dumps(protocol), str(out), *beside],
                           check=True, capture_output=True, cwd=REPO)
            records[("default", *arch, "any")] = json.loads(out.read_text())
        # as the aggregate joins them to the cells: each ratio times the full model's lowest timing
        for (_, *arch, _), result in in_full_models_figure(records).items():
            arch = tuple(arch)
            figures[arch].append(result["latency_ms"])
            relative[arch].append(result["relative_to_full"])
            depth[arch] = result["num_layers"]
            print(f"round {round_ + 1} {arch[0]}-k{arch[1]} ({depth[arch]} layers): {result['latency_ms']:.1f} ms "
                  f"(x{result['relative_to_full']:.4f} of the full model; this job's own figure {result['latency_ms_measured']:.1f}), "
                  f"{result['passes']} passes, converged {result['converged']}", flush=True)

    spread = 0.0
    for round_ in range(args.rounds):
        groups = defaultdict(list)
        for arch, values in figures.items():
            groups[depth[arch]].append(values[round_])
        spread = max([spread] + [max(v) / min(v) - 1 for v in groups.values() if len(v) > 1])
    disagreement = max(max(v) / min(v) - 1 for v in figures.values())
    print(f"relative_repeat_disagreement: {max(max(v) / min(v) - 1 for v in relative.values()):.3f}")
    print(f"equal_depth_spread: {spread:.3f}")
    print(f"repeat_disagreement: {disagreement:.3f}")


if __name__ == "__main__":
    main()
