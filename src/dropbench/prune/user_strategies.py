"""Importing a user's strategy function from its config line (``custom_strategies``): ``"module.path:function"``
or ``"path/to/file.py:function"``. dropbench.prune.strategies registers what this returns."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

_FILE_MODULES: dict[Path, object] = {}


def import_function(spec: str) -> Callable:
    target, sep, attr = str(spec).rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"strategy spec {spec!r} must look like 'module.path:function' or 'path/to/file.py:function'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target), spec)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"strategy spec {spec!r}: {target!r} has no function {attr!r}")
    return fn


def _import_file(path: Path, spec: str):
    # Cached so that loading the same config line twice yields the same function.
    path = path.resolve()
    if path not in _FILE_MODULES:
        if not path.is_file():
            raise ValueError(f"strategy spec {spec!r}: file {str(path)!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"dropbench_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        _FILE_MODULES[path] = module
    return _FILE_MODULES[path]
