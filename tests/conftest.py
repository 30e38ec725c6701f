"""How pytest-xdist splits the suite (scripts/test.sh)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under ``--dist loadgroup`` each file's tests stay on one worker (so a module's finished run is made
    once) and every test that starts a SLURM cluster shares one group (so two clusters never run at once)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = "slurm" if item.get_closest_marker("slurm") else item.nodeid.split("::", 1)[0]
            item.add_marker(pytest.mark.xdist_group(group))
