"""Latency is measured once per architecture, reproducibly: equal depth, equal latency."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import one_thread  # noqa: F401 (a fixture)
from transformers import BertConfig, BertModel

from dropbench import latency
from dropbench.prune import prune_checkpoint

# Short passes (a few ms) and many of them: on a busy machine some passes still run uninterrupted.
PROTOCOL = {"batch_size": 4, "seq_len": 32, "warmup": 3, "repeats": 100, "agree": 3, "tolerance": 0.02, "max_seconds": 5}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_bert(tmp_path_factory):
    """A random 4-layer BERT big enough (hidden 128) that a forward pass takes milliseconds, not microseconds."""
    out = tmp_path_factory.mktemp("latency") / "model"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=500, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    return out


def test_each_architecture_is_timed_once_with_its_protocol_and_depth(small_bert, tmp_path):
    figures = {}
    for strategy in ("top", "bottom", "symmetric"):
        pruned = tmp_path / strategy
        prune_checkpoint(small_bert, pruned, strategy, 2)
        arch = {"model": "small", "strategy": strategy, "k": 2, "scope": "any"}
        figures[strategy] = latency.measure_architecture(pruned, PROTOCOL, tmp_path / f"{strategy}.json", arch)
    full = latency.measure_architecture(small_bert, PROTOCOL, tmp_path / "full.json",
                                        {"model": "small", "strategy": "none", "k": 0, "scope": "any"})

    pruned_ms = [f["latency_ms"] for f in figures.values()]
    # Agreement within 5% is not asserted anywhere: benchmarks/latency_repeatability.py measures it, since
    # a timing taken inside the test suite depends on what else the CI machine runs.
    assert full["latency_ms"] > 1.3 * min(pruned_ms)  # 4 layers against 2: the timing sees the depth
    written = json.loads((tmp_path / "top.json").read_text())
    assert written == figures["top"] and written["num_layers"] == 2 and written["architecture"]["strategy"] == "top"
    assert written["protocol"] == {**PROTOCOL, "device": "cpu", "threads": 1, "clock": "thread_time"}
    assert written["passes"] >= PROTOCOL["repeats"]


def fake_passes(monkeypatch, seconds: list[float]) -> list[float]:
    """Make each timed pass take the next of ``seconds``; returns the list of passes handed out."""
    handed = []

    def timed_pass(model, inputs, device):
        handed.append(seconds[len(handed)])
        return handed[-1]

    monkeypatch.setattr(latency, "_timed_pass", timed_pass)
    return handed


TINY = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))


def test_passes_go_on_until_the_fastest_ones_agree(monkeypatch):
    # 2 warm-up passes, then: the 3 fastest of the first 4 timed ones (1.0, 1.05, 1.2) are 20% apart, so
    # timing goes on; 1.015 makes the fastest three (1.0, 1.01, 1.015) agree within 2%.
    handed = fake_passes(monkeypatch, [9, 9, 1.2, 1.0, 1.05, 1.3, 1.01, 1.5, 1.015, 7, 7])
    result = latency.measure(TINY, torch.device("cpu"), batch_size=2, seq_len=4, warmup=2, repeats=4, agree=3, tolerance=0.02)
    assert len(handed) == 9 and result["passes"] == 7 and result["converged"]
    assert result["latency_ms"] == 1000.0


def test_passes_stop_at_the_time_budget_without_agreement(monkeypatch):
    handed = fake_passes(monkeypatch, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    result = latency.measure(TINY, torch.device("cpu"), batch_size=2, seq_len=4, warmup=0, repeats=2, max_seconds=6)
    assert len(handed) == 4 and not result["converged"]  # 1 + 1.5 + 2 + 2.5 >= 6
    assert latency.at_floor([1.0, 1.01, 1.02], 3, 0.02) and not latency.at_floor([1.0, 1.01], 3, 0.02)


def test_cuda_timing_uses_events(monkeypatch):
    """On a GPU each pass is timed between two CUDA events (faked here: no GPU on the test machine)."""
    recorded = []

    class FakeEvent:
        def __init__(self, enable_timing):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = len(recorded)
            recorded.append(self)

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return 250.0  # milliseconds

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(latency, "autocast", lambda device: torch.autocast("cpu", enabled=False))
    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    inputs = {"input_ids": torch.ones(2, 4, dtype=torch.long)}
    assert latency._timed_pass(model, inputs, torch.device("cuda")) == 0.25
    assert len(recorded) == 2 and recorded[0].at == 0 and recorded[1].at == 1
