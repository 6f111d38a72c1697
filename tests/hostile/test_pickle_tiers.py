"""The three tiers of the pickle policy (`formats._pickle_policy`), each through the real command line.

- Allowed: what tensors, storages, dtypes, containers and known-safe values need; read without a word.
- Dangerous: picklescan's and modelscan's published lists, and the side-effecting constructors a
  deny-list missed (`numpy.memmap(..., 'w+')`, `logging.FileHandler`): exit 3 naming the global.
- Unknown: anything else (a user's model class in a whole-module pickle): read, named in the warnings;
  `--strict-pickles` makes it exit 3.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from formats import open_model
from formats._pickle_policy import Danger, Tier, decide, normalise
from tests.conftest import FIXTURES, run_cli
from tests.formats.test_torch_hostile import _call, _checkpoint_with
from tests.hostile.refusals import assert_cli_reads, assert_cli_refuses


class UserNet(torch.nn.Module):
    """A user's model class: defined here, so a whole-module pickle names it by its import path."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(24, 32)
        self.fc2 = torch.nn.Linear(32, 24)


USER_CLASS = f"{__name__}.UserNet"


class MemmapPayload:
    """Loading it the usual way creates (and sizes) a file: `numpy.memmap(target, mode='w+')`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return np.memmap, (str(self.target), np.uint8, "w+", 0, (64,))


class FileHandlerPayload:
    """Loading it the usual way creates a log file: `logging.FileHandler(target)`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return logging.FileHandler, (str(self.target),)


def _save(tmp_path: Path, name: str, obj: object, *, legacy: bool = False) -> Path:
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _warnings(report: dict[str, Any]) -> list[str]:
    (entry,) = report["reports"]
    return list(entry["warnings"])


# --- allowed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "full_name",
    [
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._tensor._rebuild_from_type_v2",
        "torch.FloatStorage",
        "torch.storage.UntypedStorage",
        "torch.bfloat16",
        "torch.per_channel_affine",
        "torch.Size",
        "torch.device",
        "torch.nn.parameter.Parameter",
        "collections.OrderedDict",
        "builtins.set",
        "builtins.int",
        "_codecs.encode",
        "copyreg._reconstructor",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.dtype",
        "numpy.dtypes.Float32DType",
        "argparse.Namespace",
        "datetime.datetime",
        "pathlib.PosixPath",
        "torch.nn.modules.linear.Linear",
        "__torch__.torch.nn.modules.linear.___torch_mangle_0.Linear",
        "torch.jit._pickle.build_intlist",
    ],
)
def test_the_allow_list(full_name: str) -> None:
    module, name = normalise(*full_name.rsplit(".", 1))
    assert decide(module, name).tier is Tier.ALLOWED


def test_a_checkpoint_of_allowed_globals_reads_without_a_warning(tmp_path: Path) -> None:
    checkpoint = {
        "state_dict": OrderedDict(w=torch.randn(24, 32)),
        "hparams": argparse.Namespace(lr=0.1, layers=[1, 2]),
        "saved": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "array": np.arange(6, dtype=np.float32),
        "scalar": np.float64(1.5),
        "tags": {"a", "b"},
        "blob": b"\x00\x01",
        "z": complex(1, 2),
    }
    path = _save(tmp_path, "allowed.pt", checkpoint)
    report = assert_cli_reads(path)
    assert _warnings(report) == []
    assert [layer["name"] for layer in report["reports"][0]["layers"]] == ["w"]  # the state dict's name


def test_torch_own_layers_in_a_whole_module_pickle_need_no_warning() -> None:
    with open_model(FIXTURES / "torch" / "whole_module.pt") as reader:
        assert reader.warnings == ()


# --- dangerous ----------------------------------------------------------------------------------------

