"""The code a report rule runs, found from its imports (issue 23 item 6): a report rule's params hold a digest
of every dropbench module its step reaches, so editing any of them (e.g. ``chance.py``, which ``aggregate`` and
``stats`` both use) re-makes the report, while moving or copying a finished run re-runs nothing (no absolute
path is part of it). Lazy imports inside functions count too: they run when the step does."""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # src/dropbench


def _module_file(name: str, package: Path) -> Path | None:
    """The file of dropbench module ``name`` (``x`` or ``x.y``), a package's __init__.py, or None."""
    base = package.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def _dropbench_imports(source: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each absolute dropbench import in ``source``: ``(module, names)``, names empty for ``import dropbench.x``.
    Cached by the source text: the report rules' digests walk the same modules a dozen times per planning."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names if alias.name.startswith("dropbench.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dropbench" or node.module.startswith("dropbench."):
                found.append((node.module, tuple(alias.name for alias in node.names)))
    return tuple(found)


def _imported(path: Path, package: Path) -> set[str]:
    """The dropbench modules ``path`` imports, relative to the package (``report.aggregate``, ``evaluate``, ...):
    ``from dropbench.x import y`` reaches ``x`` and, where ``y`` is a module of the subpackage ``x``, ``x.y``."""
    found = set()
    for module, names in _dropbench_imports(path.read_text()):
        if not names:
            found.add(module.split(".", 1)[1])
            continue
        parent = module.removeprefix("dropbench").removeprefix(".")
        if parent:
            found.add(parent)
        for alias in names:
            name = f"{parent}.{alias}" if parent else alias
            if _module_file(name, package) is not None:
                found.add(name)
    return found


def modules_reached(modules: Iterable[str], package: Path = PACKAGE) -> list[Path]:
    """The files of ``modules`` and of every dropbench module they import, directly or not, sorted."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name, package)
        if path is None:
            raise ValueError(f"code_digest: no dropbench module {name!r} under {package}")
        seen[name] = path
        todo += sorted(_imported(path, package) - set(seen))
    return sorted(seen.values())


def code_digest(modules: Iterable[str], files: Iterable[Path] = (), package: Path = PACKAGE) -> str:
    """sha256 (first 16 hex digits) of the modules reached from ``modules`` and of ``files``, by content and
    by their path inside the package (so a renamed module counts as a change, the checkout's location not)."""
    digest = hashlib.sha256()
    for path in modules_reached(modules, package):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
