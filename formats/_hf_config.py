"""The `config.json` beside a Hugging Face checkpoint: the quantisation section and the network's structure.

`transformers` saves a model's configuration as `config.json` in the checkpoint's folder (peft saves
`adapter_config.json` beside an adapter). Readers take two things from it: the `quantization_config`
section, which says how the quantised weights are stored (`formats.quantized.detect`), and the facts the
analysis needs to split fused projections and recognise experts and tied embeddings (`ModelStructure`).

The file is untrusted text like the model: at most `MAX_CONFIG_BYTES`, strict JSON (`formats._json`),
reached through the one path rule (`formats._paths`). A config that cannot be used does not stop the
reading: the checkpoint is read from its tensor names alone and the user is told why in a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats._json import parse_strict_json
from formats._model_structure import structure_of
from formats._paths import resolve_confined
from formats.errors import CorruptFileError, UnsafeFileError
from formats.types import ModelStructure

#: Largest config we parse: real ones are a few KB (multimodal ones some tens of KB).
MAX_CONFIG_BYTES = 4 << 20
#: Most JSON objects a config may hold.
MAX_CONFIG_OBJECTS = 100_000
CONFIG_NAME = "config.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"

#: The output projection of architectures that tie it to the input embedding (`get_output_embeddings`).
OUTPUT_EMBEDDINGS = ("lm_head.weight", "embed_out.weight", "cls.predictions.decoder.weight")
#: Suffixes of the input embedding it is tied to (`get_input_embeddings`).
INPUT_EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "embed_in.weight",
    "shared.weight",
)


def tied_pair(
    names: Mapping[str, tuple[tuple[int, ...], str]], structure: ModelStructure | None
) -> tuple[str, str] | None:
    """(output, input) when the config ties the output projection to the input embedding and the file
    stores both, with the same shape and dtype; transformers then uses the embedding for both (its
    `tie_weights`), so the stored output copy is not the model's and is listed as the embedding's alias.

    Args:
        names: every stored tensor's name -> (shape, dtype code).
        structure: what config.json says.
    """
    if structure is None or structure.tie_word_embeddings is not True:
        return None
    output = next((name for name in OUTPUT_EMBEDDINGS if name in names), None)
    if output is None:
        return None
    inputs = [
        name
        for name, spec in names.items()
        if name != output and name.endswith(INPUT_EMBEDDING_SUFFIXES) and spec == names[output]
    ]
    return (output, inputs[0]) if len(inputs) == 1 else None


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """What was found beside a checkpoint.

    Attributes:
        document: the parsed config (None when there is none or it could not be used).
        structure: the network's facts taken from it.
        warning: why a config that exists was not used, for `Reader.warnings`.
    """

    document: Mapping[str, Any] | None = None
    structure: ModelStructure | None = None
    warning: str | None = None
    adapter: Mapping[str, Any] | None = None
    adapter_warning: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(warning for warning in (self.warning, self.adapter_warning) if warning)


def read_json_beside(folder: Path, name: str, *, path: Path) -> tuple[Mapping[str, Any] | None, str | None]:
    """The JSON object `folder/name` (None when absent), or why it cannot be used.

    Args:
        folder: the checkpoint's folder.
        name: the sidecar's file name.
        path: the checkpoint, for messages.
    """
    if not (folder / name).exists():
        return None, None
    try:
        resolved = resolve_confined(folder, name, what=name, path=path)
        size = resolved.stat().st_size
        if size > MAX_CONFIG_BYTES:
            return None, f"{name} ignored: {size} bytes, more than the limit {MAX_CONFIG_BYTES}"
        raw = resolved.read_bytes()
        document = parse_strict_json(raw, what=name, path=resolved, max_objects=MAX_CONFIG_OBJECTS)
    except (CorruptFileError, UnsafeFileError) as exc:
        return None, f"{name} ignored: {exc.message}"
    except OSError as exc:
        return None, f"{name} ignored: {exc.strerror or exc}"
    if not isinstance(document, dict):
        return None, f"{name} ignored: not a JSON object"
    return document, None


def read_checkpoint_config(folder: Path, *, path: Path) -> CheckpointConfig:
    """The `config.json` in `folder`, parsed, with the structure it states, and `adapter_config.json`
    when the checkpoint is a peft adapter."""
    document, warning = read_json_beside(folder, CONFIG_NAME, path=path)
    adapter, adapter_warning = read_json_beside(folder, ADAPTER_CONFIG_NAME, path=path)
    structure = structure_of(document) if document is not None else None
    return CheckpointConfig(document, structure, warning, adapter, adapter_warning)


def is_adapter(path: Path) -> bool:
    """Whether `path` (a file or a folder) is a peft adapter: adapter_config.json beside it."""
    folder = path if path.is_dir() else path.parent
    return (folder / ADAPTER_CONFIG_NAME).is_file()
