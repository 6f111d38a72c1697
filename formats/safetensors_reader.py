"""Reads safetensors files and sharded safetensors checkpoints with our own parser, one tensor at a time.

The job: parse and validate the header of every file (`formats._safetensors_header`) when the reader
opens, then read each tensor's bytes only when its `read()` is called, into a fresh buffer that the
caller drops after the layer. Non-goals: writing files, slicing tensors, and importing the `safetensors`
package (its Rust core maps the whole file; we want the resident set to stay near the largest tensor,
and we want our own, stricter validation of untrusted headers).

Decisions documented here because they shape what `tensors()` yields:
- Order: the header's key order for one file (the writer emits offset order); a sharded checkpoint
  follows its index's `weight_map` in the order the JSON lists it, not sorted (the shard rules shared
  with the PyTorch reader are in `formats._hf_shards`).
- Two names with the same byte range, dtype and shape are one tensor with `aliases` (hand-made files
  only: safetensors refuses to save shared storage). The same range with another dtype or shape is an
  overlap and the file is refused.
- LoRA/PEFT adapters (adapter_config.json beside the file): one update ΔW per target module, named
  `<module>.lora_delta`, instead of its factors (`formats._safetensors_adapters`).
- Tied embeddings: when config.json ties the output projection to the input embedding
  (`tie_word_embeddings`, transformers' default) and the file stores both, the output copy is listed as
  an alias of the embedding and analysed once (`formats._hf_config.tied_pair`).
- Quantised checkpoints (GPTQ, AWQ, bitsandbytes, compressed-tensors, MXFP4) are recognised from the names
  and the `config.json` beside the file; each quantised weight is one tensor named after the unquantised
  model's weight and dequantised on read (`formats._safetensors_quantized`); its parts are not listed.
- FP8 weights (F8_E4M3 / F8_E5M2) are multiplied by their scale tensor on read (`formats._fp8_scales`).
  The scale tensors a weight consumes are NOT yielded: they are not weights, and listing them would put
  a layer-shaped tensor of block maxima into the analysis. An FP8 weight without a scale is yielded with
  a `skip_reason` naming the missing tensor.
- Integer, bool, complex and microscaling (F4/F6/F8_E8M0) tensors are yielded with a `skip_reason`
  and never read.
- Gaps between tensors or bytes after the last one are tolerated with a warning (`Reader.warnings`);
  overlapping ranges are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from formats._binary import describe_offset, numpy_storage_dtype, read_array_at, widen
from formats._fp8_scales import ScalePlan, apply_scale, pair_scales
from formats._hf_config import CheckpointConfig, read_checkpoint_config, tied_pair
from formats._hf_shards import ShardContents, ShardIndex, find_index, open_shards, read_index
from formats._lazy_reader import LazyReader
from formats._messages import quote_name
from formats._safetensors_adapters import LoraRead, plan_lora_entries
from formats._safetensors_header import MAX_ENTRIES, MAX_HEADER_BYTES, Entry, read_header, sniff_header
from formats._safetensors_quantized import QuantizedRead, plan_quantized_entries
from formats.errors import CorruptFileError, UnknownFormatError, UnsupportedFormatError
from formats.quantized.dispatch import dequantize
from formats.quantized.lora import delta_weight
from formats.registry import FormatSpec, register
from formats.types import DType, FormatHint, Layout, Reader, TensorInfo

__all__ = [
    "MAX_ENTRIES",
    "MAX_HEADER_BYTES",
    "Reader",
    "SafetensorsReader",
    "claims_safetensors_directory",
    "open_safetensors",
    "sniff_safetensors",
]

_INDEX_SUFFIX = ".safetensors.index.json"
_SHARD_NAME = re.compile(r"(?P<stem>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.safetensors")


@dataclass(frozen=True, slots=True)
class _Planned:
    """A tensor to yield: its description plus what reading it involves."""

    info: TensorInfo
    entry: Entry
    scale: ScalePlan | None = None
    quantized: QuantizedRead | None = None
    lora: LoraRead | None = None


class SafetensorsReader(LazyReader[_Planned]):
    """A safetensors file or sharded checkpoint, validated at open, read one tensor at a time.

    Each `read()` opens the tensor's file, checks that it still has the size it had at open, reads the
    tensor's bytes into a fresh array and closes the file. No memory map outlives a call, so file-backed
    pages never pile up in the resident set; no file stays open between reads, so closing only marks the
    reader closed.

    Attributes:
        warnings: what the user should hear about that did not stop the reading (gaps, unindexed tensors).
        bytes_materialized: tensor bytes read so far (headers excluded); tests check laziness with it.
    """

    format_name = "safetensors"

    def _fetch(self, entry: _Planned) -> npt.NDArray[np.floating]:
        if entry.quantized is not None:
            return self._dequantized(entry.quantized)
        if entry.lora is not None:
            lora = entry.lora
            a, b = (widen(self._read_raw(part), part.stored.dtype) for part in (lora.a, lora.b))
            return delta_weight(lora.module, a, b, lora.settings)
        values = widen(self._read_raw(entry.entry), entry.entry.stored.dtype)
        if entry.scale is not None:
            scale = entry.scale.scale
            scales = widen(self._read_raw(scale), scale.stored.dtype).astype(np.float32, copy=False)
            apply_scale(values, scales, entry.scale.blocks)
        return values

    def _dequantized(self, read: QuantizedRead) -> npt.NDArray[np.floating]:
        """The logical weight rebuilt from its parts: integers as stored, floats widened to float32."""
        parts: dict[str, npt.NDArray[np.generic]] = {}
        for role, part in read.parts.items():
            raw = self._read_raw(part)
            parts[role] = widen(raw, part.stored.dtype) if part.stored.dtype.is_float else raw
        codes = {role: part.code for role, part in read.parts.items()}
        return dequantize(read.weight, parts, codes, read.section)

    def _read_raw(self, entry: Entry) -> npt.NDArray[np.generic]:
        """The stored elements of `entry` in a fresh array of its storage dtype and shape."""
        values = read_stored(entry)
        self.bytes_materialized += entry.nbytes
        return values

    @property
    def adapter_modules(self) -> dict[str, LoraRead]:
        """For a peft adapter: each update's name (`<module>.lora_delta`) -> its module's factors."""
        return {entry.info.name: entry.lora for entry in self._entries if entry.lora is not None}

    def magnitude(self, lora: LoraRead) -> npt.NDArray[np.floating] | None:
        """A DoRA module's magnitude vector, widened; None for LoRA."""
        self._check_open()
        if lora.magnitude is None:
            return None
        return widen(self._read_raw(lora.magnitude), lora.magnitude.stored.dtype)


