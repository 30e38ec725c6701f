"""The conda environments behind `--use-conda`: they parse, every rule has one, and they hold what the code imports.

Conda channels cannot be reached from the test machines, so the environments are checked statically:
each rule's script is followed through the dropbench modules it imports (imports inside functions
count too, so the check errs on the side of listing a package) and every third-party top-level
import must be named in that rule's environment.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))

# Import names whose distribution is called something else.
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow", "mlflow": "mlflow-skinny"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_packages(path: Path) -> dict[str, str]:
    """Package name -> pinned version, conda and pip entries alike (pip options skipped)."""
    spec = yaml.safe_load(path.read_text())
    packages = {}
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            for requirement in entry["pip"]:
                if requirement.startswith("-"):
                    continue
                name, _, version = requirement.partition("==")
                packages[normalise(name)] = version
        else:
            name, _, version = entry.partition("=")
            packages[normalise(name)] = version
    return packages


def rules() -> dict[str, dict]:
    """Rule name -> {'file', 'conda', 'script'} for every rule in workflow/rules."""
    found = {}
    for path in RULE_FILES:
        blocks = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.MULTILINE)[0]  # up to the next top-level line
            directive = {
                key: (match.group(1) if (match := re.search(rf"^\s+{key}:\s*\n\s+\"([^\"]+)\"", body, re.MULTILINE)) else None)
                for key in ("conda", "script")
            }
            found[name] = {"file": path, **directive, "runs_code": bool(re.search(r"^\s+(script|shell|run):", body, re.MULTILINE))}
    return found


def module_path(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_names(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def third_party_imports(start: Path) -> set[str]:
    """Top-level third-party modules imported by ``start`` and every dropbench module it reaches."""
    seen, third_party, todo = set(), set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            top = name.split(".")[0]
            if top == "dropbench":
                if (target := module_path(name)) is not None:
                    todo.append(target)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    return third_party


def distribution(module: str) -> str:
    return normalise(DISTRIBUTION.get(module, module))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_parses_and_pins_every_package(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] and "defaults" not in spec["channels"]
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"{path.name}: unexpected {entry}"
            unpinned = [r for r in entry["pip"] if not r.startswith("-") and "==" not in r]
        else:
            unpinned = [entry] if not re.fullmatch(r"[A-Za-z0-9_.\-]+=\d[\w.]*", entry) else []
        assert not unpinned, f"{path.name}: not pinned: {unpinned}"


def test_env_pins_agree_with_requirements_txt():
    pinned = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[normalise(name)] = version.strip()
    for path in ENV_FILES:
        for name, version in env_packages(path).items():
            if name in pinned:
                # conda `numpy=2.4` means 2.4.*; `torch==2.13.0+cpu` is 2.13.0 from the CPU index.
                wanted = pinned[name]
                assert (wanted + ".").startswith(version.split("+")[0] + "."), (
                    f"{path.name} pins {name} {version}, requirements.txt has {wanted}"
                )


def test_every_rule_that_runs_code_has_an_existing_conda_env():
    found = rules()
    assert {"finetune", "evaluate", "aggregate"} <= set(found)
    for name, rule in found.items():
        if not rule["runs_code"]:
            continue
        assert rule["conda"], f"rule {name} in {rule['file'].name} has no conda: directive"
        env = (rule["file"].parent / rule["conda"]).resolve()
        assert env in [p.resolve() for p in ENV_FILES], f"rule {name}: conda env {rule['conda']} is not one of envs/*.yaml"


def test_each_rules_env_names_every_package_its_script_imports():
    for name, rule in rules().items():
        if not rule["script"]:
            continue
        script = (rule["file"].parent / rule["script"]).resolve()
        env = env_packages((rule["file"].parent / rule["conda"]).resolve())
        missing = sorted(m for m in third_party_imports(script) if distribution(m) not in env)
        assert not missing, f"rule {name} imports {missing} but {rule['conda']} does not list them"


def test_every_third_party_import_in_the_package_is_in_some_env():
    listed = set().union(*(env_packages(path) for path in ENV_FILES))
    for path in sorted(SRC.glob("dropbench/**/*.py")):
        top_levels = {name.split(".")[0] for name in imported_names(path)}
        missing = sorted(m for m in top_levels - {"dropbench"} - set(sys.stdlib_module_names) if distribution(m) not in listed)
        assert not missing, f"{path.relative_to(REPO)} imports {missing}, which no envs/*.yaml lists"


def test_the_import_scan_sees_lazy_imports():
    # sources imports huggingface_hub inside the function that downloads from the hub.
    assert "huggingface_hub" in third_party_imports(REPO / "workflow" / "scripts" / "models_step.py")


def test_snakemake_lint_passes(tmp_path):
    # Lint the default config in a scratch directory so nothing is written next to the real results.
    for name in ("config", "resources"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
