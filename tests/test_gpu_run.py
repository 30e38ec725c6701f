"""The GPU run's scripts rehearsed on CPU (docs/gpu_run.md): weights cut into parts and reassembled with
every sha256 checked, a corrupted part refused before any training, and the device script run end to end
on a tiny random BERT with a faked $OUT."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from tiny import REPO, build_tiny_bert, write_tiny_tasks
from workflow_runner import planned_jobs

sys.path.insert(0, str(REPO / "scripts" / "gpu"))
import gpu_parts  # noqa: E402

RUN = REPO / "scripts" / "gpu" / "run_offline12.sh"
PART_BYTES = 64 * 1024  # the tiny model's ~0.3 MB payload in several parts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_probe_wheel(folder: Path) -> Path:
    """A minimal valid pure-Python wheel, standing in for the Snakemake wheels the device lacks."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "gpu_probe-1.0.dist-info"
    files = {"gpu_probe.py": "VALUE = 1\n", f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu_probe\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = folder / "gpu_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_parts")
    model = build_tiny_bert(root / "staged" / "tiny")
    wheel = write_probe_wheel(root / "wheels")
    manifest = gpu_parts.make_parts({"tiny": model}, root / ".gpu_parts", PART_BYTES, wheels=wheel.parent)
    return root, model, manifest


def test_parts_fit_the_limit_and_reassemble_to_the_same_files(parts, tmp_path):
    root, model, manifest = parts
    assert len(manifest["parts"]) >= 3
    assert all(part["size"] <= PART_BYTES for part in manifest["parts"])
    assert sum(part["size"] for part in manifest["parts"]) == manifest["size"]
    for part in manifest["parts"]:
        assert sha256(root / ".gpu_parts" / part["name"]) == part["sha256"]
    # what travels with each call (tree + manifest + one part) stays under the device's 64 MiB
    tree = gpu_parts.tree_bytes()
    real_part = gpu_parts.part_size_for(tree)
    assert tree + real_part + (root / ".gpu_parts" / "manifest.json").stat().st_size < 64 * 2**20
    again = gpu_parts.make_parts({"tiny": model}, tmp_path / "again", PART_BYTES, wheels=root / "wheels")
    assert again["sha256"] == manifest["sha256"]  # the same files make the same parts
    plan = gpu_parts.call_plan(manifest)
    assert len(plan) == len(manifest["parts"])
    assert "check-part 1" in plan[0] and plan[-1].endswith("bash scripts/gpu/run_offline12.sh")

    gpu_parts.assemble(root / ".gpu_parts", tmp_path / "payload")
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        assert sha256(tmp_path / "payload" / "models" / "tiny" / name) == sha256(model / name)
    assert sha256(tmp_path / "payload" / "wheels" / "gpu_probe-1.0-py3-none-any.whl") == sha256(root / "wheels" / "gpu_probe-1.0-py3-none-any.whl")


def test_a_truncated_manifest_is_named_not_a_traceback(parts, tmp_path, capsys):
    """Issue 24 item 5."""
    root, _, _ = parts
    carried = tmp_path / ".gpu_parts"
    shutil.copytree(root / ".gpu_parts", carried)
    manifest = carried / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(gpu_parts.PartsError, match=r"manifest.json is not a whole manifest"):
        gpu_parts.read_manifest(carried)
    assert gpu_parts.main(["check-part", "1", "--parts", str(carried)]) == 2
    assert "is not a whole manifest" in capsys.readouterr().err
    manifest.write_text(json.dumps({"parts": []}))
    with pytest.raises(gpu_parts.PartsError, match=r"lacks payload, size, sha256, files"):
        gpu_parts.read_manifest(carried)


def test_assemble_unpacks_again_when_an_unpacked_file_was_edited_or_deleted(parts, tmp_path):
    """Issue 24 item 5: the completion stamp alone was trusted."""
    root, model, _ = parts
    dest = tmp_path / "payload"
    gpu_parts.assemble(root / ".gpu_parts", dest)
    weights = dest / "models" / "tiny" / "model.safetensors"
    stamp_time = (dest / gpu_parts.COMPLETE).stat().st_mtime_ns
    gpu_parts.assemble(root / ".gpu_parts", dest)  # intact: kept as it is
    assert (dest / gpu_parts.COMPLETE).stat().st_mtime_ns == stamp_time
    weights.write_bytes(b"edited")
    gpu_parts.assemble(root / ".gpu_parts", dest)
    assert sha256(weights) == sha256(model / "model.safetensors")
    (dest / "models" / "tiny" / "config.json").unlink()
    gpu_parts.assemble(root / ".gpu_parts", dest)
    assert sha256(dest / "models" / "tiny" / "config.json") == sha256(model / "config.json")


