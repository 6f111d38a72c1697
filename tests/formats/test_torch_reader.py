"""The PyTorch reader against real checkpoints: names, hints, and values equal to what torch itself loads.

Every fixture under fixtures/torch/ was written by torch (fixtures/generate_torch.py). Here each one is
loaded a second time by torch itself, and every tensor our reader yields, under its name and under each
alias, must equal torch's tensor bit for bit (after the same widening to float32 that `read()` applies).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import mmap
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from formats import DType, FormatError, Layout, TensorError, WeightKind, detect, open_model
from formats.torch_reader import TorchReader
from tests.conftest import FIXTURES, MANIFESTS, listing

TORCH_MANIFESTS = [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("torch_*.json"))]
WEIGHT_KEYS = ("state_dict",)


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """torch's own objects, named the way the reader documents: dict keys, list positions, module paths."""
    if isinstance(value, torch.Tensor):
        yield prefix[:-1], value
    elif isinstance(value, (torch.nn.Module, torch.jit.ScriptModule)):
        names = dict(value.state_dict(keep_vars=True))
        names.update(dict(value.named_buffers(remove_duplicate=False)))
        for name, tensor in names.items():
            yield prefix + name, tensor
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}{key}.")
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            yield from _flatten(item, f"{prefix}{position}.")


