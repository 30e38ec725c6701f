"""A config reformatted is the same config (issue 27): every shipped config, written back with its keys
sorted or shuffled, plans every job with the same params, so a finished run re-runs nothing.
The finished-run check is in test_recompute.py (``test_a_rewritten_config_plans_nothing``)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml
from tiny import build_tiny_bert
from workflow_runner import REPO, planned_params

from dropbench.plan import job_params

pytestmark = pytest.mark.slow

CONFIGS = sorted((REPO / "config").glob("*.yaml"))
FIXTURE = Path(__file__).parent / "fixtures" / "default_params"
# The report rules that list the grid's models and tasks in the config's order: the order of the tables'
# rows (config/README.md), so a rewrite that reorders `models` or `tasks` re-runs them (seconds), nothing else.
ROW_ORDER_RULES = {"aggregate", "tables"}


def shuffled(value, rng: random.Random, keep: tuple[str, ...] = ()):
    """``value`` with the keys of every mapping in a random order, except the order of the mappings
    under the top-level keys ``keep``."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        if keep:  # top level: shuffle the kept mappings' insides, not their order
            return {key: ({k: shuffled(v, rng) for k, v in item.items()} if key in keep else shuffled(item, rng))
                    for key, item in items}
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch work directory with the repo's resources and stand-ins for config/offline12_gpu.yaml's
    unpacked models (docs/gpu_run.md)."""
    workdir = tmp_path_factory.mktemp("canonical")
    (workdir / "resources").symlink_to(REPO / "resources")
    build_tiny_bert(workdir / ".gpu_payload" / "models" / "mpnet_base", layers=12)
    build_tiny_bert(workdir / ".gpu_payload" / "models" / "minilm_l6", layers=6)
    return workdir


def plans(workdir: Path, configs: dict[str, dict], sort_keys: dict[str, bool]) -> dict[str, dict[str, list[str]]]:
    """The params each config plans, all planned in one process: {file name: planned_params}."""
    paths = []
    for name, config in configs.items():
        paths.append(workdir / name)
        paths[-1].write_text(yaml.safe_dump(config, sort_keys=sort_keys.get(name, False)))
    return dict(zip(configs, planned_params(workdir, *paths)))


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda path: path.name)
def test_a_shipped_config_with_its_keys_sorted_or_shuffled_plans_the_same_params(workdir, config_file):
    config = yaml.safe_load(config_file.read_text())
    planned = plans(workdir, {"given.yaml": config, "sorted.yaml": config,
                              **{f"shuffled{seed}.yaml": shuffled(config, random.Random(seed), keep=("models", "tasks"))
                                 for seed in range(2)},
                              "shuffled_all.yaml": shuffled(config, random.Random(27))}, {"sorted.yaml": True})
    given = planned["given.yaml"]
    assert {rule: jobs for rule, jobs in planned["sorted.yaml"].items()
            if rule not in ROW_ORDER_RULES} == {rule: jobs for rule, jobs in given.items() if rule not in ROW_ORDER_RULES}
    for seed in range(2):
        assert planned[f"shuffled{seed}.yaml"] == given
    everything = planned["shuffled_all.yaml"]
    assert set(everything) == set(given)
    assert {rule for rule in given if everything[rule] != given[rule]} <= ROW_ORDER_RULES


def test_the_default_configs_params_are_those_planned_before_issue_27(workdir):
    """Canonical params kept the shipped configs' params as they were (no finished result re-runs). The
    fixture is the params main planned for its copy of config/config.yaml before issue 27; regenerate it
    (tests/plan_params.py) only when a stage version is bumped on purpose. The report rules' code digests
    are left out of the comparison (they follow the report code)."""
    expected = without_code_digests(json.loads((FIXTURE / "params.json").read_text()))
    planned = without_code_digests(planned_params(workdir, FIXTURE / "config.yaml")[0])
    assert len(planned["model_card"]) == len(planned["evaluate"])  # model cards (issue 26): new jobs, one per cell
    assert {rule: planned.get(rule) for rule in expected if rule not in PARAMS_ADDED_SINCE} == {
        rule: jobs for rule, jobs in expected.items() if rule not in PARAMS_ADDED_SINCE}
    assert set(planned) - set(expected) <= RULES_ADDED_SINCE  # new rules are new jobs: no finished result re-runs
    assert set(PARAMS_ADDED_SINCE) <= set(planned)


# Rules the default config plans that did not exist before issue 27.
RULES_ADDED_SINCE = {"model_card"}
# Report rules given a param since, on purpose (each re-runs once, in seconds): why.
PARAMS_ADDED_SINCE = {"paper_comparison": "sources: which models are the paper's checkpoints (issue 24 item 5)"}
# A report rule's digest of its code (common.smk code_digest, issue 24): it follows that code by design.
CODE_DIGEST = re.compile(r"^'[0-9a-f]{16}'$")


def without_code_digests(plan: dict[str, list[str]]) -> dict[str, list[str]]:
    return {rule: sorted(json.dumps([v for v in json.loads(job) if not CODE_DIGEST.match(v)]) for job in jobs)
            for rule, jobs in plan.items()}


def test_numbers_and_key_order_have_one_spelling():
    a = yaml.safe_load("training: {learning_rate: 2.0e-4, epochs: 3}\nscoring: {seed: 0, sample_size: 8}")
    b = yaml.safe_load("scoring: {sample_size: 8, seed: 0}\ntraining: {epochs: 3, learning_rate: 0.0002}")
    assert repr(job_params.canonical(a)) == repr(job_params.canonical(b))
    assert job_params.canonical({"b": (1, 2), "a": True}) == {"a": True, "b": [1, 2]}
    assert list(job_params.canonical({"path": "m", "pip_name": "p", "kind": "package", "package": "q"}, "source")) == [
        "kind", "package", "pip_name", "path"]
