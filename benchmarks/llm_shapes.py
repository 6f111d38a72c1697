"""Checkpoints shaped like the models users bring, with trained-looking (heavy-tailed) weights.

    python benchmarks/llm_shapes.py                  # all of them, under benchmarks/_data/ (git-ignored)
    python benchmarks/llm_shapes.py --model gpt2 --model resnet50
    python benchmarks/llm_shapes.py --model llama-1b --blocks 4     # a 4-block slice of the 1B layout

Written once and reused (delete the directory to regenerate). Each is a directory holding HF-named
safetensors and a config.json, the layout both wwinspect and weightwatcher 0.7.7 read:

- gpt2: GPT-2 small, float32, one file: 50257 x 768 token embedding, 1024 x 768 positions, 12 blocks of
  fused `c_attn` 768 x 2304, `c_proj` 768 x 768, `c_fc` 768 x 3072, `mlp.c_proj` 3072 x 768 (Conv1D layout,
  (in, out)), LayerNorms and biases: 124M parameters.
- llama-1b: Llama-3.2-1B-shaped, bf16, sharded safetensors with model.safetensors.index.json: hidden 2048,
  MLP 8192, 16 blocks, grouped K/V of 512 (8 heads of 64), 128256 x 2048 embedding tied to the output:
  1.24B parameters, 2.5 GB.
- llama-1b-block0: block 0 of llama-1b alone (the same bytes: every tensor is drawn from a generator seeded by
  its name), for timing weightwatcher on a fixed sample of layers where the whole model would take it over
  20 minutes.
- resnet50: ResNet-50-shaped CNN, float32, torchvision names: 53 convolutions (7x7, 3x3, 1x1) and the
  2048 x 1000 classifier, 25.5M parameters.

Trained-looking weights: entries are Student-t with nu in [2.5, 4.5] drawn per tensor (nu < 4: infinite fourth
moment, so the ESD has a power-law tail instead of the Marchenko-Pastur bulk of i.i.d. Gaussians; measured
alphas span 2-6 like trained layers', see `--check`), plus a rank-8 low-rank part (spikes). Student-t entries
cost one pass of the generator, where a U diag(s) V^T construction needs a QR of every matrix (minutes for
the 1B layout on two cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"
SEED = 1234

Shape = tuple[int, ...]
#: A tensor to write: its name, shape, safetensors dtype ("F32" or "BF16") and whether it is a weight matrix
#: (heavy-tailed values) rather than a norm or a bias.
Spec = tuple[str, Shape, str, bool]


@dataclass(frozen=True)
class LlamaLayout:
    hidden: int = 2048
    intermediate: int = 8192
    blocks: int = 16
    kv: int = 512
    vocab: int = 128256
    tied: bool = True

    def specs(self, first: int = 0, last: int | None = None, embedding: bool = True) -> list[Spec]:
        h, f, kv = self.hidden, self.intermediate, self.kv
        out: list[Spec] = [("model.embed_tokens.weight", (self.vocab, h), "BF16", True)] if embedding else []
        for i in range(first, self.blocks if last is None else last):
            p = f"model.layers.{i}."
            out += [
                (p + "self_attn.q_proj.weight", (h, h), "BF16", True),
                (p + "self_attn.k_proj.weight", (kv, h), "BF16", True),
                (p + "self_attn.v_proj.weight", (kv, h), "BF16", True),
                (p + "self_attn.o_proj.weight", (h, h), "BF16", True),
                (p + "mlp.gate_proj.weight", (f, h), "BF16", True),
                (p + "mlp.up_proj.weight", (f, h), "BF16", True),
                (p + "mlp.down_proj.weight", (h, f), "BF16", True),
                (p + "input_layernorm.weight", (h,), "BF16", False),
                (p + "post_attention_layernorm.weight", (h,), "BF16", False),
            ]
        if embedding:
            out.append(("model.norm.weight", (h,), "BF16", False))
            if not self.tied:
                out.append(("lm_head.weight", (self.vocab, h), "BF16", True))
        return out

    def config(self) -> dict[str, object]:
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.blocks,
            "num_attention_heads": self.hidden // 64,
            "num_key_value_heads": self.kv // 64,
            "head_dim": 64,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "torch_dtype": "bfloat16",
        }


LLAMA_1B = LlamaLayout()
#: Llama-2-7B's shapes (what benchmarks/gpu_check.py generates): 6.7B parameters, 13.5 GB in bf16.
LLAMA_7B = LlamaLayout(hidden=4096, intermediate=11008, blocks=32, kv=4096, vocab=32000, tied=False)


def gpt2_specs() -> list[Spec]:
    h = 768
    out: list[Spec] = [("wte.weight", (50257, h), "F32", True), ("wpe.weight", (1024, h), "F32", True)]
    for i in range(12):
        p = f"h.{i}."
        out += [
            (p + "ln_1.weight", (h,), "F32", False),
            (p + "ln_1.bias", (h,), "F32", False),
            (p + "attn.c_attn.weight", (h, 3 * h), "F32", True),
            (p + "attn.c_attn.bias", (3 * h,), "F32", False),
            (p + "attn.c_proj.weight", (h, h), "F32", True),
            (p + "attn.c_proj.bias", (h,), "F32", False),
            (p + "ln_2.weight", (h,), "F32", False),
            (p + "ln_2.bias", (h,), "F32", False),
            (p + "mlp.c_fc.weight", (h, 4 * h), "F32", True),
            (p + "mlp.c_fc.bias", (4 * h,), "F32", False),
            (p + "mlp.c_proj.weight", (4 * h, h), "F32", True),
            (p + "mlp.c_proj.bias", (h,), "F32", False),
        ]
    return [*out, ("ln_f.weight", (h,), "F32", False), ("ln_f.bias", (h,), "F32", False)]


GPT2_CONFIG = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 768, "n_layer": 12}


def resnet50_specs() -> list[Spec]:
    out: list[Spec] = [("conv1.weight", (64, 3, 7, 7), "F32", True)]
    width_in = 64
    for stage, (width, count) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for block in range(count):
            p = f"layer{stage}.{block}."
            out += [
                (p + "conv1.weight", (width, width_in, 1, 1), "F32", True),
                (p + "conv2.weight", (width, width, 3, 3), "F32", True),
                (p + "conv3.weight", (4 * width, width, 1, 1), "F32", True),
            ]
            if block == 0:
                out.append((p + "downsample.0.weight", (4 * width, width_in, 1, 1), "F32", True))
            width_in = 4 * width
    return [*out, ("fc.weight", (1000, 2048), "F32", True), ("fc.bias", (1000,), "F32", False)]


RESNET_CONFIG = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet"}


def _rng(name: str) -> np.random.Generator:
    """A generator seeded by the tensor's name: a tensor's values do not depend on which file holds it."""
    digest = hashlib.sha256(f"{SEED}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def trained_like(name: str, shape: Shape) -> npt.NDArray[np.float32]:
    """Student-t entries (nu in [2.5, 4.5]) plus a rank-8 part, scaled to entries of size ~1/sqrt(fan-in)."""
    rng = _rng(name)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    nu = rng.uniform(2.5, 4.5)
    W = rng.standard_t(nu, size=(rows, cols)).astype(np.float32)
    k = min(8, rows, cols)
    left = rng.standard_normal((rows, k), dtype=np.float32)
    right = rng.standard_normal((k, cols), dtype=np.float32) * np.float32(3.0 / np.sqrt(k))
    W += left @ right
    W *= np.float32(1.0 / np.sqrt(cols * (1.0 + 9.0)))
    return W.reshape(shape)


def small_values(name: str, shape: Shape) -> npt.NDArray[np.float32]:
    """Norm weights near 1, biases near 0."""
    rng = _rng(name)
    base = 1.0 if name.endswith("norm.weight") or (".ln_" in name and name.endswith("weight")) else 0.0
    return (base + 0.02 * rng.standard_normal(shape)).astype(np.float32)


def to_bf16(values: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """float32 to bfloat16 bits, rounding to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