def read_stored(entry: Entry) -> npt.NDArray[np.generic]:
    """The stored elements of `entry` in a fresh array of its storage dtype and shape.

    The file is opened for this read only and must still have the size it had when its header was read.
    """
    storage = numpy_storage_dtype(entry.stored.dtype)
    if entry.nbytes == 0:
        return np.empty(entry.shape, dtype=storage)
    file, what = entry.file, f"tensor {quote_name(entry.name)}"
    try:
        with file.path.open("rb", buffering=0) as handle:
            size_now = os.fstat(handle.fileno()).st_size
            if size_now != file.size:
                raise CorruptFileError(
                    f"file changed since it was opened ({file.size} bytes then, {size_now} now) "
                    f"while reading {what}",
                    path=file.path,
                )
            buffer = read_array_at(handle, entry.offset, entry.nbytes, what=what, path=file.path)
    except OSError as exc:
        raise CorruptFileError(f"cannot read {what}: {exc.strerror or exc}", path=file.path) from None
    return buffer.view(storage).reshape(entry.shape)


def _group_aliases(order: list[Entry]) -> tuple[list[Entry], dict[str, list[str]]]:
    """Primary entries in order, and the other names of each (same file, same non-empty byte range)."""
    primary_of: dict[tuple[Path, int, int], Entry] = {}
    aliases: dict[str, list[str]] = {}
    primaries: list[Entry] = []
    for entry in order:
        key = (entry.file.path, entry.begin, entry.end)
        if entry.nbytes and key in primary_of:
            aliases[primary_of[key].name].append(entry.name)
            continue
        if entry.nbytes:
            primary_of[key] = entry
        aliases[entry.name] = []
        primaries.append(entry)
    return primaries, aliases


