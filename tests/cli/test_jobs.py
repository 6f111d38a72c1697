"""`--jobs`: the flag and its config key, and real `wwinspect` processes that fork workers by default."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import FIXTURES, ROOT, child_processes, run_cli
from tests.inspector.test_parallel_pipeline import assert_same

DEFAULT = FIXTURES / "digits_mlp.safetensors"


def _model(path: Path, layers: int, N: int, M: int, dtype: type[np.floating[Any]] = np.float32) -> Path:
    rng = np.random.default_rng(layers * N + M)
    tensors = {f"block{i}.weight": rng.standard_t(4.0, size=(N, M)).astype(dtype) for i in range(layers)}
    save_file(tensors, str(path))
    return path


def _wwinspect(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "inspector", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_negative_jobs_is_a_usage_error() -> None:
    result = run_cli(DEFAULT, "--jobs", "-1")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1


def test_jobs_in_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\njobs = 2\n")
    assert run_cli(DEFAULT, "--json").exit_code == 0
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\njobs = -3\n")
    result = run_cli(DEFAULT, "--json")
    assert result.exit_code == 2 and "jobs" in result.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.wwinspect]\njobs = 'many'\n")
    assert run_cli(DEFAULT, "--json").exit_code == 2


def test_default_jobs_fork_on_a_large_enough_model_and_report_the_same(tmp_path: Path) -> None:
    # 6 layers of 768 x 512: about 3.6e9 of work, above MIN_PARALLEL_WORK, so the default forks.
    path = _model(tmp_path / "model.safetensors", layers=6, N=768, M=512)
    reports = {}
    for jobs in ("0", "1", "2"):
        process = _wwinspect(str(path), "--json", "--jobs", jobs)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert stderr == ""
        reports[jobs] = json.loads(stdout)
    assert_same(reports["1"], reports["0"])
    assert_same(reports["1"], reports["2"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_ctrl_c_exits_130_and_leaves_no_worker_behind(tmp_path: Path) -> None:
    # Half a minute of work or more (2048 x 2048 in float16: 8 MB a layer, ~1 s of eigensolve each), so the
    # run is still going when the signal arrives however loaded the machine is.
    path = _model(tmp_path / "big.safetensors", layers=24, N=2048, M=2048, dtype=np.float16)
    process = _wwinspect(str(path), "--json", "--jobs", "2")
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while not workers and time.monotonic() < deadline and process.poll() is None:
        workers = child_processes(process.pid)
        time.sleep(0.02)
    assert len(workers) == 1, "the worker never started"  # --jobs 2: this process and one child
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    # One line: what was interrupted and how far it got; the report of what was finished is on stdout.
    assert stderr.startswith("wwinspect: interrupted: ") and stderr.count("\n") == 1, stderr
    (report,) = json.loads(stdout)["reports"]
    assert len(report["layers"]) < 24
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
