"""The README's "Add a strategy" example runs on the default config (issue 27): each Python block of that
section, saved as the user's own strategy file, plans the default grid with the strategy added."""

from __future__ import annotations

import ast
import re

import pytest
import yaml
from workflow_runner import REPO, planned_jobs

pytestmark = pytest.mark.slow


def section_code_blocks(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


BLOCKS = section_code_blocks("Add a strategy")


def test_the_section_has_an_example():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.split("(")[0][:30])
def test_a_readme_strategy_plans_on_the_default_config(tmp_path, block):
    names = [node.name for node in ast.parse(block).body if isinstance(node, ast.FunctionDef)]
    assert names
    (tmp_path / "my_strategies.py").write_text("from dropbench.prune.strategies import register\n\n" + block)
    (tmp_path / "resources").symlink_to(REPO / "resources")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["custom_strategies"] = [f"my_strategies.py:{name}" for name in names]
    config["strategies"] = [*config["strategies"], *names]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = planned_jobs(tmp_path)  # fails with the strategy's error if a k of the grid is refused
    assert plan["prune"] == len(config["k"]) * len(config["strategies"])
