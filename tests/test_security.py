"""Weights only from safetensors, never unpickled; no remote code; config names cannot leave results/."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
from tiny import REPO, build_tiny_bert

from dropbench.plan import grid
from dropbench.train.loop import load_for_task

SOURCES = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"),
                  REPO / "Snakefile"])
UNPICKLING = re.compile(r"\b(torch\.load|pickle\.loads?|joblib\.load|dill\.load|cloudpickle\.load|allow_pickle\s*=\s*True)\b")


def test_the_scan_sees_the_code():
    names = {path.name for path in SOURCES}
    assert {"loop.py", "step.py", "evaluation.py", "models_step.py", "models.py", "common.smk"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unpickling_and_no_remote_code(path):
    text = path.read_text()
    assert not UNPICKLING.findall(text)
    assert not re.search(r"trust_remote_code\s*=\s*True", text)


def model_loading_calls(path: Path):
    """``Auto*Model*.from_pretrained(...)`` calls: the ones that read weights."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            receiver = node.func.value
            name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
            if "Model" in name:
                yield name, node


@pytest.mark.parametrize("path", [p for p in SOURCES if p.suffix == ".py"], ids=lambda p: str(p.relative_to(REPO)))
def test_every_model_load_demands_safetensors(path):
    for name, call in model_loading_calls(path):
        keywords = {k.arg: k.value for k in call.keywords}
        where = f"{path.relative_to(REPO)}:{call.lineno} {name}.from_pretrained"
        assert isinstance(keywords.get("use_safetensors"), ast.Constant) and keywords["use_safetensors"].value is True, where
        remote = keywords.get("trust_remote_code")
        assert remote is None or (isinstance(remote, ast.Constant) and remote.value is False), where


class Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_only_checkpoint_is_refused_without_unpickling(tmp_path):
    model_dir = build_tiny_bert(tmp_path / "model")
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "pickle_code_ran"
    with open(model_dir / "pytorch_model.bin", "wb") as handle:
        pickle.dump(Payload(marker), handle)
    with pytest.raises(OSError, match="safetensors"):
        load_for_task(model_dir, "sst2")
    assert not marker.exists()


def test_grid_paths_of_valid_names_stay_under_results():
    cell = grid.Cell("m.v1-base", "top", 2, "sst2", 1)
    paths = [cell.dir, cell.metrics, grid.pretrained_dir(cell.model),
             grid.features_dir(cell.model, cell.task), grid.pruned_dir(cell.model, "top", 2, "any")]
    root = Path("/work/x").resolve()
    for path in paths:
        assert (root / path).resolve().is_relative_to(root / "results"), path
