"""The Python API (issue 11): `wwinspect.analyze` on a path, a state_dict of numpy arrays or torch
tensors, or a torch.nn.Module; typed errors; records as dicts, DataFrames and HTML; `import wwinspect`
and `python -m wwinspect` from the checkout and from a built wheel."""

from __future__ import annotations

import html.parser
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

import wwinspect
from formats.errors import CorruptFileError
from tests.conftest import FIXTURES, ROOT, run_cli

DEFAULT = FIXTURES / "digits_mlp.safetensors"


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    heavy = rng.standard_t(3, size=(300, 120)).astype(np.float32)  # a heavy-tailed spectrum
    return {
        "enc.weight": heavy,
        "dec.weight": rng.standard_normal((120, 200)).astype(np.float32),
        "enc.bias": np.zeros(300, np.float32),
    }


def _alphas(report: Any) -> dict[str, float | None]:
    return {layer.name: layer.metrics.alpha for layer in report.layers if layer.metrics is not None}


def test_a_path_gives_the_report_the_command_line_gives() -> None:
    report = wwinspect.analyze(DEFAULT)
    assert isinstance(report, wwinspect.ModelReport) and report.format == "safetensors"
    document = json.loads(run_cli(DEFAULT, "--json").stdout)["reports"][0]
    assert report.to_dict()["layers"] == document["layers"]
    assert report.layer("fc1.weight").metrics is not None
    assert [layer.name for layer in report.analysed] == ["fc1.weight", "fc2.weight", "fc3.weight"]


def test_a_missing_path_is_not_a_corrupt_file(tmp_path: Path) -> None:
    # Before: analyze('missing.pt') raised CorruptFileError.
    with pytest.raises(wwinspect.ModelNotFoundError) as caught:
        wwinspect.analyze(tmp_path / "missing.pt")
    assert isinstance(caught.value, FileNotFoundError) and not isinstance(caught.value, CorruptFileError)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(DEFAULT.read_bytes()[:100])
    with pytest.raises(wwinspect.FormatError):
        wwinspect.analyze(truncated)


def test_a_state_dict_of_arrays_is_analysed_as_the_same_file(tmp_path: Path) -> None:
    weights = _weights()
    save_file(weights, str(tmp_path / "m.safetensors"))
    from_file = wwinspect.analyze(tmp_path / "m.safetensors")
    in_memory = wwinspect.analyze(weights)
    assert in_memory.format == "state_dict"
    assert set(_alphas(in_memory)) == {"enc.weight", "dec.weight"}
    for name, alpha in _alphas(from_file).items():
        assert _alphas(in_memory)[name] == pytest.approx(alpha, rel=1e-12)
    assert in_memory.layer("enc.bias").status is wwinspect.Status.SKIPPED


def test_torch_tensors_and_modules() -> None:
    import torch

    weights = _weights()
    tensors = {name: torch.from_numpy(value) for name, value in weights.items()}
    assert _alphas(wwinspect.analyze(tensors)) == pytest.approx(
        _alphas(wwinspect.analyze(weights)), rel=1e-12
    )
    half = wwinspect.analyze({name: value.to(torch.bfloat16) for name, value in tensors.items()})
    assert set(_alphas(half)) == {"enc.weight", "dec.weight"}

    model = torch.nn.Sequential(
        torch.nn.Embedding(500, 64),
        torch.nn.Linear(64, 256),
        torch.nn.LayerNorm(256),
        torch.nn.Conv1d(256, 128, 3),
        torch.nn.Linear(256, 500, bias=False),
    )
    model[4].weight = model[0].weight  # tied, as language models tie input and output embeddings
    model.register_buffer("stft_basis", torch.randn(400, 201))  # a non-trainable buffer
    report = wwinspect.analyze(model)
    kinds = {layer.name: (layer.kind.value, layer.status.value) for layer in report.layers}
    assert kinds["0.weight"] == ("embedding", "analyzed")
    assert report.layer("0.weight").aliases == ("4.weight",), "tied weights are analysed once"
    assert kinds["1.weight"] == ("dense", "analyzed") and kinds["1.bias"][1] == "skipped"
    assert kinds["2.weight"][1] == "skipped" and "norm" in (report.layer("2.weight").reason or "")
    assert kinds["3.weight"] == ("conv1d", "analyzed")
    buffer = report.layer("stft_basis")
    assert buffer.status is wwinspect.Status.SKIPPED and "buffer" in (buffer.reason or "")


