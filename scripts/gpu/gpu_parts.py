"""Carry the offline12 weights (and the Python wheels the device lacks) to the device machine in parts.

The device takes at most 64 MiB of working tree per call, so the payload (a gzip'd tar of the staged
model folders and the wheels) is cut into parts that each fit beside the tracked tree, one part per
call, into the ignored folder .gpu_parts/; docs/gpu_run.md has the call plan.

    make        (here)    build the payload, cut it into parts, write .gpu_parts/manifest.json
    check-part  (device)  one arrived part against the manifest (size and sha256)
    assemble    (device)  every part, then the whole payload, then every file in it, against the manifest;
                          unpack into .gpu_payload/ only if all match
    pack        (device)  the run's tables, figures, summaries and logs into $OUT, within its limits

Every check fails with a message naming the part or file, the expected and the actual value.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from dropbench.runtime.atomic import atomic_dir, write_json  # noqa: E402
from dropbench.plan.integrity import sha256_file  # noqa: E402

MIB = 2**20
MANIFEST = "manifest.json"
PAYLOAD = "payload.tar.gz"
# The device's limits (/work/.library/device/README.md): working tree per call, files back from $OUT.
TREE_LIMIT = 64 * MIB
OUT_MAX_FILES = 8
OUT_MAX_BYTES = 16 * MIB
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
COMPLETE = ".complete.json"


class PartsError(RuntimeError):
    """A part, the payload or a file in it does not match the manifest."""


# --------------------------------------------------------------------------- here: make the parts


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what travels with every call: tracked files and untracked files git does not ignore."""
    listing = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    return sum((repo / name).stat().st_size for name in listing.decode().split("\0")
               if name and (repo / name).is_file() and not (repo / name).is_symlink())


def part_size_for(tree: int, limit: int = TREE_LIMIT, margin: int = 2 * MIB) -> int:
    """The largest part that travels beside the tree (and the manifest) within the limit, in whole MiB."""
    size = (limit - tree - margin) // MIB * MIB
    if size < MIB:
        raise PartsError(f"the tree ({tree / MIB:.1f} MiB) leaves no room for a part under {limit / MIB:.0f} MiB")
    return size


class _PartWriter(io.RawIOBase):
    """A file-like sink that cuts what is written into part-001, part-002, ... of ``part_bytes`` each."""

    def __init__(self, directory: Path, part_bytes: int):
        self.directory, self.part_bytes = directory, part_bytes
        self.parts: list[dict] = []
        self.whole = hashlib.sha256()
        self.size = 0
        self._handle = None

    def writable(self):
        return True

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        written = 0
        while written < len(data):
            if self._handle is None or self.parts[-1]["size"] == self.part_bytes:
                self._open_next()
            room = self.part_bytes - self.parts[-1]["size"]
            chunk = data[written:written + room]
            self._handle.write(chunk)
            self._digest.update(chunk)
            self.whole.update(chunk)
            self.parts[-1]["size"] += len(chunk)
            self.size += len(chunk)
            written += len(chunk)
        return written

    def _open_next(self):
        self._finish_part()
        name = f"part-{len(self.parts) + 1:03d}"
        self._handle, self._digest = open(self.directory / name, "wb"), hashlib.sha256()
        self.parts.append({"name": name, "size": 0})

    def _finish_part(self):
        if self._handle is not None:
            self._handle.close()
            self.parts[-1]["sha256"] = self._digest.hexdigest()
            self._handle = None

    def close(self):
        self._finish_part()
        super().close()


