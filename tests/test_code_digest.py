"""A report rule's code digest covers every dropbench module its step reaches (issue 23 item 6)."""

from __future__ import annotations

import shutil

from dropbench.plan import code_digest




def test_the_digest_follows_the_imports_of_each_step():
    reached = {path.name for path in code_digest.modules_reached(["report.stats"])}
    assert {"stats.py", "chance.py", "metrics.py"} <= reached  # chance.py: used by aggregate and stats alike
    assert "plots.py" not in reached and "torch" not in reached
    assert "chance.py" in {path.name for path in code_digest.modules_reached(["report.aggregate"])}


def test_editing_a_reached_module_changes_the_digest_moving_the_package_does_not(tmp_path):
    package = tmp_path / "a" / "dropbench"
    shutil.copytree(code_digest.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest.code_digest(["report.stats"], package=package)
    moved = tmp_path / "b" / "dropbench"
    shutil.copytree(package, moved)
    assert code_digest.code_digest(["report.stats"], package=moved) == before
    (package / "evaluate" / "chance.py").write_text((package / "evaluate" / "chance.py").read_text() + "\n# edited\n")
    assert code_digest.code_digest(["report.stats"], package=package) != before
    after_chance = code_digest.code_digest(["report.stats"], package=package)
    (package / "report" / "plots.py").write_text((package / "report" / "plots.py").read_text() + "\n# edited\n")  # not reached by stats
    assert code_digest.code_digest(["report.stats"], package=package) == after_chance
    assert code_digest.code_digest(["report.plots"], package=package) != code_digest.code_digest(["report.plots"], package=moved)


def test_an_import_added_in_the_same_process_is_followed(tmp_path):
    """The parsed imports are cached by source text (planning walks the same modules once per report rule), so
    an edit is seen at once, never a stale parse of the same path."""
    package = tmp_path / "dropbench"
    shutil.copytree(code_digest.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert "plots.py" not in {path.name for path in code_digest.modules_reached(["report.stats"], package)}
    stats = package / "report" / "stats.py"
    stats.write_text(stats.read_text() + "\nfrom dropbench.report import plots  # noqa\n")
    assert "plots.py" in {path.name for path in code_digest.modules_reached(["report.stats"], package)}