def _torch_load(fixture: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a fixture as torch loads it (our own fixtures, so full unpickling is fine here)."""
    if fixture.is_dir():
        loaded: dict[str, torch.Tensor] = {}
        for shard in sorted(fixture.glob("*.bin")):
            loaded.update(torch.load(shard, weights_only=True))
        return loaded
    if fixture.name == "scripted.pt":
        return dict(_flatten(torch.jit.load(str(fixture))))
    value = torch.load(fixture, weights_only=False)
    flat = dict(_flatten(value))
    if isinstance(value, dict) and "state_dict" in value:
        flat.update({name.removeprefix("state_dict."): tensor for name, tensor in list(flat.items())})
    return flat


def _bits(values: np.ndarray) -> np.ndarray:
    contiguous = np.ascontiguousarray(values)
    return contiguous.view(np.uint64 if contiguous.dtype == np.float64 else np.uint32)


@pytest.mark.parametrize("manifest", TORCH_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_tensors_equal_what_torch_loads_bit_for_bit(manifest: dict[str, Any]) -> None:
    fixture = FIXTURES / manifest["fixture"]
    expected = _torch_load(fixture)
    compared = 0
    with open_model(fixture) as reader:
        for ref in reader.tensors():
            for name in (ref.info.name, *ref.info.aliases):
                theirs = expected[name]
                assert tuple(theirs.shape) == ref.info.shape, name
                if not ref.info.dtype.is_float or ref.info.skip_reason is not None:
                    continue
                ours = np.asarray(ref.read())
                wide = theirs.detach().to(torch.float64 if theirs.dtype == torch.float64 else torch.float32)
                assert ours.dtype == wide.numpy().dtype, name
                assert np.array_equal(_bits(ours), _bits(wide.numpy())), name
                compared += 1
    assert compared >= 3, "a fixture with fewer than three float tensors proves little"


@pytest.mark.parametrize("manifest", TORCH_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_listing_is_the_manifest_in_order(manifest: dict[str, Any]) -> None:
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        assert reader.format == manifest["format"]
        listed = listing(reader)
    assert listed == [{**entry, "aliases": sorted(entry["aliases"])} for entry in manifest["tensors"]]


@pytest.mark.parametrize("manifest", TORCH_MANIFESTS, ids=lambda manifest: manifest["fixture"])
def test_every_pytorch_tensor_states_out_in_layout(manifest: dict[str, Any]) -> None:
    with open_model(FIXTURES / manifest["fixture"]) as reader:
        assert {ref.info.hint.layout for ref in reader.tensors()} == {Layout.OUT_IN}


def test_detection_by_magic_whatever_the_suffix(tmp_path: Path) -> None:
    for name in ("state_dict.pt", "legacy.pt", "scripted.pt", "lightning.ckpt"):
        copy = tmp_path / (name + ".weights")
        shutil.copy(FIXTURES / "torch" / name, copy)
        assert detect(copy).name == "pytorch", name
    assert detect(FIXTURES / "torch" / "hf_sharded").name == "pytorch"
    assert detect(FIXTURES / "torch" / "hf_sharded" / "pytorch_model.bin.index.json").name == "pytorch"


def test_lightning_names_drop_the_state_dict_key_and_skip_optimizer_state() -> None:
    with open_model(FIXTURES / "torch" / "lightning.ckpt") as reader:
        infos = {ref.info.name: ref.info for ref in reader.tensors()}
        metadata = reader.metadata()
    assert "net.0.weight" in infos and "state_dict.net.0.weight" not in infos
    optimizer = [info for name, info in infos.items() if name.startswith("optimizer_states.")]
    assert len(optimizer) == 18
    assert all(info.skip_reason is not None and "optimizer" in info.skip_reason for info in optimizer)
    assert infos["net.2.weight"].skip_reason is None
    assert metadata["epoch"] == "2" and metadata["pytorch-lightning_version"] == "2.4.0"


def test_optimizer_state_is_never_read() -> None:
    with open_model(FIXTURES / "torch" / "lightning.ckpt") as reader:
        ref = next(ref for ref in reader.tensors() if ref.info.name.endswith("exp_avg"))
        with pytest.raises(TensorError, match="optimizer"):
            ref.read()


def test_whole_module_tensors_carry_their_module_kind() -> None:
    with open_model(FIXTURES / "torch" / "whole_module.pt") as reader:
        hints = {ref.info.name: ref.info.hint for ref in reader.tensors()}
    assert hints["embed.weight"].kind is WeightKind.EMBEDDING and hints["embed.weight"].op == "Embedding"
    assert hints["encoder.0.weight"].kind is WeightKind.DENSE
    assert hints["encoder.0.bias"].kind is WeightKind.BIAS
    assert hints["conv.weight"].kind is WeightKind.CONV and hints["conv.weight"].op == "Conv1d"
    assert hints["attn.in_proj_weight"].kind is WeightKind.DENSE
    assert hints["attn.out_proj.weight"].kind is WeightKind.DENSE
    assert hints["position_scale"].kind is None  # a non-persistent buffer of the container


def test_tied_module_weights_are_one_tensor_with_an_alias() -> None:
    with open_model(FIXTURES / "torch" / "whole_module.pt") as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
    assert refs["embed.weight"].info.aliases == ("head.weight",)
    assert "head.weight" not in refs


def test_torchscript_is_reported_as_torchscript_with_module_kinds() -> None:
    with open_model(FIXTURES / "torch" / "scripted.pt") as reader:
        assert reader.format == "torchscript"
        hints = {ref.info.name: ref.info.hint for ref in reader.tensors()}
        assert reader.metadata()["container"] == "torchscript"
    assert hints["conv.weight"].kind is WeightKind.CONV
    assert hints["mlp.0.weight"].kind is WeightKind.DENSE and hints["mlp.0.weight"].op == "Linear"


def test_views_honour_offset_and_strides_and_share_storages() -> None:
    state = torch.load(FIXTURES / "torch" / "views_dtypes.pt", weights_only=True)
    assert not state["transposed"].is_contiguous() and state["sliced"].storage_offset() > 0
    assert state["expanded"].stride()[0] == 0
    with open_model(FIXTURES / "torch" / "views_dtypes.pt") as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        assert refs["transposed"].info.aliases == ("tied_transposed",)
        assert refs["float8"].info.dtype is DType.F8_E4M3
        for name in ("sliced", "strided_rows", "shared_second", "expanded"):
            np.testing.assert_array_equal(refs[name].read(), state[name].numpy())
        assert refs["positions"].info.dtype is DType.I64
        with pytest.raises(TensorError):
            refs["positions"].read()


def _maps_the_file(values: np.ndarray) -> bool:
    """True when the array is a view whose memory is a memory map (followed through `.base`)."""
    base: object = values
    while base is not None:  # as_strided puts a DummyArray between the view and its buffer
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


def test_stored_records_are_memory_mapped_and_compressed_ones_streamed(tmp_path: Path) -> None:
    original = FIXTURES / "torch" / "state_dict.pt"
    recompressed = tmp_path / "deflated.pt"
    with (
        zipfile.ZipFile(original) as source,
        zipfile.ZipFile(recompressed, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    with open_model(original) as stored, open_model(recompressed) as deflated:
        stored_refs = {ref.info.name: ref for ref in stored.tensors()}
        for ref in deflated.tensors():
            if not ref.info.dtype.is_float:
                continue
            assert "(compressed)" in ref.info.origin
            assert _maps_the_file(stored_refs[ref.info.name].read())
            np.testing.assert_array_equal(ref.read(), stored_refs[ref.info.name].read())


def test_sharded_index_file_and_folder_read_the_same_tensors() -> None:
    folder = FIXTURES / "torch" / "hf_sharded"
    with open_model(folder) as by_folder, open_model(folder / "pytorch_model.bin.index.json") as by_index:
        names = [ref.info.name for ref in by_folder.tensors()]
        assert names == [ref.info.name for ref in by_index.tensors()]
        assert by_folder.metadata()["shards"] == "2"
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    assert sorted(names) == sorted(index["weight_map"])


def test_sharded_index_naming_a_missing_tensor_is_corrupt(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "torch" / "hf_sharded", folder)
    index_path = folder / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "pytorch_model-00001-of-00002.bin"
    index_path.write_text(json.dumps(index))
    with pytest.raises(FormatError, match=r"model\.layers\.9"):
        open_model(folder)


def test_legacy_module_with_persisted_sources_parses() -> None:
    with open_model(FIXTURES / "torch" / "legacy_module.pt") as reader:
        assert isinstance(reader, TorchReader)
        assert reader.metadata()["container"] == "legacy"
        kinds = {ref.info.name: ref.info.hint.kind for ref in reader.tensors()}
    assert kinds["embed.weight"] is WeightKind.EMBEDDING


def test_read_after_close_raises_format_error() -> None:
    reader = open_model(FIXTURES / "torch" / "state_dict.pt")
    ref = next(ref for ref in reader.tensors() if ref.info.dtype.is_float)
    reader.close()
    with pytest.raises(FormatError, match="closed"):
        ref.read()


@dataclasses.dataclass
class HyperParameters:
    """A dataclass in a checkpoint's hyperparameters: pickled by reference, a placeholder for us."""

    lr: float = 0.1
    grid: object = None


SAVE_VARIANTS: dict[str, Callable[[Path], object]] = {
    "protocol_4": lambda path: torch.save(_linear().state_dict(), path, pickle_protocol=4),
    "protocol_5": lambda path: torch.save(_linear().state_dict(), path, pickle_protocol=5),
    "half_module": lambda path: torch.save(torch.nn.Sequential(_linear()).half(), path),
    "parameter_and_buffer_types": lambda path: torch.save(
        {"p": torch.nn.Parameter(torch.randn(12, 12)), "b": torch.nn.Buffer(torch.randn(12, 12))}, path
    ),
    "weight_norm_state": lambda path: torch.save(
        torch.nn.utils.parametrizations.weight_norm(_linear()).state_dict(), path
    ),
    "numpy_namespace_dataclass_hparams": lambda path: torch.save(
        {
            "w": torch.randn(12, 12),
            "hparams": argparse.Namespace(lr=1e-3, grid=np.arange(5)),
            "config": HyperParameters(grid=np.ones(3)),
        },
        path,
    ),
    "nested_lists": lambda path: torch.save([_linear().state_dict(), {"x": (torch.randn(12, 12),)}], path),
    "legacy_view": lambda path: torch.save(
        {"a": torch.randn(20, 20)[2:14, 3:15]}, path, _use_new_zipfile_serialization=False
    ),
}


def _linear() -> torch.nn.Linear:
    return torch.nn.Linear(16, 12)


@pytest.mark.parametrize("variant", SAVE_VARIANTS)
def test_other_torch_save_variants_equal_torch_load(tmp_path: Path, variant: str) -> None:
    torch.manual_seed(0)
    path = tmp_path / f"{variant}.pt"
    SAVE_VARIANTS[variant](path)
    expected = dict(_flatten(torch.load(path, weights_only=False)))
    with open_model(path) as reader:
        refs = list(reader.tensors())
        assert sorted(ref.info.name for ref in refs) == sorted(expected)
        for ref in refs:
            theirs = expected[ref.info.name].detach().float().numpy()
            assert np.array_equal(_bits(ref.read()), _bits(theirs)), ref.info.name


def test_pickled_optimizer_object_never_names_a_weight(tmp_path: Path) -> None:
    """An optimizer object holds the model's parameters; the weight keeps its model name and is analysed."""
    model = _linear()
    path = tmp_path / "optimizer_first.pt"
    torch.save({"optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "model": model}, path)
    with open_model(path) as reader:
        infos = {ref.info.name: ref.info for ref in reader.tensors()}
    assert infos["weight"].aliases == ("optimizer.param_groups.0.params.0",)
    assert infos["weight"].skip_reason is None


def test_quantized_tensors_are_dequantised_and_complex_ones_listed_not_read(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    quantized = torch.quantize_per_tensor(torch.randn(12, 12), 0.1, 0, torch.qint8)
    complex_values = torch.randn(12, 12, dtype=torch.complex64)
    torch.save({"q": quantized, "c": complex_values, "sparse": torch.randn(12, 12).to_sparse()}, path)
    with open_model(path) as reader:
        refs = {ref.info.name: ref for ref in reader.tensors()}
        infos = {name: ref.info for name, ref in refs.items()}
        assert set(infos) == {"q", "c"}  # a sparse tensor has no dense storage view to list
        assert infos["q"].encoding == "torch-qint8" and infos["q"].skip_reason is None
        np.testing.assert_array_equal(refs["q"].read(), quantized.dequantize().numpy())
    assert infos["c"].dtype is DType.COMPLEX and infos["c"].encoding == "complex64"