def make_parts(models: dict[str, Path], out_dir: Path, part_bytes: int, wheels: Path | None = None,
               tree: int | None = None) -> dict:
    """Pack ``models`` (name -> staged folder) and ``wheels`` into a gzip'd tar cut into parts in ``out_dir``.

    The manifest holds every part's name, size and sha256, the whole payload's, and every packed file's.
    """
    if not isinstance(part_bytes, int) or part_bytes < 1:
        raise PartsError(f"part size {part_bytes!r} bytes: give a whole number of bytes >= 1")
    entries = []
    for name, folder in models.items():
        if not (Path(folder) / "config.json").is_file():
            raise PartsError(f"model {name}: {folder} has no config.json; give a staged model folder")
        entries += [(f"models/{name}/{f.name}", f) for f in sorted(Path(folder).iterdir()) if f.is_file()]
    if wheels is not None:
        found = sorted(Path(wheels).glob("*.whl"))
        if not found:
            raise PartsError(f"no *.whl in {wheels}; run scripts/gpu/download_wheels.sh first")
        entries += [(f"wheels/{f.name}", f) for f in found]
    files = [{"path": arcname, "size": path.stat().st_size, "sha256": sha256_file(path)} for arcname, path in entries]
    with atomic_dir(out_dir) as tmp:
        writer = _PartWriter(tmp, part_bytes)
        # compresslevel 1: fp32 weights shrink by ~7% at any level, and level 1 is fast to pack and unpack.
        # mtime 0 here and in every member: the same files give the same parts, so parts already carried
        # stay valid when the parts are made again.
        with gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=writer, mtime=0) as compressed, \
                tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for arcname, path in entries:
                info = tar.gettarinfo(str(path), arcname=arcname)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        writer.close()
        manifest = {
            "payload": PAYLOAD, "size": writer.size, "sha256": writer.whole.hexdigest(), "part_bytes": part_bytes,
            "tree_bytes": tree, "parts": writer.parts, "files": files,
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def call_plan(manifest: dict) -> list[str]:
    """What each device call carries and runs (docs/gpu_run.md)."""
    parts = manifest["parts"]
    lines = []
    for number, part in enumerate(parts, start=1):
        carry = f'[".gpu_parts/{MANIFEST}", ".gpu_parts/{part["name"]}"]'
        if number < len(parts):
            command = f"python3 scripts/gpu/gpu_parts.py check-part {number}"
        else:
            command = "bash scripts/gpu/run_offline12.sh"
        lines.append(f"call {number}: carry {carry} ({part['size'] / MIB:.1f} MiB), command: {command}")
    return lines


# --------------------------------------------------------------------------- device: check and unpack


MANIFEST_KEYS = ("payload", "size", "sha256", "parts", "files")


def read_manifest(parts_dir: Path) -> dict:
    path = Path(parts_dir) / MANIFEST
    if not path.is_file():
        raise PartsError(f"{path} is missing: carry .gpu_parts/{MANIFEST} with every call")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PartsError(f"{path} is not a whole manifest ({error}); make the parts again and carry the new one") from None
    missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise PartsError(f"{path} lacks {', '.join(missing)}; make the parts again and carry the new one")
    return manifest


def unpacked_problems(dest: Path, manifest: dict) -> list[str]:
    """What in an unpacked ``dest`` no longer matches the manifest (a file deleted, truncated or edited)."""
    problems = []
    for entry in manifest["files"]:
        target = Path(dest) / entry["path"]
        if not target.is_file():
            problems.append(f"{entry['path']} is missing")
        elif target.stat().st_size != entry["size"] or sha256_file(target) != entry["sha256"]:
            problems.append(f"{entry['path']} differs from the manifest")
    return problems


def check_part(parts_dir: Path, number: int, manifest: dict | None = None) -> dict:
    manifest = manifest or read_manifest(parts_dir)
    parts = manifest["parts"]
    if not 1 <= number <= len(parts):
        raise PartsError(f"part number {number} is out of range: the manifest lists parts 1..{len(parts)}")
    part = parts[number - 1]
    path = Path(parts_dir) / part["name"]
    if not path.is_file():
        raise PartsError(f"part {part['name']} ({number} of {len(parts)}) is missing from {parts_dir}: "
                         f"carry .gpu_parts/{part['name']} (a call whose machine went back loses the parts carried before)")
    size = path.stat().st_size
    if size != part["size"]:
        raise PartsError(f"part {part['name']} has {size} bytes, the manifest says {part['size']}")
    actual = sha256_file(path)
    if actual != part["sha256"]:
        raise PartsError(f"part {part['name']} is corrupt: sha256 {actual}, the manifest says {part['sha256']}")
    return part


def assemble(parts_dir: Path, dest: Path) -> dict:
    """Check every part, the whole payload and every file in it, then unpack it into ``dest``.

    Nothing is written to ``dest`` unless every check passes; an unpacked ``dest`` whose stamp names
    the same payload sha256 and whose every file still matches the manifest is kept as it is (a retry on
    a warm machine); one whose files were edited or deleted since is unpacked again.
    """
    parts_dir, dest = Path(parts_dir), Path(dest)
    manifest = read_manifest(parts_dir)
    if _stamp_sha256(dest / COMPLETE) == manifest["sha256"]:
        problems = unpacked_problems(dest, manifest)
        if not problems:
            return manifest
        print(f"gpu_parts assemble: {dest} was unpacked but {'; '.join(problems[:3])}: unpacking again", file=sys.stderr)
    problems = []
    for number in range(1, len(manifest["parts"]) + 1):
        try:
            check_part(parts_dir, number, manifest)
        except PartsError as error:
            problems.append(str(error))
    if problems:
        raise PartsError("refusing to unpack; no training was started:\n  " + "\n  ".join(problems))
    whole = hashlib.sha256()
    for part in manifest["parts"]:
        with open(parts_dir / part["name"], "rb") as handle:
            for block in iter(lambda: handle.read(MIB), b""):
                whole.update(block)
    if whole.hexdigest() != manifest["sha256"]:
        raise PartsError(f"the reassembled payload's sha256 is {whole.hexdigest()}, the manifest says {manifest['sha256']}")
    expected = {f["path"]: f for f in manifest["files"]}
    with atomic_dir(dest) as tmp:
        with tarfile.open(fileobj=_Concatenated([parts_dir / p["name"] for p in manifest["parts"]]), mode="r|gz") as tar:
            for member in tar:
                _check_member(member, expected)
                tar.extract(member, tmp, filter="data")
        for path, entry in expected.items():
            target = tmp / path
            if not target.is_file():
                raise PartsError(f"{path} is listed in the manifest but not in the payload")
            actual = sha256_file(target)
            if target.stat().st_size != entry["size"] or actual != entry["sha256"]:
                raise PartsError(f"{path}: sha256 {actual} ({target.stat().st_size} bytes), "
                                 f"the manifest says {entry['sha256']} ({entry['size']} bytes)")
        write_json(tmp / COMPLETE, {"sha256": manifest["sha256"], "files": len(expected)})
    return manifest


def _stamp_sha256(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None  # no stamp, or a damaged one: unpack again


def _check_member(member: tarfile.TarInfo, expected: dict) -> None:
    path = PurePosixPath(member.name)
    if not member.isfile() or path.is_absolute() or ".." in path.parts or member.name not in expected:
        raise PartsError(f"the payload holds {member.name!r}, which is not a file the manifest lists")


class _Concatenated(io.RawIOBase):
    """The parts read back to back as one stream."""

    def __init__(self, paths: list[Path]):
        self._paths, self._handle = list(paths), None

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._handle is None:
                if not self._paths:
                    return 0
                self._handle = open(self._paths.pop(0), "rb")
            count = self._handle.readinto(buffer)
            if count:
                return count
            self._handle.close()
            self._handle = None


# --------------------------------------------------------------------------- device: what comes back

# Everything the repository keeps of a run (reports/offline12/), relative to the work directory.
RESULT_GLOBS = (
    "results/summary.csv", "results/summary_seeds.csv", "results/stats.csv", "results/diverged.csv",
    "reports/*.md", "reports/*.csv", "reports/*.html", "reports/tables/**/*", "reports/figures/**/*",
    "results/cells/**/metrics.json", "results/cells/**/train_log.json", "results/latency/**/*.json",
    "results/models/*/pruned/**/pruning.json", "results/failed/**/*",
)
LOG_GLOBS = ("logs/**/*", ".snakemake/log/*.log")


def _collect(workdir: Path, globs) -> list[Path]:
    found = set()
    for pattern in globs:
        found.update(p for p in workdir.glob(pattern) if p.is_file())
    return sorted(found)


def _tar(workdir: Path, files: list[Path], target: Path, extra: dict[str, Path] | None = None) -> None:
    with tarfile.open(target, "w:gz", compresslevel=9) as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(workdir)))
        for arcname, path in (extra or {}).items():
            tar.add(path, arcname=arcname)