#: A tensor's bytes as the file stores them (benchmarks/gpu_check.py draws them on the GPU instead).
Encoder = Callable[[Spec], bytes]


def encoded(spec: Spec) -> bytes:
    name, shape, dtype, is_weight = spec
    values = trained_like(name, shape) if is_weight else small_values(name, shape)
    return (to_bf16(values) if dtype == "BF16" else values.astype("<f4")).tobytes()


def write_safetensors(path: Path, specs: list[Spec], tensors: Iterator[bytes]) -> int:
    """One safetensors file, tensor by tensor (never the whole file in memory); returns its size."""
    itemsize = {"F32": 4, "BF16": 2}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype, _ in specs:
        size = int(np.prod(shape)) * itemsize[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path.with_suffix(".partial")
    with tmp.open("wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for data in tensors:
            out.write(data)
    tmp.rename(path)
    return path.stat().st_size


def write_model(
    directory: Path,
    specs: list[Spec],
    config: dict[str, object],
    shards: int = 1,
    encoder: Encoder = encoded,
) -> Path:
    """`directory` with config.json and `shards` safetensors files (an index when more than one)."""
    if (directory / "config.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    groups = [list(group) for group in np.array_split(np.arange(len(specs)), shards)]
    weight_map: dict[str, str] = {}
    total = 0
    for number, group in enumerate(groups, start=1):
        name = "model.safetensors" if shards == 1 else f"model-{number:05d}-of-{shards:05d}.safetensors"
        chosen = [specs[i] for i in group]
        total += write_safetensors(directory / name, chosen, (encoder(spec) for spec in chosen))
        weight_map.update({spec[0]: name for spec in chosen})
    if shards > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    params = sum(int(np.prod(shape)) for _, shape, _, _ in specs)
    print(
        f"{directory.name}: {len(specs)} tensors, {params / 1e6:.1f}M parameters, {total / 1e9:.2f} GB, "
        f"{shards} file(s), {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )
    return directory


def generate(model: str, blocks: int | None = None) -> Path:
    """The directory of `model` (generated on first use); `blocks` cuts the Llama layout short."""
    if model == "gpt2":
        return write_model(DATA / "gpt2", gpt2_specs(), GPT2_CONFIG)
    if model == "resnet50":
        return write_model(DATA / "resnet50", resnet50_specs(), RESNET_CONFIG)
    if model == "llama-1b-block0":
        return write_model(DATA / model, LLAMA_1B.specs(0, 1, embedding=False), LLAMA_1B.config(), shards=2)
    if model == "llama-1b":
        layout = LLAMA_1B if blocks is None else LlamaLayout(blocks=blocks)
        name = "llama-1b" if blocks is None else f"llama-1b-{blocks}blocks"
        return write_model(DATA / name, layout.specs(), layout.config(), shards=max(2, layout.blocks // 4))
    raise ValueError(model)


MODELS = ("gpt2", "resnet50", "llama-1b-block0", "llama-1b")


def tail_check(directory: Path, count: int = 4) -> None:
    """Fitted alphas of a few weight matrices: heavy-tailed ESDs give 2-6, i.i.d. Gaussian ones far more."""
    from inspector.api import analyze

    report = analyze(directory)
    alphas = [layer.metrics.alpha for layer in report.layers if layer.metrics and layer.metrics.alpha]
    print(
        f"{directory.name}: {len(alphas)} fitted layers, alpha median {np.median(alphas):.2f}, "
        f"range {min(alphas):.2f}-{max(alphas):.2f}",
        file=sys.stderr,
    )
    del count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=MODELS, action="append", help="default: all")
    parser.add_argument(
        "--blocks", type=int, help="llama-1b: write only this many blocks (its own directory)"
    )
    parser.add_argument("--check", action="store_true", help="print the fitted alphas' range (small models)")
    args = parser.parse_args()
    for model in args.model or MODELS:
        path = generate(model, args.blocks)
        print(path)
        if args.check and model in ("gpt2", "resnet50", "llama-1b-block0"):
            tail_check(path)


if __name__ == "__main__":
    main()