def _plan(order: list[Entry], config: CheckpointConfig) -> tuple[list[_Planned], tuple[str, ...]]:
    """Group aliases, quantised parts and FP8 weights with their scales; describe every tensor to yield.

    Returns the tensors to yield and the warnings planning raised.
    """
    primaries, aliases = _group_aliases(order)
    tied = tied_pair({entry.name: (entry.shape, entry.code) for entry in primaries}, config.structure)
    if tied is not None:
        output, embedding = tied
        primaries = [entry for entry in primaries if entry.name != output]
        aliases[embedding].extend([output, *aliases.pop(output, [])])
    adapter = plan_lora_entries(primaries, config.adapter)
    quantized = plan_quantized_entries(primaries, config.document, read_stored)
    plain = [
        entry
        for entry in primaries
        if entry.name not in quantized.consumed and entry.name not in adapter.consumed
    ]
    scale_plans, consumed = pair_scales(plain)
    planned: list[_Planned] = []
    for entry in primaries:
        if entry.name in adapter.at:
            info, lora = adapter.at[entry.name]
            planned.append(_Planned(info=info, entry=entry, lora=lora))
            continue
        if entry.name in quantized.at:
            info, read = quantized.at[entry.name]
            planned.append(_Planned(info=info, entry=entry, quantized=read))
            continue
        if entry.name in consumed or entry.name in quantized.consumed or entry.name in adapter.consumed:
            continue
        skip_reason = (
            adapter.skipped.get(entry.name)
            or quantized.activation.get(entry.name)
            or entry.stored.skip_reason
        )
        encoding = entry.code if entry.stored.dtype in (DType.OTHER, DType.COMPLEX) else None
        plan = scale_plans.get(entry.name)
        if isinstance(plan, str):
            skip_reason = plan
        elif plan is not None:
            encoding = plan.describe(entry.code)
        info = TensorInfo(
            name=entry.name,
            shape=entry.shape,
            dtype=entry.stored.dtype,
            nbytes=entry.nbytes,
            origin=describe_offset(entry.file.label, entry.offset),
            encoding=encoding,
            # HF / PyTorch store Linear weights as (out, in); GPT-2's Conv1D is (in, out), which does not
            # change a dense layer's eigenvalues, so the kind is left for the analysis to infer.
            hint=FormatHint(layout=Layout.OUT_IN),
            aliases=tuple(aliases[entry.name]),
            skip_reason=skip_reason,
        )
        planned.append(_Planned(info=info, entry=entry, scale=plan if isinstance(plan, ScalePlan) else None))
    return planned, config.warnings + adapter.warnings + tuple(quantized.warnings)


def _reader(
    root: Path, order: list[Entry], metadata: Mapping[str, str], warnings: tuple[str, ...]
) -> SafetensorsReader:
    """The reader of a checkpoint whose tensors are `order`, with the config.json beside it."""
    folder = root if root.is_dir() else root.parent
    config = read_checkpoint_config(folder, path=root)
    planned, more = _plan(order, config)
    reader = SafetensorsReader(root, planned, metadata, warnings + more)
    reader.structure = config.structure
    return reader


# --------------------------------------------------------------------------------------------------
# Opening files, index files and folders
# --------------------------------------------------------------------------------------------------


def _read_shard(path: Path, label: str) -> ShardContents[Entry]:
    header = read_header(path, label)
    items = [((entry.name,), entry) for entry in header.entries]
    return ShardContents(items, header.metadata, header.warnings)