@pytest.mark.parametrize("bad", ["-5", "0", "lots"])
def test_a_part_size_below_one_byte_is_refused_and_leaves_nothing(parts, tmp_path, capsys, bad):
    """Issue 24 item 5: --part-bytes -5 looped forever and left a temporary directory."""
    root, model, _ = parts
    with pytest.raises(SystemExit):
        gpu_parts.main(["make", "--model", f"tiny={model}", "--part-bytes", bad, "--out", str(tmp_path / "out")])
    assert f"bad value '{bad}': a whole number of bytes >= 1" in capsys.readouterr().err
    with pytest.raises(gpu_parts.PartsError, match=r"part size -5 bytes"):
        gpu_parts.make_parts({"tiny": model}, tmp_path / "out", -5)
    assert list(tmp_path.iterdir()) == []


def test_check_part_names_a_missing_or_altered_part(parts, tmp_path):
    root, _, manifest = parts
    carried = tmp_path / ".gpu_parts"
    carried.mkdir()
    shutil.copy(root / ".gpu_parts" / "manifest.json", carried)
    shutil.copy(root / ".gpu_parts" / "part-001", carried)
    assert gpu_parts.check_part(carried, 1)["name"] == "part-001"
    with pytest.raises(gpu_parts.PartsError, match=r"part part-002 \(2 of \d+\) is missing"):
        gpu_parts.check_part(carried, 2)
    with pytest.raises(gpu_parts.PartsError, match=r"part number 99 is out of range"):
        gpu_parts.check_part(carried, 99)


