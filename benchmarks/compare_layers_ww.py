"""Layers found per ONNX / Keras fixture: wwinspect versus weightwatcher 0.7.7 given the same file.

Run: `KERAS_BACKEND=torch python benchmarks/compare_layers_ww.py [--markdown]` (needs weightwatcher==0.7.7,
onnx, keras). For each fixture under fixtures/onnx, fixtures/keras and fixtures/crossformat:

- wwinspect: layers with status "analyzed" in `wwinspect FILE --format json` (default options,
  --min-evals 10).
- weightwatcher: rows of `WeightWatcher(model=...).analyze()` where the model is what a weightwatcher
  user would pass: `onnx.load(path)` for ONNX (external data loaded by onnx), and
  `keras.saving.load_model(path)` for .keras / .h5 files (our own fixtures, so loading them is safe).
  A `.weights.h5` has no architecture, so weightwatcher has nothing to load. Both its default
  (`min_evals` as 0.7.7 ships it) and `min_evals=10` (wwinspect's default) are counted.
Errors are reported in words, never hidden.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "fixtures"


def wwinspect_layers(path: Path) -> tuple[int, list[str]] | str:
    from typer.testing import CliRunner

    from inspector.cli import app

    result = CliRunner().invoke(app, [str(path), "--format", "json"])
    if result.exit_code not in (0, 1, 4):
        return f"exit {result.exit_code}: {result.stderr.strip()}"
    (report,) = json.loads(result.stdout)["reports"]
    names = [layer["name"] for layer in report["layers"] if layer["status"] == "analyzed"]
    return len(names), names


def _ww_model(path: Path) -> object | str:
    name = path.name
    if name.endswith(".onnx"):
        import onnx

        return onnx.load(str(path))
    if name.endswith(".weights.h5"):
        return "no architecture in the file: nothing weightwatcher can load"
    if name.endswith((".keras", ".h5")):
        import keras

        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # reported in the table
            first = str(exc).split(" at ")[0].split(" whose ")[0]
            return f"keras cannot load it ({first[:60]})"
    return "not a format weightwatcher reads"


def weightwatcher_layers(path: Path, **options: int) -> tuple[int, list[str]] | str:
    import weightwatcher

    model = _ww_model(path)
    if isinstance(model, str):
        return model
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            details = weightwatcher.WeightWatcher(model=model).analyze(**options)
    except Exception as exc:  # a crash is a result here
        return f"crashes: {type(exc).__name__}: {str(exc)[:60]}"
    names = [str(name) for name in details["name"]] if "name" in details else []
    return len(details), names


def _cell(result: tuple[int, list[str]] | str) -> str:
    return str(result[0]) if isinstance(result, tuple) else result


def main() -> None:
    logging.disable(logging.CRITICAL)
    import weightwatcher

    paths = sorted(
        path
        for folder in ("onnx", "keras", "crossformat")
        for path in (FIXTURES / folder).iterdir()
        if path.suffix in (".onnx", ".keras", ".h5")
    )
    print(f"weightwatcher {weightwatcher.__version__}")
    print("| fixture | wwinspect analysed | weightwatcher (default) | weightwatcher (min_evals=10) | notes |")
    print("|---|---|---|---|---|")
    for path in paths:
        ours = wwinspect_layers(path)
        theirs = weightwatcher_layers(path)
        theirs10 = weightwatcher_layers(path, min_evals=10)
        notes = []
        if isinstance(ours, tuple) and isinstance(theirs, tuple):
            ours_only = sorted(set(ours[1]) - set(theirs[1]))
            theirs_only = sorted(set(theirs[1]) - set(ours[1]))
            if theirs_only:
                notes.append(
                    "weightwatcher names: "
                    + ", ".join(theirs_only[:3])
                    + (" ..." if len(theirs_only) > 3 else "")
                )
            if ours_only:
                notes.append(
                    "not found by weightwatcher: "
                    + ", ".join(ours_only[:3])
                    + (" ..." if len(ours_only) > 3 else "")
                )
        notes_text = "; ".join(notes)
        cells = [str(path.relative_to(FIXTURES)), _cell(ours), _cell(theirs), _cell(theirs10), notes_text]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