def _open_shards(root: Path, names: list[str], index: ShardIndex | None) -> SafetensorsReader:
    """Read the shards named (with the rules of `formats._hf_shards`) as one reader."""
    checkpoint = open_shards(root, names, index, _read_shard)
    return _reader(root, checkpoint.items, checkpoint.metadata, checkpoint.warnings)


def _open_index(index_path: Path) -> SafetensorsReader:
    """Open a sharded checkpoint through its `*.safetensors.index.json`."""
    index = read_index(index_path)
    return _open_shards(index_path, index.shard_names, index)


def _numbered_shards(folder: Path, files: list[str]) -> list[str]:
    """`files` in shard order if they are exactly the shards `STEM-i-of-n.safetensors`, i = 1..n."""
    matches = [_SHARD_NAME.fullmatch(name) for name in files]
    groups = {(match["stem"], int(match["total"])) for match in matches if match is not None}
    if any(match is None for match in matches) or len(groups) != 1:
        raise UnsupportedFormatError(
            f"the folder holds {len(files)} .safetensors files that are not the numbered shards of one "
            "checkpoint and no *.safetensors.index.json; pass one file or an index",
            path=folder,
        )
    ((_stem, total),) = groups
    numbered = sorted((int(match["part"]), name) for match, name in zip(matches, files, strict=True) if match)
    parts = [part for part, _name in numbered]
    if parts != list(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - set(parts))
        detail = (
            f"shard {missing[0]} of {total} is missing"
            if missing
            else f"shard numbers {parts[:8]} are not 1..{total}"
        )
        raise CorruptFileError(f"incomplete sharded checkpoint: {detail}", path=folder)
    return [name for _part, name in numbered]


def _open_directory(folder: Path) -> SafetensorsReader:
    """A folder holding one index, numbered shards `STEM-0000i-of-0000n.safetensors`, or one file."""
    index_path = find_index(folder, _INDEX_SUFFIX, "safetensors")
    if index_path is not None:
        return _open_index(index_path)
    files = sorted(path.name for path in folder.glob("*.safetensors") if not path.name.startswith("."))
    if not files:
        raise UnknownFormatError("no .safetensors files in this folder", path=folder)
    # One numbered shard alone ("model-00001-of-00003") is an incomplete checkpoint, not a whole file.
    numbered = len(files) > 1 or _SHARD_NAME.fullmatch(files[0]) is not None
    names = _numbered_shards(folder, files) if numbered else files
    return _open_shards(folder, names, None)


def open_safetensors(path: Path) -> SafetensorsReader:
    """Open a safetensors file, a `*.safetensors.index.json`, or a folder holding a checkpoint.

    Raises:
        CorruptFileError: a header, index or byte range is inconsistent with the files.
        UnsafeFileError: an index or folder names a file outside the checkpoint's folder.
        UnsupportedFormatError: a folder whose files do not form one checkpoint.
    """
    if path.is_dir():
        return _open_directory(path)
    if path.name.lower().endswith(_INDEX_SUFFIX):
        return _open_index(path)
    header = read_header(path, path.name)
    return _reader(path, list(header.entries), header.metadata, header.warnings)


def sniff_safetensors(head: bytes, path: Path) -> bool:
    """A u64 header length within the cap followed by `{`; an index file is known by its name."""
    return path.name.lower().endswith(_INDEX_SUFFIX) or sniff_header(head)


def claims_safetensors_directory(path: Path) -> bool:
    """A folder is ours when it holds a safetensors index or any `.safetensors` file."""
    return any(path.glob("*" + _INDEX_SUFFIX)) or any(path.glob("*.safetensors"))


register(
    FormatSpec(
        name="safetensors",
        suffixes=frozenset({".safetensors"}),
        sniff=sniff_safetensors,
        opener=open_safetensors,
        claims_directory=claims_safetensors_directory,
    )
)
