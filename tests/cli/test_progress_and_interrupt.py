"""Progress on a terminal's stderr, and Ctrl-C: issue 11's defects 8 (each test failed before its fix).

The display is checked on a real pseudo-terminal, and what stays on the screen once the run is over is
computed with a small terminal model (enough of VT100 for rich's live display: carriage return, newline,
cursor up, erase line; colours ignored).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import inspector.cli
import inspector.pipeline
from inspector.records import FileError, ModelReport
from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][0-9A-Za-z]|\x1b\][^\x07]*\x07")


def screen_after(output: str, width: int = 120) -> list[str]:
    """The lines a terminal shows after receiving `output` (text, CR, LF, cursor up/down, erase)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    position = 0
    while position < len(output):
        match = _CSI.match(output, position)
        if match:
            arguments, command = match.group(1) or "", match.group(2) or ""
            count = int(arguments) if arguments.isdigit() else 1
            if command == "A":
                row = max(0, row - count)
            elif command == "B":
                row += count
            elif command == "K" or (command == "J" and arguments in ("", "0")):
                del lines[row][col:]
                if command == "J":
                    del lines[row + 1 :]
            elif command == "G":
                col = max(0, count - 1)
            position = match.end()
            continue
        char = output[position]
        position += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
        elif char >= " ":
            while len(lines[row]) < col:
                lines[row].append(" ")
            if col < len(lines[row]):
                lines[row][col] = char
            else:
                lines[row].append(char)
            col += 1
        while len(lines) <= row:
            lines.append([])
    return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def _stderr_on_a_pty(args: list[str], cwd: Path, columns: int = 120) -> tuple[int, str, str]:
    """Run wwinspect with stderr on a pseudo-terminal (stdout a pipe); (exit code, stderr text, stdout)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "NO_COLOR")}
    env.update({"TERM": "xterm-256color", "PYTHONPATH": str(ROOT)})
    process = subprocess.Popen(
        [sys.executable, "-m", "inspector", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=cwd,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout, _ = process.communicate(timeout=120)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace"), stdout.decode()


def test_progress_on_a_terminal_shows_names_as_text_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # Before: the file name was rich markup ("[red]y.pt" printed red), and "reading FILE" stayed on screen.
    named = tmp_path / "[red]y.safetensors"
    shutil.copy(DEFAULT, named)
    code, stderr, stdout = _stderr_on_a_pty([named.name, "--json"], tmp_path)
    assert code == 0, stderr
    assert json.loads(stdout)["reports"][0]["path"] == named.name
    assert "[red]y.safetensors" in stderr, "the name is shown as it is"
    assert "\x1b[31m" not in stderr and "\x1b[1;31m" not in stderr, "and never as markup"
    assert "reading [red]y.safetensors" in stderr, "the display starts before the file is listed"
    assert screen_after(stderr) == [], "the display is transient: nothing of it stays"


def test_progress_has_an_eta_and_follows_the_layers() -> None:
    from inspector.progress import ProgressDisplay

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120, color_system=None)
    with ProgressDisplay(console) as display:
        display.on_file(Path("big.safetensors"))
        first = stream.getvalue()
        display.listed(Path("big.safetensors"), "safetensors", 10)
        display.layer("encoder.layer.0.attention.self.query.weight", 3, 10)
        display._progress.refresh()
        later = stream.getvalue()
        display.finished(ModelReport(path="big.safetensors", format=None, error=FileError("X", "y")))
    assert "reading big.safetensors" in first, "shown from the first byte, before the listing"
    assert "3/10" in later and "eta" in later and "encoder.layer.0" in later


def test_ctrl_c_prints_what_was_finished(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Before: Ctrl-C lost every result already computed. The third analysable tensor "is interrupted".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inspector.cli, "find_pyproject", lambda start: None)
    real = inspector.pipeline.analyze_tensor
    seen: list[str] = []

    def interrupted(pending: Any, *args: Any, **kwargs: Any) -> Any:
        if pending.plan.skip_reason is None:
            seen.append(pending.ref.info.name)
            if len(seen) == 3:
                raise KeyboardInterrupt
        return real(pending, *args, **kwargs)

    monkeypatch.setattr(inspector.pipeline, "analyze_tensor", interrupted)
    result = run_cli(DEFAULT, "--jobs", "1")
    assert result.exit_code == 130
    assert (
        "fc1.weight" in result.stdout and "fc2.weight" in result.stdout and "fc3.weight" not in result.stdout
    )
    assert "interrupted:" in result.stdout  # the table says it is incomplete
    assert result.stderr.startswith("wwinspect: interrupted: ") and "5 of 6 tensors done" in result.stderr
    seen.clear()
    result = run_cli(DEFAULT, "--jobs", "1", "--format", "jsonl")
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds[0] == "run" and kinds.count("layer") == 5 and "gate" not in kinds, "no end line: incomplete"


def test_a_reader_that_leaves_a_stream_early_is_not_an_error(tmp_path: Path) -> None:
    # 20 models' JSON Lines overflow the pipe, so the writer meets the closed end.
    for number in range(20):
        shutil.copy(FIXTURES / "onnx" / "transformer.onnx", tmp_path / f"m{number}.onnx")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "inspector", str(tmp_path), "--format", "jsonl", "--jobs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    code = process.wait(timeout=120)
    assert json.loads(first)["type"] == "run"
    assert code == 0 and process.stderr.read() == b""
