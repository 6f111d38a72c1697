"""What a checkpoint's own configuration says about the network, as a `ModelStructure`.

Two sources: the `config.json` transformers writes beside a Hugging Face checkpoint (`structure_of`: head
counts, key/value heads, head width, expert count, tied embeddings, Falcon's and BLOOM's fused-QKV layout,
in the key names transformers' configuration classes use), and the metadata llama.cpp writes into a GGUF
file (`structure_of_gguf`: `{arch}.attention.head_count`... gguf.md's "LLM" keys). Pure functions of
parsed documents; the readers parse and cap them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from formats.types import ModelStructure

CONFIG_NAME = "config.json"

# The keys architectures use for each fact, in order of preference (transformers' configuration classes).
_HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
_HIDDEN = ("hidden_size", "n_embd", "d_model", "n_embed", "dim")
_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
#: Architectures whose fused query_key_value interleaves q, k and v head by head.
_PER_HEAD_QKV = frozenset({"bloom", "gpt_neox", "gpt_neox_japanese", "persimmon", "stablelm_epoch"})
_FALCON = frozenset({"falcon", "RefinedWeb", "RefinedWebModel"})


def _positive_int(document: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[int | None, str | None]:
    for key in keys:
        value = document.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None, None


def _text_section(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs keep the language model's facts in `text_config`."""
    section = document.get("text_config")
    return section if isinstance(section, Mapping) and section.get("num_attention_heads") else document


def structure_of(document: Mapping[str, Any]) -> ModelStructure:
    """The facts `ModelStructure` holds, from a parsed config.json."""
    section = _text_section(document)
    model_type = document.get("model_type")
    model_type = model_type if isinstance(model_type, str) else None
    heads, _ = _positive_int(section, _HEADS)
    kv_heads, _ = _positive_int(section, _KV_HEADS)
    hidden, _ = _positive_int(section, _HIDDEN)
    head_dim, _ = _positive_int(section, ("head_dim",))
    experts, experts_key = _positive_int(section, _EXPERTS)
    fused: str | None = None
    if model_type in _FALCON:
        if section.get("new_decoder_architecture") is True:
            fused = "grouped"
        elif section.get("multi_query", True) is True:  # FalconConfig's default
            fused, kv_heads = "multi-query", 1
        else:
            fused, kv_heads = "per-head", heads
    elif model_type in _PER_HEAD_QKV:
        fused = "per-head"
    elif heads is not None:
        fused = "blocks"
    if kv_heads is None:
        kv_heads = heads
    if head_dim is None and heads and hidden and hidden % heads == 0:
        head_dim = hidden // heads
    tie = section.get("tie_word_embeddings", document.get("tie_word_embeddings"))
    if not isinstance(tie, bool):
        # transformers writes only the values that differ from PretrainedConfig's defaults
        # (`to_diff_dict`), whose tie_word_embeddings is True; a config it wrote without the key ties.
        tie = True if ("model_type" in document or "architectures" in document) else None
    return ModelStructure(
        source=CONFIG_NAME,
        model_type=model_type,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        num_experts=experts,
        experts_key=experts_key,
        tie_word_embeddings=tie,
        fused_qkv=fused,
    )


def structure_of_gguf(metadata: Mapping[str, object]) -> ModelStructure | None:
    """What llama.cpp's metadata says about the network: `{arch}.attention.head_count`, `head_count_kv`,
    `embedding_length`, `expert_count` (gguf.md, "LLM" keys)."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return None

    def count(key: str) -> int | None:
        value = metadata.get(f"{arch}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    heads, kv, hidden = (
        count("attention.head_count"),
        count("attention.head_count_kv"),
        count("embedding_length"),
    )
    experts = count("expert_count")
    head_dim = count("attention.key_length") or (
        hidden // heads if heads and hidden and hidden % heads == 0 else None
    )
    return ModelStructure(
        source="GGUF metadata",
        model_type=arch,
        num_heads=heads,
        num_kv_heads=kv or heads,
        head_dim=head_dim,
        hidden_size=hidden,
        num_experts=experts,
        experts_key=f"{arch}.expert_count" if experts else None,
        fused_qkv="blocks" if heads else None,
    )
