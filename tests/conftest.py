"""Shared test helpers: fixture paths, manifests, and a CLI runner that keeps stdout and stderr apart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Keras 3 must pick its backend before it is first imported; the tests use torch's CPU build.
os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MANIFESTS = FIXTURES / "manifests"


def load_manifests() -> list[dict[str, Any]]:
    """Every fixture manifest (fixtures/manifests/*.json), sorted by fixture name."""
    return [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("*.json"))]


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def run_cli(*args: object) -> Any:
    """Run the wwinspect CLI in-process; returns click's Result with separate .stdout and .stderr."""
    from typer.testing import CliRunner

    from inspector.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


_MISSING_DEPENDENCY = ("could not import", "No module named", "ModuleNotFoundError", "requires the")
_missing_dependency_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember tests skipped because something was not installed: such a skip proves nothing."""
    if report.skipped:
        text = str(report.longrepr)
        if any(marker in text for marker in _MISSING_DEPENDENCY):
            _missing_dependency_skips.append(f"{report.nodeid}: {text[-200:]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any test was skipped for a missing dependency (CI installs them all)."""
    if _missing_dependency_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "tests skipped for a missing dependency (install the dev extra and torch==2.13.0):", red=True
            )
            for line in _missing_dependency_skips:
                reporter.write_line(f"  {line}", red=True)


def assert_refused(opener: Any, path: Path, error: type[Exception], match: str) -> None:
    """`opener(path)` raises `error` (matching `match`) while listing or reading, and the CLI exits 3 with
    exactly one line on stderr and no traceback."""
    with pytest.raises(error, match=match), opener(path) as reader:
        for ref in reader.tensors():
            if ref.info.skip_reason is None:
                ref.read()
    result = run_cli(path)
    assert result.exit_code == 3, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def listing(reader: Any) -> list[dict[str, Any]]:
    """What a reader lists, in its order, in the manifests' shape (aliases sorted)."""
    return [
        {
            "name": ref.info.name,
            "shape": list(ref.info.shape),
            "dtype": ref.info.dtype.value,
            "aliases": sorted(ref.info.aliases),
        }
        for ref in reader.tensors()
    ]


def child_processes(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`, from /proc (Linux)."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the listing
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found