def pack(workdir: Path, out: Path, run_dir: Path, name: str = "offline12_gpu") -> list[Path]:
    """Tables, figures, summaries and per-cell records in one tarball, logs in another, the run's
    record and hardware beside them; then the limits on what comes back are checked."""
    workdir, out = Path(workdir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_files = {f"run/{p.name}": p for p in sorted(Path(run_dir).glob("*")) if p.is_file()}
    _tar(workdir, _collect(workdir, RESULT_GLOBS), out / f"{name}_results.tar.gz", run_files)
    _tar(workdir, _collect(workdir, LOG_GLOBS), out / f"{name}_logs.tar.gz")
    for run_file in ("run.json", "hardware.txt"):
        if (Path(run_dir) / run_file).is_file():
            shutil.copyfile(Path(run_dir) / run_file, out / run_file)
    return check_out(out)


def check_out(out: Path, max_files: int = OUT_MAX_FILES, max_bytes: int = OUT_MAX_BYTES) -> list[Path]:
    """The files under ``out`` that come back; an error if any would not (count, size, depth, name)."""
    out = Path(out)
    files = sorted(p for p in out.rglob("*") if not p.is_dir())
    problems = []
    if len(files) > max_files:
        problems.append(f"{len(files)} files, at most {max_files} come back")
    for path in files:
        relative = path.relative_to(out)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{relative} is not a plain file")
        elif path.stat().st_size > max_bytes:
            problems.append(f"{relative} has {path.stat().st_size} bytes, at most {max_bytes} come back")
        if len(relative.parts) > 3:
            problems.append(f"{relative} is more than 2 folders down")
        if not all(OUT_NAME.match(part) for part in relative.parts):
            problems.append(f"{relative} has characters other than letters, digits, '.', '_' and '-'")
    if problems:
        raise PartsError(f"$OUT ({out}) would not come back whole: " + "; ".join(problems))
    return files


# --------------------------------------------------------------------------- command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"bad value {text!r}: a whole number of bytes >= 1")
    return value


def _model_arg(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"--model wants NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="pack the staged models and wheels into parts (here)")
    make.add_argument("--model", action="append", type=_model_arg, required=True, metavar="NAME=FOLDER",
                      help="a staged model folder (config.json, model.safetensors, tokenizer); repeat per model")
    make.add_argument("--wheels", type=Path, help="folder of *.whl the device lacks (scripts/gpu/download_wheels.sh)")
    make.add_argument("--out", type=Path, default=REPO / ".gpu_parts")
    make.add_argument("--part-bytes", type=_positive_int, help="default: what fits beside this tree under 64 MiB")
    part = commands.add_parser("check-part", help="check one carried part against the manifest (device)")
    part.add_argument("number", type=int)
    part.add_argument("--parts", type=Path, default=REPO / ".gpu_parts")
    unpack = commands.add_parser("assemble", help="check every part and the payload, then unpack (device)")
    unpack.add_argument("--parts", type=Path, default=REPO / ".gpu_parts")
    unpack.add_argument("--dest", type=Path, default=REPO / ".gpu_payload")
    back = commands.add_parser("pack", help="put the run's results into $OUT within its limits (device)")
    back.add_argument("--workdir", type=Path, default=REPO)
    back.add_argument("--out", type=Path, required=True)
    back.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        if args.command == "make":
            tree = tree_bytes()
            size = args.part_bytes or part_size_for(tree)
            manifest = make_parts(dict(args.model), args.out, size, args.wheels, tree)
            print(f"payload {manifest['size'] / MIB:.1f} MiB in {len(manifest['parts'])} parts of at most "
                  f"{size / MIB:.0f} MiB (tree {tree / MIB:.1f} MiB), sha256 {manifest['sha256']}")
            print("\n".join(call_plan(manifest)))
        elif args.command == "check-part":
            manifest = read_manifest(args.parts)
            found = check_part(args.parts, args.number, manifest)
            print(f"part {found['name']} ({args.number} of {len(manifest['parts'])}) ok: sha256 {found['sha256']}")
        elif args.command == "assemble":
            manifest = assemble(args.parts, args.dest)
            print(f"{len(manifest['parts'])} parts, payload sha256 {manifest['sha256']} and {len(manifest['files'])} "
                  f"files ok; unpacked in {args.dest} ({time.monotonic() - start:.0f} s)")
        else:
            files = pack(args.workdir, args.out, args.run_dir)
            print("\n".join(f"$OUT/{p.relative_to(args.out)}: {p.stat().st_size / MIB:.2f} MiB" for p in files))
    except PartsError as error:
        print(f"gpu_parts {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
