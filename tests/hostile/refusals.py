"""What every hostile case of this package checks through the real command line: exit 3, one line on
stderr naming what was refused, no traceback; and the count of cases that went through it."""

from __future__ import annotations

from typing import Any

from tests.conftest import run_cli


def assert_cli_refuses(*args: object, words: tuple[str, ...] = ()) -> Any:
    """`wwinspect ARGS... --format json` exits 3 with one line on stderr holding every word; returns it."""
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 3, (result.exit_code, result.stdout[-2000:], result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return result


def assert_cli_reads(*args: object) -> dict[str, Any]:
    """`wwinspect ARGS... --format json` reads the file (exit 0, 1 or 4, no traceback); the JSON report."""
    import json

    result = run_cli(*args, "--format", "json")
    assert result.exit_code in (0, 1, 4), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    report: dict[str, Any] = json.loads(result.stdout)
    return report