def test_the_command_lines_print_the_call_plan_and_check_a_carried_part(parts, tmp_path):
    root, model, _ = parts
    script = [sys.executable, str(REPO / "scripts" / "gpu" / "gpu_parts.py")]
    made = subprocess.run([*script, "make", "--model", f"tiny={model}", "--out", str(tmp_path / ".gpu_parts"),
                           "--part-bytes", str(PART_BYTES)], capture_output=True, text=True, check=True).stdout
    count = len(json.loads((tmp_path / ".gpu_parts" / "manifest.json").read_text())["parts"])
    assert f"in {count} parts" in made and f"call {count}: carry" in made and "run_offline12.sh" in made
    checked = subprocess.run([*script, "check-part", "2", "--parts", str(tmp_path / ".gpu_parts")],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.startswith(f"part part-002 (2 of {count}) ok")
    (tmp_path / ".gpu_parts" / "part-002").write_bytes(b"not the part")
    refused = subprocess.run([*script, "check-part", "2", "--parts", str(tmp_path / ".gpu_parts")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "part part-002 has 12 bytes, the manifest says" in refused.stderr


def run_script(workdir: Path, out: Path, config: Path, budget: int = 1200) -> subprocess.CompletedProcess:
    # A budget far above the ~1 minute the tiny run needs: on a shared, loaded machine a phase cut short
    # would still report (partially), but the test asserts the complete path.
    env = {**os.environ, "OUT": str(out), "GPU_WORKDIR": str(workdir), "GPU_CONFIG": str(config),
           "GPU_ALLOW_CPU": "1", "GPU_PYTHON": sys.executable, "GPU_CORES": "2", "GPU_BUDGET_S": str(budget),
           "GPU_SITE": str(workdir / "site"), "DROPBENCH_GPU_COUNT": "0", "DROPBENCH_JOBS_PER_GPU": "1"}
    return subprocess.run(["bash", str(RUN)], capture_output=True, text=True, env=env, cwd=REPO)


def workdir_with_parts(root: Path, target: Path) -> Path:
    shutil.copytree(root / ".gpu_parts", target / ".gpu_parts")
    return target


def test_a_corrupted_part_is_refused_before_any_training(parts, tmp_path):
    root, _, _ = parts
    workdir = workdir_with_parts(root, tmp_path / "work")
    damaged = workdir / ".gpu_parts" / "part-002"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (workdir / ".gpu_parts" / "part-003").unlink()
    result = run_script(workdir, tmp_path / "out", tmp_path / "unused.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "part part-002 is corrupt: sha256" in output
    assert "part part-003 (3 of" in output and "is missing" in output
    assert "no training was started" in output
    assert not (workdir / "results").exists() and not (workdir / ".gpu_payload").exists()


def test_out_limits_are_checked(tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(9):
        (many / f"f{i}.txt").write_text("x")
    with pytest.raises(gpu_parts.PartsError, match=r"9 files, at most 8 come back"):
        gpu_parts.check_out(many)
    deep = tmp_path / "deep"
    (deep / "a" / "b" / "c").mkdir(parents=True)
    (deep / "a" / "big.bin").write_bytes(b"0" * 2000)
    (deep / "a" / "b" / "c" / "x.txt").write_text("x")
    with pytest.raises(gpu_parts.PartsError, match=r"a/b/c/x.txt is more than 2 folders down; a/big.bin has 2000 bytes, at most 1000"):
        gpu_parts.check_out(deep, max_bytes=1000)


def tiny_gpu_config(workdir: Path, model_sha: str) -> dict:
    """The shape of config/offline12_gpu.yaml on the tiny model: a local source in .gpu_payload/."""
    shipped = yaml.safe_load((REPO / "config" / "offline12_gpu.yaml").read_text())
    tasks = write_tiny_tasks(workdir / "glue")
    return {
        # unpruned only: the workflow's pruning is tested elsewhere; here the fewest jobs that reach every report
        "models": {"tiny": {"source": {"kind": "local", "path": ".gpu_payload/models/tiny", "sha256": model_sha},
                            "num_layers": 4, "prune": False}},
        "tasks": {"sst2": tasks["sst2"]},
        "seeds": [1],
        "training": {**shipped["training"], "epochs": 1, "max_length": 32},
        "evaluation": {"batch_size": 16, "latency": {"batch_size": 4, "seq_len": 16, "warmup": 1, "repeats": 2}},
        "resources": shipped["resources"],
    }


@pytest.mark.slow
def test_rehearsal_stages_runs_and_fills_out_within_its_limits(parts, tmp_path):
    root, model, _ = parts
    workdir = workdir_with_parts(root, tmp_path / "work")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_gpu_config(workdir, sha256(model / "model.safetensors"))))
    out = tmp_path / "out"
    result = run_script(workdir, out, config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "payload sha256" in output and "files ok" in output
    assert (workdir / "site" / "gpu_probe.py").is_file()  # the carried wheels were installed, offline
    assert "1 architectures to time; the latency phase keeps 25s" in output

    files = gpu_parts.check_out(out)
    assert {p.name for p in files} == {"offline12_gpu_results.tar.gz", "offline12_gpu_logs.tar.gz", "run.json", "hardware.txt"}
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] and record["cells_finished"] == 1 and record["architectures_timed"] == 1
    assert [p["phase"] for p in record["phases"]] == ["train", "latency", "report"]
    assert record["wall_s"] <= record["budget_s"]
    with tarfile.open(out / "offline12_gpu_results.tar.gz") as tar:
        names = set(tar.getnames())
    for expected in ("results/summary.csv", "results/stats.csv", "reports/paper_comparison.md",
                     "reports/figures/score_vs_dropped.png", "results/cells/tiny/none-k0/sst2/seed1/metrics.json",
                     "run/hardware.txt", "run/run.json", "run/runs.jsonl"):
        assert expected in names, sorted(names)
    assert not any(name.endswith(".safetensors") for name in names)


@pytest.mark.slow
def test_offline12_gpu_plans_its_grid_once_the_payload_is_there(tmp_path):
    (tmp_path / "resources").symlink_to(REPO / "resources")
    build_tiny_bert(tmp_path / ".gpu_payload" / "models" / "mpnet_base", layers=12)
    build_tiny_bert(tmp_path / ".gpu_payload" / "models" / "minilm_l6", layers=6)
    shutil.copy(REPO / "config" / "offline12_gpu.yaml", tmp_path / "config.yaml")
    counts = planned_jobs(tmp_path)
    # 1 + 8 strategies x 3 k MPNet variants and the MiniLM baseline on 2 tasks; data-driven strategies
    # (contribution, angular) prune and are timed per task
    assert counts["finetune"] == counts["evaluate"] == (1 + 8 * 3 + 1) * 2
    assert counts["prune"] == 6 * 3 + 2 * 3 * 2
    assert counts["measure_latency"] == 2 + 6 * 3 + 2 * 3 * 2
