"""Layers found per fixture kind: wwinspect against weightwatcher 0.7.7 on the same files (issue 12's table).

Run from the repository root with an interpreter that has weightwatcher 0.7.7, transformers, peft,
bitsandbytes and compressed-tensors (the quant-prep venv:
`PYTHONPATH=$PWD /work/venvs/quant-prep/bin/python benchmarks/quantized_layer_counts.py`). Not a speed
benchmark: it prints, per fixture, how many weight matrices each tool analysed (records with an alpha for
wwinspect, rows of `analyze()` with an alpha for weightwatcher) and why weightwatcher found fewer.

weightwatcher takes a model object: Hugging Face fixtures are loaded with `from_pretrained` on the CPU
(compressed-tensors with `run_compressed=False`, gpt-oss with `Mxfp4Config(dequantize=True)`, the only
ways they load there), adapters as `PeftModel.from_pretrained(base, folder)`, ONNX files with `onnx.load`.
wwinspect reads the files (`wwinspect FILE --format json`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
QUANTIZED = FIXTURES / "quantized"

HF = [
    "bnb_nf4",
    "bnb_fp4",
    "bnb_int8",
    "gptq_int4_actorder",
    "awq_int4",
    "compressed_w4a16",
    "compressed_fp8",
    "compressed_nvfp4",
    "mxfp4_experts",
    "moe_mixtral",
    "moe_gptoss",
]
LLM = ["gpt2", "falcon_gqa", "falcon_mq", "bloom", "phi3", "llama_tied"]
ONNX = sorted((QUANTIZED / "onnx").glob("*.onnx")) + sorted((FIXTURES / "onnx_graphs").glob("*.onnx"))


def wwinspect_count(path: Path, *args: str) -> tuple[int, int]:
    """(records with an alpha, records analysed) of `wwinspect PATH --format json`."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module, the fixtures' paths
        [sys.executable, "-m", "inspector", str(path), "--format", "json", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    report = json.loads(result.stdout)["reports"][0]
    layers = report.get("layers", [])
    analysed = [layer for layer in layers if layer["status"] == "analyzed"]
    return sum(layer["alpha"] is not None for layer in analysed), len(analysed)


def ww_count(model: Any) -> str:
    import weightwatcher as ww

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = ww.WeightWatcher(model=model).analyze()
    return str(int(details["alpha"].notna().sum()))


def load_hf(folder: Path) -> Any:
    import transformers

    config = json.loads((folder / "config.json").read_text())
    method = (config.get("quantization_config") or {}).get("quant_method")
    kwargs: dict[str, Any] = {"device_map": "cpu"}
    if method == "compressed-tensors" and "fp8" not in folder.name:
        kwargs["quantization_config"] = transformers.CompressedTensorsConfig(run_compressed=False)
    if method == "mxfp4":
        kwargs["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)


def ww_hf(folder: Path) -> str:
    try:
        model = load_hf(folder)
    except Exception as exc:  # the table reports why weightwatcher cannot start
        return f"cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"
    try:
        return ww_count(model)
    except Exception as exc:
        return f"fails ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"


def ww_adapter(folder: Path) -> str:
    import peft
    import transformers
    from safetensors.torch import load_file

    sys.path.insert(0, str(ROOT))
    from fixtures.generate_quantized import tiny_llama

    base = tiny_llama()
    base.load_state_dict(load_file(str(folder / "base.safetensors")), strict=False)
    model = peft.PeftModel.from_pretrained(base, folder)
    assert isinstance(model, transformers.PreTrainedModel | peft.PeftModel)
    try:
        return ww_count(model)
    except Exception as exc:
        return f"fails ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"


def ww_onnx(path: Path) -> str:
    import onnx

    try:
        return ww_count(onnx.load(str(path)))
    except Exception as exc:
        return f"fails ({type(exc).__name__}: {str(exc).splitlines()[0][:60]})"


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    for name in HF:
        fitted, analysed = wwinspect_count(QUANTIZED / name / "model.safetensors")
        rows.append((f"quantized/{name}", f"{analysed} ({fitted} with alpha)", ww_hf(QUANTIZED / name)))
    for name in LLM:
        fitted, analysed = wwinspect_count(FIXTURES / "llm" / name / "model.safetensors")
        split, _ = wwinspect_count(FIXTURES / "llm" / name / "model.safetensors", "--split-fused")
        rows.append(
            (f"llm/{name}", f"{analysed} ({split} with --split-fused)", ww_hf(FIXTURES / "llm" / name))
        )
    for name in ("lora_adapter", "dora_adapter"):
        folder = QUANTIZED / name
        _, analysed = wwinspect_count(folder / "adapter_model.safetensors")
        merged, _ = wwinspect_count(
            folder / "adapter_model.safetensors", "--base", str(folder / "base.safetensors")
        )
        rows.append(
            (f"quantized/{name}", f"{analysed} updates ({merged} with alpha with --base)", ww_adapter(folder))
        )
    fitted, analysed = wwinspect_count(QUANTIZED / "torch_qtensors" / "qtensors.pt")
    rows.append(("quantized/torch_qtensors", f"{analysed}", "n/a (takes a model object, not a state dict)"))
    for path in ONNX:
        fitted, analysed = wwinspect_count(path)
        rows.append((str(path.relative_to(FIXTURES)), f"{analysed}", ww_onnx(path)))
    width = max(len(row[0]) for row in rows)
    print(f"{'fixture':<{width}} | wwinspect (records analysed) | weightwatcher 0.7.7 (layers with alpha)")
    for fixture, ours, theirs in rows:
        print(f"{fixture:<{width}} | {ours} | {theirs}")


if __name__ == "__main__":
    main()