# picklescan `_unsafe_globals` (a name per wildcard module) and modelscan `unsafe_globals` (CRITICAL, HIGH).
SCANNER_LISTS = [
    ("__builtin__", "eval"),
    ("__builtin__", "compile"),
    ("__builtin__", "getattr"),
    ("__builtin__", "apply"),
    ("__builtin__", "exec"),
    ("__builtin__", "open"),
    ("__builtin__", "breakpoint"),
    ("builtins", "__import__"),
    ("builtins", "breakpoint"),
    ("aiohttp.client", "ClientSession"),
    ("asyncio", "create_subprocess_shell"),
    ("bdb", "Bdb"),
    ("commands", "getoutput"),
    ("ctypes", "CDLL"),
    ("functools", "partial"),
    ("httplib", "HTTPSConnection"),
    ("numpy.f2py.crackfortran", "getlincoef"),
    ("numpy.testing._private.utils", "runstring"),
    ("nt", "system"),
    ("posix", "system"),
    ("operator", "attrgetter"),
    ("operator", "itemgetter"),
    ("operator", "methodcaller"),
    ("os", "execv"),
    ("requests.api", "get"),
    ("runpy", "_run_code"),
    ("shutil", "copyfile"),
    ("socket", "socket"),
    ("ssl", "get_server_certificate"),
    ("subprocess", "getoutput"),
    ("sys", "exit"),
    ("code", "InteractiveInterpreter.runcode"),
    ("cProfile", "runctx"),
    ("distutils.file_util", "write_file"),
    ("doctest", "debug_script"),
    ("ensurepip", "_run_pip"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
    ("lib2to3.pgen2.grammar", "Grammar.loads"),
    ("pdb", "Pdb"),
    ("pickle", "Unpickler"),
    ("_pickle", "loads"),
    ("pip", "main"),
    ("pty", "spawn"),
    ("profile", "Profile.runctx"),
    ("pydoc", "locate"),
    ("timeit", "Timer"),
    ("torch._dynamo.guards", "GuardBuilder.get"),
    ("torch._inductor.codecache", "compile_file"),
    ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
    ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    ("torch.serialization", "load"),
    ("torch.utils._config_module", "ConfigModule.load_config"),
    ("torch.utils.bottleneck.__main__", "run_cprofile"),
    ("torch.utils.collect_env", "run"),
    ("torch.utils.data.datapipes.utils.decoder", "basichandlers"),
    ("trace", "Trace.runctx"),
    ("venv", "create"),
    ("webbrowser", "open_new"),
]
# What the scanners' lists miss: side-effecting constructors, files, network, nested loaders.
BEYOND_THE_SCANNERS = [
    ("numpy", "memmap"),
    ("numpy.core.memmap", "memmap"),
    ("numpy.lib.format", "open_memmap"),
    ("numpy", "load"),
    ("numpy", "fromfile"),
    ("numpy", "save"),
    ("logging", "FileHandler"),
    ("logging", "StreamHandler"),
    ("logging", "basicConfig"),
    ("logging.handlers", "RotatingFileHandler"),
    ("logging.handlers", "SocketHandler"),
    ("logging.config", "listen"),
    ("io", "FileIO"),
    ("_io", "open"),
    ("tempfile", "NamedTemporaryFile"),
    ("pathlib", "Path.write_text"),
    ("urllib.request", "urlopen"),
    ("http.client", "HTTPConnection"),
    ("ftplib", "FTP"),
    ("smtplib", "SMTP"),
    ("multiprocessing", "Process"),
    ("threading", "Thread"),
    ("importlib", "import_module"),
    ("types", "CodeType"),
    ("copyreg", "add_extension"),
    ("dill", "loads"),
    ("joblib", "load"),
    ("pandas", "read_pickle"),
    ("marshal", "loads"),
    ("torch", "load"),
    ("torch.hub", "load_state_dict_from_url"),
    ("posixpath", "os.system"),
    ("torch.nn.modules.module", "Module.__init__.__globals__"),
    ("__torch__.torch.ops", "aten"),
]


@pytest.mark.parametrize(("module", "name"), SCANNER_LISTS + BEYOND_THE_SCANNERS, ids=str)
def test_dangerous_globals_exit_3_naming_them(tmp_path: Path, module: str, name: str) -> None:
    shown_module, shown_name = normalise(module, name)
    assert decide(shown_module, shown_name).tier is Tier.DANGEROUS
    path = _checkpoint_with(tmp_path, _call(module, name, "x"))
    assert_cli_refuses(path, words=(f"'{shown_module}.{shown_name}'", "when the file is loaded"))


@pytest.mark.parametrize(
    ("payload", "global_name", "danger"),
    [
        (MemmapPayload, "numpy.memmap", Danger.FILES),
        (FileHandlerPayload, "logging.FileHandler", Danger.FILES),
    ],
)
def test_pickles_that_write_files_when_loaded_are_refused(
    tmp_path: Path, payload: type, global_name: str, danger: Danger
) -> None:
    live_target, our_target = tmp_path / "written_by_pickle", tmp_path / "written_by_wwinspect"
    pickle.loads(pickle.dumps(payload(live_target)))  # noqa: S301 - proves the payload is live
    assert live_target.exists()
    path = _save(tmp_path, "writer.pt", {"w": torch.randn(24, 32), "p": payload(our_target)})
    result = assert_cli_refuses(path, words=(f"'{global_name}'", danger.value))
    assert not our_target.exists()
    assert "describe" not in result.stderr
    assert_cli_refuses("describe", path, words=(f"'{global_name}'",))
    assert not our_target.exists()


@pytest.mark.parametrize("member", ["scripted/constants.pkl", "scripted/code/__torch__.py.debug_pkl"])
def test_the_other_pickles_of_a_torchscript_archive_pass_the_same_policy(tmp_path: Path, member: str) -> None:
    source = FIXTURES / "torch" / "scripted.pt"
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == member:
                data = b"\x80\x02" + _call("os", "system", "id") + b"."
            copy.writestr(info, data)
    assert_cli_refuses(path, words=("'os.system'", member))


# --- unknown ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("__main__", "Net"),
        ("__torch__", "Scripted"),
        ("torch.optim.adam", "Adam"),
        ("omegaconf.dictconfig", "DictConfig"),
        ("transformers.models.bert.configuration_bert", "BertConfig"),
        ("torch.nn.modules.linear", "Linear.extra_repr"),  # an attribute path is never a class of the list
    ],
)
def test_unknown_globals(module: str, name: str) -> None:
    assert decide(module, name).tier is Tier.UNKNOWN


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_whole_module_pickle_of_a_user_class_is_read_and_named(tmp_path: Path, legacy: bool) -> None:
    torch.manual_seed(0)
    path = _save(tmp_path, "user.pt", UserNet(), legacy=legacy)
    report = assert_cli_reads(path)
    names = [layer["name"] for layer in report["reports"][0]["layers"]]
    assert "fc1.weight" in names and "fc2.weight" in names
    (warning,) = _warnings(report)
    assert f"'{USER_CLASS}'" in warning and "--strict-pickles" in warning
    table = run_cli(path)
    assert table.exit_code in (0, 4), table.stderr
    assert "warning:" in table.stdout and USER_CLASS in table.stdout
    described = run_cli("describe", path, "--format", "json")
    assert described.exit_code == 0 and USER_CLASS in described.stdout


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_strict_pickles_refuses_unknown_globals(tmp_path: Path, legacy: bool) -> None:
    path = _save(tmp_path, "user.pt", UserNet(), legacy=legacy)
    words = (f"'{USER_CLASS}'", "--strict-pickles")
    assert_cli_refuses(path, "--strict-pickles", words=words)
    assert_cli_refuses("describe", path, "--strict-pickles", words=words)
    other = _save(tmp_path, "other.pt", UserNet().state_dict())
    assert_cli_refuses("compare", path, other, "--strict-pickles", words=words)
    # the allow-list alone reads under --strict-pickles
    assert_cli_reads(other, "--strict-pickles")


def test_strict_pickles_holds_for_every_shard(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    torch.save({"a.weight": torch.randn(24, 32)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": UserNet()}, folder / "pytorch_model-00002-of-00002.bin")
    index = {
        "metadata": {},
        "weight_map": {
            "a.weight": "pytorch_model-00001-of-00002.bin",
            "b.fc1.weight": "pytorch_model-00002-of-00002.bin",
        },
    }
    import json

    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert_cli_refuses(folder, "--strict-pickles", words=(f"'{USER_CLASS}'",))
    report = assert_cli_reads(folder)
    assert any(USER_CLASS in warning for warning in _warnings(report))
