"""The eigenvalue cache (`--cache DIR`): the same report with and without it, no eigensolve on a hit, corrupt
entries recomputed, a bounded folder, workers that share it, and the flag's checks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector import cache as cache_module
from inspector.cache import LAYOUT, CachedBackend, EigenCache, with_cache
from inspector.fleet import analyze_paths
from inspector.options import AnalysisOptions, Normalization
from inspector.render.json import report_dict
from inspector.science.eigen import CpuBackend
from tests.conftest import FIXTURES, run_cli
from tests.inspector.test_parallel_pipeline import assert_same

# A dense model, a conv model (batched slices), a bf16 file and an ONNX graph.
PATHS = [
    FIXTURES / "digits_mlp.safetensors",
    FIXTURES / "tiny_bf16.safetensors",
    FIXTURES / "crossformat" / "digits.onnx",
    FIXTURES / "crossformat" / "digits.pt",
]


def _reports(options: AnalysisOptions, folder: Path | None, **kwargs: Any) -> list[dict[str, Any]]:
    return [report_dict(report) for report in analyze_paths(PATHS, options, cache=folder, **kwargs)]


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / LAYOUT).glob("*/*.eig"))


class _Counting:
    """Counts the eigensolves the CPU backend runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        for method in ("eigenvalues", "eigenvalues_batch"):
            original = getattr(CpuBackend, method)

            def counted(backend: Any, matrix: Any, _original: Any = original) -> Any:
                self.calls += 1
                return _original(backend, matrix)

            monkeypatch.setattr(CpuBackend, method, counted)


@pytest.mark.parametrize(
    "options",
    [
        AnalysisOptions(),
        AnalysisOptions(randomize=True, seed=3, pool_conv=False, normalization=Normalization.PER_N),
    ],
    ids=["defaults", "randomize-per-slice"],
)
def test_reports_are_the_same_with_and_without_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: AnalysisOptions
) -> None:
    plain = _reports(options, None)
    cold = _reports(options, tmp_path)
    assert _entries(tmp_path)
    counting = _Counting(monkeypatch)
    warm = _reports(options, tmp_path)
    assert counting.calls == 0, "a warm run solved an eigenproblem"
    assert cold == plain
    assert warm == plain  # bit for bit: the cached bytes are the computed ones


