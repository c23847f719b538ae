"""tests.support.launch: the one subprocess launcher, shared by the tests and the benchmarks."""

from __future__ import annotations

import ast
import time

import pytest

from tests.helpers import REPO
from tests.support.launch import ServerProcess


def test_a_server_that_cannot_start_fails_fast_with_its_log() -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="server did not start") as err:
        ServerProcess(["--max-batch", "0"], cwd=REPO, start_timeout_s=60)
    assert time.monotonic() - t0 < 60  # the exit ends the wait, not the timeout
    assert "max_batch" in str(err.value)  # the server's own message is passed on


def _imported_modules(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_benchmarks_import_only_the_test_support_package() -> None:
    scripts = sorted((REPO / "benchmarks").rglob("*.py"))
    assert len(scripts) > 10
    offenders = {
        p.name: sorted(
            m
            for m in _imported_modules(p)
            if (m == "tests" or m.startswith("tests.")) and not m.startswith("tests.support")
        )
        for p in scripts
    }
    assert not {k: v for k, v in offenders.items() if v}
    # and they launch the oracle through tests.support.launch, not a launcher of their own
    launchers = [p.name for p in scripts if "tests.support.launch" in _imported_modules(p)]
    assert {"fuzz.py", "load.py", "onboarding.py", "serving.py"} <= set(launchers)


def test_the_launcher_is_not_in_the_server_package() -> None:
    assert not (REPO / "oracle_server" / "launch.py").exists()


def test_benchmarks_run_as_modules_without_sys_path_edits() -> None:
    edits = [
        p.name for p in sorted((REPO / "benchmarks").rglob("*.py")) if "sys.path" in p.read_text()
    ]
    assert not edits
