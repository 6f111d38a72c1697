"""The installed `wwinspect` console script and `python -m inspector`, run as real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, ROOT

DEFAULT = FIXTURES / "digits_mlp.safetensors"


def _script() -> str:
    script = shutil.which("wwinspect")
    assert script is not None, "the wwinspect console script is not installed (pip install -e .)"
    return script


def test_console_script_prints_json() -> None:
    completed = subprocess.run(
        [_script(), str(DEFAULT), "--json"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["reports"][0]["format"] == "safetensors"
    assert completed.stderr == ""


def test_python_dash_m_inspector_is_the_same_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "inspector", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0
    assert completed.stdout.startswith("wwinspect ")


def test_closed_pipe_is_not_a_traceback() -> None:
    completed = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{_script()}' '{DEFAULT}' --format csv | head -1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.stdout.startswith("path,")
    assert "Traceback" not in completed.stderr and "BrokenPipe" not in completed.stderr
    assert completed.stderr == ""


def test_table_is_plain_text_when_piped() -> None:
    completed = subprocess.run([_script(), str(DEFAULT)], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    assert "\x1b[" not in completed.stdout
    assert "fc2.weight" in completed.stdout


def test_missing_path_exit_2_and_truncated_file_exit_3(tmp_path: Path) -> None:
    missing = subprocess.run(
        [_script(), str(tmp_path / "none.onnx")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and missing.stdout == ""
    broken = tmp_path / "cut.safetensors"
    broken.write_bytes(DEFAULT.read_bytes()[:5000])
    cut = subprocess.run([_script(), str(broken)], capture_output=True, text=True, check=False)
    assert cut.returncode == 3
    assert len(cut.stderr.splitlines()) == 1 and "Traceback" not in cut.stderr


def test_torch_is_not_imported_on_the_cpu_path() -> None:
    code = (
        "import sys\n"
        "from inspector.cli import main\n"
        f"sys.argv = ['wwinspect', r'{DEFAULT}', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr
