"""The real Snakefile on a tiny left-padding XLNet: the reported metric is the model's metric on each
dev row alone, so padding (on the tokenizer's side) changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import build_tiny_xlnet, tiny_config, write_config
from transformers import AutoModelForSequenceClassification
from workflow_runner import snakemake

from dropbench.data import features
from dropbench.evaluate import metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def xlnet_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("xlnet")
    config = tiny_config(workdir, strategies=("top",), k=(1,))
    model_dir = build_tiny_xlnet(workdir / "tiny_xlnet")
    config["models"] = {"tinyxl": {"source": {"kind": "local", "path": str(model_dir)}, "num_layers": 2}}
    config["tasks"] = {"stsb": config["tasks"]["stsb"]}
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    return workdir


def predictions(model, split: features.Features, indices_per_batch) -> np.ndarray:
    out = np.zeros(len(split), dtype=np.float32)
    for indices in indices_per_batch:
        batch = split.batch(np.asarray(indices), model.config.pad_token_id)
        batch.pop("labels")
        with torch.no_grad():
            out[indices] = model(**batch).logits[:, 0].numpy()
    return out


@pytest.mark.parametrize("cell", ["none-k0", "top-k1"])
def test_reported_metric_is_the_metric_of_each_row_alone(xlnet_run, cell):
    cell_dir = xlnet_run / "results/cells/tinyxl" / cell / "stsb/seed1"
    reported = json.loads((cell_dir / "metrics.json").read_text())["metrics"]
    features_dir = xlnet_run / "results/features/tinyxl/stsb"
    assert json.loads((features_dir / "info.json").read_text())["padding_side"] == "left"
    dev = features.load(features.split_path(features_dir, "validation"))
    assert len(set(dev.lengths())) > 1  # evaluation batches really were padded
    model = AutoModelForSequenceClassification.from_pretrained(cell_dir / "finetuned", use_safetensors=True).eval()
    one_by_one = predictions(model, dev, [[i] for i in range(len(dev))])
    assert one_by_one.std() > 1e-3
    alone = metrics.compute("stsb", one_by_one, dev.labels)
    for name, value in alone.items():
        assert reported[name] == pytest.approx(value, abs=1e-5), name
    # The old behaviour, right padding, gives other predictions: the comparison above can fail.
    dev.padding_side = "right"
    right = predictions(model, dev, [range(len(dev))])
    assert not np.allclose(right, one_by_one, atol=1e-3)