def test_torch_is_imported_only_for_torch_objects() -> None:
    code = (
        "import sys, numpy as np, wwinspect\n"
        "wwinspect.analyze({'w': np.random.default_rng(0).standard_normal((40, 20))})\n"
        "wwinspect.analyze(sys.argv[1])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, str(DEFAULT)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"min_evals": 0}, "min_evals must be at least 1"),
        ({"min_evals": 2.5}, "whole number"),
        ({"xmax": -1.0}, "must be above 0"),
        ({"fit": "magic"}, "fit"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"conv_scale": 1.0}, "fixed convention"),
        ({"max_evals": 5}, "below min_evals"),
    ],
)
def test_options_are_checked_like_flags(options: dict[str, Any], phrase: str) -> None:
    with pytest.raises(wwinspect.OptionError, match=phrase) as caught:
        wwinspect.analyze(DEFAULT, **options)
    assert isinstance(caught.value, ValueError)


def test_options_by_field_or_by_flag_name() -> None:
    assert wwinspect.analyze(DEFAULT, min_evals=20).layer("fc3.weight").status is wwinspect.Status.SKIPPED
    globbed = wwinspect.analyze(DEFAULT, layer="fc1*")  # the flag's name, one glob
    assert [layer.name for layer in globbed.analysed] == ["fc1.weight"]
    assert wwinspect.analyze(DEFAULT, fit="tpl").layer("fc1.weight").metrics.Lambda is not None  # type: ignore[union-attr]
    per_slice = wwinspect.analyze(FIXTURES / "onnx" / "cnn.onnx", per_slice=True)
    pooled_false = wwinspect.analyze(FIXTURES / "onnx" / "cnn.onnx", pool_conv=False)
    assert [layer.slice_index for layer in per_slice.layers] == [
        layer.slice_index for layer in pooled_false.layers
    ]
    assert any(layer.slice_index is not None for layer in per_slice.layers)


def test_api_reasons_do_not_name_command_line_flags() -> None:
    report = wwinspect.analyze(DEFAULT, min_evals=20, layer_globs=("fc*",), exclude_globs=("fc2*",))
    reasons = [layer.reason or "" for layer in report.layers]
    assert not any("--" in reason for reason in reasons), reasons
    assert any("min_evals" in reason for reason in reasons)


def test_a_dataframe_and_views_for_notebooks() -> None:
    report = wwinspect.analyze(DEFAULT)
    frame = report.to_dataframe()
    assert list(frame["name"]) == [layer.name for layer in report.layers]
    assert frame.loc[frame["name"] == "fc1.weight", "alpha"].item() == pytest.approx(
        report.layer("fc1.weight").metrics.alpha  # type: ignore[union-attr]
    )
    page = report._repr_html_()
    parser = html.parser.HTMLParser()
    parser.feed(page)
    assert "fc1.weight" in page and "<table" in page
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(report)
    assert "fc1.weight" in console.export_text()


def test_import_and_python_m_from_the_checkout() -> None:
    for args in (["-c", "import wwinspect; print(wwinspect.__version__)"], ["-m", "wwinspect", "--version"]):
        completed = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, check=False
        )
        assert completed.returncode == 0, completed.stderr
        assert wwinspect.__version__ in completed.stdout


def test_a_built_wheel_installs_the_module_and_both_packages(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("wwinspect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wwinspect.py" in names and "inspector/cli.py" in names and "formats/registry.py" in names
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    code = "import wwinspect, inspector; print(wwinspect.__file__); print(inspector.__file__)"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert all(line.startswith(str(target)) for line in shown.stdout.splitlines()), shown.stdout
    ran = subprocess.run(
        [sys.executable, "-m", "wwinspect", str(DEFAULT), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["reports"][0]["format"] == "safetensors"


def test_the_core_analyze_raises_the_same_typed_error(tmp_path: Path) -> None:
    import inspector

    with pytest.raises(wwinspect.ModelNotFoundError):
        inspector.analyze(tmp_path / "missing.pt")