def test_other_settings_and_other_bytes_are_other_entries(tmp_path: Path) -> None:
    cache = EigenCache(tmp_path)
    matrix = np.arange(12.0).reshape(4, 3)
    keys = {
        cache.key(CpuBackend(), "one", matrix),
        cache.key(CpuBackend(route="svd"), "one", matrix),
        cache.key(CpuBackend(), "batch", matrix),
        cache.key(CpuBackend(), "one", matrix.astype(np.float32)),
        cache.key(CpuBackend(), "one", matrix.reshape(3, 4)),
        cache.key(CpuBackend(), "one", matrix + 1e-12),
    }
    assert len(keys) == 6
    # A transposed view is hashed through its transpose's bytes without a copy; it never collides with the
    # matrix those bytes make in C order, and the same view always gets the same key.
    view = matrix.T
    assert view.flags.f_contiguous and not view.flags.c_contiguous
    assert cache.key(CpuBackend(), "one", view) != cache.key(CpuBackend(), "one", matrix.reshape(3, 4))
    assert cache.key(CpuBackend(), "one", view) == cache.key(CpuBackend(), "one", matrix.copy().T)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_entries_are_recomputed_and_overwritten(tmp_path: Path, damage: str) -> None:
    options = AnalysisOptions()
    plain = _reports(options, tmp_path)
    entries = _entries(tmp_path)
    for entry in entries:
        data = bytearray(entry.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "flip":
            data[len(data) // 2] ^= 0x40
        elif damage == "empty":
            data = bytearray()
        else:
            data = bytearray(os.urandom(len(data)))
        entry.write_bytes(bytes(data))
    assert _reports(options, tmp_path) == plain
    backend = CachedBackend(CpuBackend(), EigenCache(tmp_path))
    # Every entry is whole again: a lookup of each layer's matrix now hits.
    assert all(len(entry.read_bytes()) > 100 for entry in _entries(tmp_path))
    assert backend.name == "cpu-gram"


def test_a_hit_is_the_stored_array_and_a_wrong_shape_is_a_miss(tmp_path: Path) -> None:
    cache = EigenCache(tmp_path)
    cache.prepare()
    values = np.array([0.0, 1.5, 2.25])
    key = cache.key(CpuBackend(), "one", np.eye(3))
    cache.store(key, values)
    loaded = cache.load(key, (3,))
    assert loaded is not None and loaded.flags.writeable and np.array_equal(loaded, values)
    assert cache.load(key, (4,)) is None
    assert cache.load(bytes(32), (3,)) is None
    # An entry holding another key's values (a copied file) is refused.
    other = cache.key(CpuBackend(), "one", np.eye(3) * 2)
    cache._path(other).parent.mkdir(parents=True, exist_ok=True)
    cache._path(other).write_bytes(cache._path(key).read_bytes())
    assert cache.load(other, (3,)) is None


def test_negative_or_non_finite_values_are_refused(tmp_path: Path) -> None:
    cache = EigenCache(tmp_path)
    cache.prepare()
    for bad in ([1.0, -0.5], [1.0, np.nan], [np.inf, 1.0]):
        key = cache.key(CpuBackend(), "one", np.asarray(bad))
        cache.store(key, np.asarray(bad))
        assert cache.load(key, (2,)) is None


def test_the_folder_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    cache = EigenCache(tmp_path, max_bytes=10_000)
    cache.prepare()
    keys = []
    for position in range(40):
        key = cache.key(CpuBackend(), "one", np.full((2, 2), float(position)))
        cache.store(key, np.arange(100.0))  # ~900 bytes each: 36 kB in all
        past = time.time() - 1000 + position
        os.utime(cache._path(key), (past, past))
        keys.append(key)
    assert cache.load(keys[0], (100,)) is not None  # a hit makes the oldest the newest
    stale = cache._path(keys[1]).parent / ".tmp-killed"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    cache.prune()
    total = sum(entry.stat().st_size for entry in _entries(tmp_path))
    assert total <= 10_000 * cache_module.PRUNE_TO
    assert cache.load(keys[0], (100,)) is not None
    assert cache.load(keys[39], (100,)) is not None
    assert cache.load(keys[1], (100,)) is None
    assert not stale.exists()


def test_a_run_prunes_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_BYTES", 2_000)
    _reports(AnalysisOptions(), tmp_path)
    assert sum(entry.stat().st_size for entry in _entries(tmp_path)) <= 2_000


def test_forked_workers_fill_and_use_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = AnalysisOptions()
    plain = _reports(options, None)
    shared = _reports(options, tmp_path, jobs=2, min_parallel_work=0.0)
    assert_same(plain, shared)
    serial_folder = tmp_path / "serial"
    _reports(options, serial_folder)
    assert [entry.name for entry in _entries(tmp_path)] == [entry.name for entry in _entries(serial_folder)]
    # The children are forked after this patch: an eigensolve in any process would count in its own copy,
    # so count through the file system instead: no entry is rewritten on a warm run.
    before = {entry: entry.stat().st_mtime_ns for entry in _entries(tmp_path)}
    monkeypatch.setattr(EigenCache, "store", lambda *args: pytest.fail("a warm run stored an entry"))
    assert _reports(options, tmp_path, jobs=2, min_parallel_work=0.0) == shared
    assert set(before) == set(_entries(tmp_path))


def test_a_write_failure_costs_the_speed_up_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    backend = with_cache(CpuBackend(), tmp_path)
    monkeypatch.setattr(cache_module.tempfile, "mkstemp", refuse)
    values = backend.eigenvalues(np.eye(4, 3))
    assert np.allclose(values, 1.0)
    assert _entries(tmp_path) == []


def test_the_flag_makes_a_tagged_ignored_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    first = run_cli(PATHS[0], "--json", "--cache", folder)
    second = run_cli(PATHS[0], "--json", "--cache", folder)
    plain = run_cli(PATHS[0], "--json")
    assert first.exit_code == second.exit_code == plain.exit_code == 0
    assert json.loads(first.stdout)["reports"] == json.loads(plain.stdout)["reports"]
    assert json.loads(second.stdout)["reports"] == json.loads(plain.stdout)["reports"]
    assert (folder / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_cache_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = run_cli(PATHS[0], "--cache", target)
    assert result.exit_code == 2
    assert "--cache" in result.stderr and result.stderr.count("\n") == 1


def test_the_config_key_is_relative_to_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.wwinspect]\ncache = ".wwinspect_cache"\n')
    monkeypatch.chdir(project / "sub")
    assert run_cli(PATHS[0], "--json").exit_code == 0
    assert _entries(project / ".wwinspect_cache")


def test_compare_takes_the_cache(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    base = {f"l{i}.weight": rng.standard_t(4.0, size=(64, 32)).astype(np.float32) for i in range(2)}
    tuned = {name: W + 0.01 * rng.standard_normal(W.shape).astype(np.float32) for name, W in base.items()}
    save_file(base, str(tmp_path / "a.safetensors"))
    save_file(tuned, str(tmp_path / "b.safetensors"))
    arguments = ("compare", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--json")
    plain = run_cli(*arguments)
    cold = run_cli(*arguments, "--cache", tmp_path / "cache")
    warm = run_cli(*arguments, "--cache", tmp_path / "cache")
    assert plain.exit_code == cold.exit_code == warm.exit_code == 0
    assert json.loads(plain.stdout) == json.loads(cold.stdout) == json.loads(warm.stdout)
    assert len(_entries(tmp_path / "cache")) == 6  # two layers in A, in B, and their two updates


def test_the_python_api_takes_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.api import analyze

    path = FIXTURES / "digits_mlp.safetensors"
    plain = analyze(path).to_dict()
    cold = analyze(path, cache=str(tmp_path / "eig")).to_dict()
    assert _entries(tmp_path / "eig")
    counting = _Counting(monkeypatch)
    warm = analyze(path, cache=tmp_path / "eig").to_dict()
    assert counting.calls == 0, "a warm run solved an eigenproblem"
    assert cold == plain
    assert warm == plain


def test_the_python_api_refuses_a_cache_that_is_a_file(tmp_path: Path) -> None:
    from inspector.api import analyze
    from inspector.errors import UsageError

    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    with pytest.raises(UsageError):
        analyze(FIXTURES / "digits_mlp.safetensors", cache=taken)
