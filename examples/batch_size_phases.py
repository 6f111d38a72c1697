"""The batch-size experiment of Martin & Mahoney (arXiv 1810.01075, sec. 7), done fairly, read by wwinspect.

One network, one data set, batch sizes from 2 to 512, several seeds; every run is trained to the same training
loss (default) or for the same number of steps, so that large batches are not simply under-trained. Each model
is saved as safetensors and analysed with wwinspect's Python API; the script writes a table (Markdown), the
numbers (JSON) and, when matplotlib is importable, a figure (PNG):

* per batch size: each FC layer's alpha, phase, MP soft rank and stable rank, and train / test accuracy;
* across all models: the capacity metrics (mean weighted alpha, mean log alpha-norm) against test accuracy,
  with their Spearman rank correlations (the ICML 2019 poster says they track generalisation).

Runs from a fresh `pip install .` plus torch (matplotlib only for the PNG, scikit-learn only for
`--data digits`). The default data is a teacher-student task generated here: inputs x ~ N(0, I_d) with a fixed
random low-rank mixing, labels from a random two-layer teacher network, a share of them flipped (label noise:
the task cannot be fitted without memorising, which keeps the gradient noise of small batches alive).

    python examples/batch_size_phases.py                       # the default experiment (~8 CPU minutes)
    python examples/batch_size_phases.py --quick               # 2 seeds, 4 batch sizes, short: a smoke run
    python examples/batch_size_phases.py --until steps --steps 3000 --loss mse --out /tmp/bs
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing, too

from inspector import analyze  # noqa: E402
from inspector.records import Phase, Status  # noqa: E402
from inspector.science.phases import PHASE_ORDER  # noqa: E402

BATCH_SIZES = (2, 8, 32, 128, 512)
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Settings:
    data: str
    loss: str
    until: str
    target_loss: float
    steps: int
    max_steps: int
    lr: float
    momentum: float
    widths: tuple[int, ...]
    inputs: int
    classes: int
    train: int
    test: int
    label_noise: float


@dataclass(frozen=True)
class Run:
    batch_size: int
    seed: int
    steps: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float
    path: str


# --- data ---------------------------------------------------------------------------------------------------


def teacher_student(settings: Settings, seed: int = 12345) -> tuple[np.ndarray, ...]:
    """Inputs with a low-rank correlated part (like pixels), labels from a random ReLU teacher, some
    flipped."""
    rng = np.random.default_rng(seed)
    d = settings.inputs
    mixing = rng.standard_normal((d, d)) / math.sqrt(d)
    mixing[:, d // 4 :] *= 0.2  # a quarter of the directions carry most of the variance
    hidden = rng.standard_normal((d, 4 * settings.classes)) / math.sqrt(d)
    head = rng.standard_normal((4 * settings.classes, settings.classes))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, d)) @ mixing.T
        y = np.argmax(np.maximum(x @ hidden, 0.0) @ head, axis=1)
        return x, y

    x_train, y_train = sample(settings.train)
    x_test, y_test = sample(settings.test)
    flip = rng.random(settings.train) < settings.label_noise
    y_train = np.where(flip, rng.integers(0, settings.classes, settings.train), y_train)
    scale = x_train.std(axis=0) + 1e-8
    return x_train / scale, y_train, x_test / scale, y_test


def digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # optional: only for --data digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


# --- training -----------------------------------------------------------------------------------------------


def network(settings: Settings):  # type: ignore[no-untyped-def]
    import torch

    layers: list[torch.nn.Module] = []
    width = settings.inputs
    for hidden in settings.widths:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, settings.classes))
    return torch.nn.Sequential(*layers)


def train(settings: Settings, data: tuple[np.ndarray, ...], batch_size: int, seed: int, out: Path) -> Run:
    import torch

    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = (torch.from_numpy(np.asarray(a)) for a in data)
    x_train, x_test = x_train.float(), x_test.float()
    net = network(settings)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum)
    onehot = torch.nn.functional.one_hot(y_train, settings.classes).float()

    def loss_of(logits: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if settings.loss == "mse":  # the paper's MiniAlexNet loss: MSE on one-hot targets
            target = onehot if index is None else onehot[index]
            return torch.nn.functional.mse_loss(logits, target)
        return torch.nn.functional.cross_entropy(logits, y_train if index is None else y_train[index])

    generator = torch.Generator().manual_seed(seed)
    start = time.process_time()
    budget = settings.steps if settings.until == "steps" else settings.max_steps
    check_every = max(1, min(200, 2000 // batch_size))
    step = 0
    train_loss = math.inf
    while step < budget:
        index = torch.randint(0, len(x_train), (batch_size,), generator=generator)
        loss = loss_of(net(x_train[index]), index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if not math.isfinite(float(loss.detach())):
            break  # diverged: reported as such (train accuracy shows it)
        if settings.until == "loss" and step % check_every == 0:
            with torch.no_grad():
                train_loss = float(loss_of(net(x_train), None))
            if train_loss <= settings.target_loss:
                break
    with torch.no_grad():
        train_loss = float(loss_of(net(x_train), None))
        train_accuracy = float((net(x_train).argmax(1) == y_train).float().mean())
        test_accuracy = float((net(x_test).argmax(1) == y_test).float().mean())
    path = out / "models" / f"bs{batch_size:04d}_seed{seed}.safetensors"
    tensors = {name: value.detach().numpy() for name, value in net.state_dict().items()}
    save_safetensors(path, tensors, {"batch_size": str(batch_size), "seed": str(seed), "steps": str(step)})
    return Run(
        batch_size,
        seed,
        step,
        train_loss,
        train_accuracy,
        test_accuracy,
        time.process_time() - start,
        str(path),
    )


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian data), so that the
    script needs no safetensors package."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)


# --- analysis -----------------------------------------------------------------------------------------------


def inspect(run: Run) -> dict[str, object]:
    report = analyze(run.path)
    layers = []
    for layer in report.layers:
        if layer.status is not Status.ANALYZED or layer.metrics is None:
            continue
        m = layer.metrics
        layers.append(
            {
                "name": layer.name,
                "shape": list(layer.shape),
                "alpha": m.alpha,
                "phase": layer.phase.value if layer.phase else None,
                "neighbour": layer.phase_neighbour.value if layer.phase_neighbour else None,
                "confidence": layer.phase_confidence,
                "mp_softrank": m.mp_softrank,
                "stable_rank": m.stable_rank,
                "num_outliers": m.num_outliers,
                "tail_decades": m.tail_decades,
            }
        )
    summary = report.summary
    assert summary is not None
    return {
        **asdict(run),
        "layers": layers,
        "alpha_weighted": summary.alpha_weighted,
        "log_alpha_norm": summary.log_alpha_norm,
        "mean_alpha": summary.mean_alpha,
    }


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=np.float64)
        array = np.asarray(values)
        for value in np.unique(array):
            tied = array == value
            r[tied] = r[tied].mean()
        return r

    a, b = ranks(x), ranks(y)
    return float(np.corrcoef(a, b)[0, 1])


def majority(phases: list[str | None]) -> str:
    counted = {phase: phases.count(phase) for phase in phases if phase}
    if not counted:
        return "-"
    best = max(counted.values())
    return "/".join(sorted((p for p, c in counted.items() if c == best), key=lambda p: PHASE_ORDER[Phase(p)]))


def table(results: list[dict[str, object]], layer_names: list[str]) -> str:
    lines = []
    header = "| batch | steps | train loss | train acc | test acc | " + " | ".join(
        f"{name} alpha / phase / soft rank / stable rank" for name in layer_names
    )
    lines.append(header + " |")
    lines.append("|" + "---|" * (5 + len(layer_names)))
    for batch in sorted({int(r["batch_size"]) for r in results}):  # type: ignore[call-overload]
        rows = [r for r in results if r["batch_size"] == batch]
        cells = [
            str(batch),
            f"{np.mean([r['steps'] for r in rows]):.0f}",
            f"{np.mean([r['train_loss'] for r in rows]):.3g}",
            f"{np.mean([r['train_accuracy'] for r in rows]):.3f}",
            f"{np.mean([r['test_accuracy'] for r in rows]):.3f}",
        ]
        for name in layer_names:
            values = [next(x for x in r["layers"] if x["name"] == name) for r in rows]  # type: ignore[attr-defined]
            alphas = [v["alpha"] for v in values if v["alpha"] is not None]
            softrank = np.mean([v["mp_softrank"] for v in values])
            stable = np.mean([v["stable_rank"] for v in values])
            cells.append(
                f"{np.mean(alphas) if alphas else math.nan:.2f} / {majority([v['phase'] for v in values])} / "
                f"{softrank:.2f} / {stable:.1f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(results: list[dict[str, object]], layer_names: list[str], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)")
        return False
    batches = sorted({int(r["batch_size"]) for r in results})  # type: ignore[call-overload]

    def per_batch(get) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
        means, spreads = [], []
        for batch in batches:
            values = [get(r) for r in results if r["batch_size"] == batch]
            values = [v for v in values if v is not None and math.isfinite(v)]
            means.append(float(np.mean(values)) if values else math.nan)
            spreads.append(float(np.std(values)) if values else math.nan)
        return means, spreads

    def layer_value(name: str, key: str):  # type: ignore[no-untyped-def]
        return lambda r: next(x for x in r["layers"] if x["name"] == name)[key]

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = [("alpha", "FC alpha"), ("mp_softrank", "MP soft rank"), ("stable_rank", "stable rank")]
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for name in layer_names:
            means, spreads = per_batch(layer_value(name, key))
            ax.errorbar(batches, means, yerr=spreads, marker="o", capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax = axes[1][0]
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        means, spreads = per_batch(lambda r, key=key: r[key])
        ax.errorbar(batches, means, yerr=spreads, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_title("accuracy")
    ax.legend()
    ax = axes[1][1]
    order = [
        Phase.RANDOM_LIKE,
        Phase.BLEEDING_OUT,
        Phase.BULK_PLUS_SPIKES,
        Phase.BULK_DECAY,
        Phase.HEAVY_TAILED,
        Phase.RANK_COLLAPSE,
    ]
    for offset, name in enumerate(layer_names):
        xs, ys = [], []
        for r in results:
            value = next(x for x in r["layers"] if x["name"] == name)["phase"]  # type: ignore[attr-defined]
            if value is not None:
                xs.append(float(r["batch_size"]) * (1.0 + 0.06 * (offset - len(layer_names) / 2)))  # type: ignore[arg-type]
                ys.append(PHASE_ORDER[Phase(value)])
        ax.scatter(xs, ys, label=name, alpha=0.7)
    ax.set_yticks([PHASE_ORDER[p] for p in order], [p.value for p in order])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_title("phase (every seed)")
    ax.legend(fontsize=7)
    ax = axes[1][2]
    test = [float(r["test_accuracy"]) for r in results]  # type: ignore[arg-type]
    for key, label in (("alpha_weighted", "mean weighted alpha"), ("log_alpha_norm", "mean log alpha-norm")):
        values = [float(r[key]) for r in results]  # type: ignore[arg-type]
        ax.scatter(values, test, label=f"{label} (Spearman {spearman(values, test):+.2f})")
    ax.set_xlabel("capacity metric")
    ax.set_ylabel("test accuracy")
    ax.set_title("capacity vs test accuracy, all models")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("teacher", "digits"), default="teacher")
    parser.add_argument("--loss", choices=("ce", "mse"), default="ce")
    parser.add_argument("--until", choices=("loss", "steps"), default="loss")
    parser.add_argument(
        "--target-loss", type=float, default=0.05, help="--until loss: stop at this train loss"
    )
    parser.add_argument("--steps", type=int, default=3000, help="--until steps: steps per run")
    parser.add_argument("--max-steps", type=int, default=10000, help="--until loss: the most steps per run")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--widths", default="1024,512,256", help="hidden widths")
    parser.add_argument("--label-noise", type=float, default=0.1)
    parser.add_argument("--batch-sizes", default=",".join(str(b) for b in BATCH_SIZES))
    parser.add_argument("--seeds", default=",".join(str(s) for s in SEEDS))
    parser.add_argument(
        "--quick", action="store_true", help="2 seeds, batch sizes 4/32/128/512, 1500 steps max"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("batch_size_phases_out"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        batch_sizes, seeds, args.max_steps, args.steps = [4, 32, 128, 512], [0, 1], 1500, 1500
    settings = Settings(
        data=args.data, loss=args.loss, until=args.until, target_loss=args.target_loss, steps=args.steps,
        max_steps=args.max_steps, lr=args.lr, momentum=args.momentum,
        widths=tuple(int(w) for w in args.widths.split(",")), inputs=64, classes=10, train=2000, test=2000,
        label_noise=args.label_noise if args.data == "teacher" else 0.0,
    )  # fmt: skip
    data = teacher_student(settings) if args.data == "teacher" else digits()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for batch_size in batch_sizes:
        for seed in seeds:
            run = train(settings, data, batch_size, seed, args.out)
            results.append(inspect(run))
            print(
                f"batch {batch_size:4d} seed {seed}: {run.steps:6d} steps, train loss {run.train_loss:.4f}, "
                f"train {run.train_accuracy:.3f}, test {run.test_accuracy:.3f}, {run.seconds:.0f} s; phases "
                + " ".join(str(layer["phase"]) for layer in results[-1]["layers"]),  # type: ignore[attr-defined]
                flush=True,
            )
    layer_names = [str(layer["name"]) for layer in results[0]["layers"] if min(layer["shape"]) >= 32]  # type: ignore[attr-defined]
    text = table(results, layer_names)
    test = [float(r["test_accuracy"]) for r in results]  # type: ignore[arg-type]
    correlations = {
        key: spearman([float(r[key]) for r in results], test)  # type: ignore[arg-type]
        for key in ("alpha_weighted", "log_alpha_norm", "mean_alpha")
    }
    text += "\n\nSpearman rank correlation with test accuracy over all models: " + ", ".join(
        f"{key} {value:+.2f}" for key, value in correlations.items()
    )
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "results.json").write_text(
        json.dumps({"settings": asdict(settings), "runs": results, "spearman": correlations}, indent=1)
    )
    drew = figure(results, layer_names, args.out / "batch_size_phases.png")
    print(text)
    print(
        f"wrote {args.out / 'table.md'}, {args.out / 'results.json'}"
        + (", batch_size_phases.png" if drew else "")
    )


if __name__ == "__main__":
    main()
