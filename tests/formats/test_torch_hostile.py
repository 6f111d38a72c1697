"""Hostile PyTorch files, built here: each must be refused with exit 3 and one line, and nothing may run.

The pickles are written opcode by opcode (or by torch.save of an object whose `__reduce__` is the
payload, the way real attacks are made); the zip archives by `zipfile`, then patched where a lie in a
header is the attack.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from formats import CorruptFileError, FormatError, UnknownFormatError, UnsafeFileError, open_model
from formats._unpickler import refusal
from tests.conftest import FIXTURES, run_cli

# --- builders ------------------------------------------------------------------------------------------


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(
    key: str,
    numel: int,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    storage: str = "FloatStorage",
) -> bytes:
    """Opcodes of `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    persistent_id = _tuple(
        _unicode("storage"), _global("torch", storage), _unicode(key), _unicode("cpu"), _int(numel)
    )
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + persistent_id
        + b"Q"
        + _int(offset)
        + _tuple(*(_int(dim) for dim in size))
        + _tuple(*(_int(step) for step in stride))
        + b"\x89"
        + _global("collections", "OrderedDict")
        + b")R"
        + b"tR"
    )


def _state_dict(entries: dict[str, bytes]) -> bytes:
    """A protocol-2 pickle of a dict whose values are the given opcode snippets."""
    body = b"".join(_unicode(name) + value for name, value in entries.items())
    return b"\x80\x02}(" + body + b"u."


def _call(module: str, name: str, argument: str) -> bytes:
    return _global(module, name) + _tuple(_unicode(argument)) + b"R"


def _write_zip(
    path: Path,
    data_pkl: bytes,
    records: dict[str, bytes],
    prefix: str = "archive",
    extra: dict[str, bytes] | None = None,
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        archive.writestr(f"{prefix}/byteorder", b"little")
        for key, payload in records.items():
            archive.writestr(f"{prefix}/data/{key}", payload)
        for name, payload in (extra or {}).items():
            archive.writestr(name, payload)
        archive.writestr(f"{prefix}/version", b"3\n")
    return path


def _valid_weight() -> bytes:
    return _tensor("0", 16, 0, (4, 4), (4, 1))


def _checkpoint_with(tmp_path: Path, payload: bytes, name: str = "evil.pt") -> Path:
    """An otherwise valid checkpoint: one real 4x4 weight plus the payload under another key."""
    records = {"0": struct.pack("<16f", *range(16))}
    return _write_zip(tmp_path / name, _state_dict({"fc.weight": _valid_weight(), "extra": payload}), records)


def _assert_cli_refuses(path: Path, *words: str) -> None:
    result = run_cli(str(path), "--format", "json")
    assert result.exit_code == 3, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


# --- refused globals -----------------------------------------------------------------------------------

CODE_RUNNING_GLOBALS = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("__builtin__", "eval"),
    ("importlib", "import_module"),
    ("runpy", "run_path"),
    ("shutil", "rmtree"),
    ("socket", "create_connection"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("marshal", "loads"),
    ("dill", "loads"),
    ("operator", "attrgetter"),
    ("functools", "partial"),
    ("types", "FunctionType"),
    ("ctypes", "CDLL"),
    ("webbrowser", "open"),
    ("pip", "main"),
    ("ensurepip", "_run_pip"),
    ("asyncio", "create_subprocess_exec"),
    ("timeit", "timeit"),
    ("pdb", "run"),
    ("code", "InteractiveInterpreter"),
    ("numpy", "load"),
    ("numpy.f2py", "compile"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.hub", "load"),
    ("torch._C", "_jit_pass_inline"),
    ("torch.ops", "aten"),
    ("torch.jit", "load"),
    ("torch.fx.graph_module", "reduce_graph_module"),
    ("posixpath", "os.system"),  # protocol 4 resolves dotted names by attribute lookup
    ("torch.nn.modules.module", "Module.__init__.__globals__"),
    ("some_package", "loads"),
]


@pytest.mark.parametrize(("module", "name"), CODE_RUNNING_GLOBALS, ids=lambda value: str(value))
def test_code_running_globals_are_refused_naming_them(tmp_path: Path, module: str, name: str) -> None:
    path = _checkpoint_with(tmp_path, _call(module, name, "echo pwned"))
    shown = "builtins" if module == "__builtin__" else module
    with pytest.raises(UnsafeFileError, match=rf"'{shown}\.{name}'".replace("(", r"\(")):
        open_model(path)


@pytest.mark.parametrize(
    "full_name",
    [
        "torch._utils._rebuild_tensor_v2",
        "collections.OrderedDict",
        "torch.FloatStorage",
        "builtins.set",
        "torch.nn.modules.linear.Linear",
        "__main__.MyModel",
        "__torch__.MyModel",
        "numpy.core.multiarray._reconstruct",
        "argparse.Namespace",
        "pathlib.PosixPath",
        "torch.storage.UntypedStorage",
        "_codecs.encode",
    ],
)
def test_inert_globals_are_not_refused(full_name: str) -> None:
    module, name = full_name.rsplit(".", 1)
    assert refusal(module, name) is None


def test_payload_that_torch_load_runs_runs_nothing_here(tmp_path: Path) -> None:
    """The same checkpoint that torch.load(weights_only=False) executes is refused and nothing runs."""

    class Payload:
        def __init__(self, marker: Path) -> None:
            self.marker = marker

        def __reduce__(self) -> tuple[object, tuple[str]]:
            return exec, (f"open({str(self.marker)!r}, 'w').close()",)

    live_marker, our_marker = tmp_path / "torch_ran_it", tmp_path / "wwinspect_ran_it"
    weights = OrderedDict(fc=torch.nn.Linear(8, 8).state_dict()["weight"])
    live, ours = tmp_path / "live.pt", tmp_path / "ours.pt"
    torch.save({"state_dict": weights, "payload": Payload(live_marker)}, live)
    torch.save({"state_dict": weights, "payload": Payload(our_marker)}, ours)

    torch.load(live, weights_only=False)  # proves the payload is live when loaded the usual way
    assert live_marker.exists()

    with pytest.raises(UnsafeFileError, match=r"'builtins\.exec'"):
        open_model(ours)
    _assert_cli_refuses(ours, "builtins.exec")
    assert not our_marker.exists()


def test_os_system_payload_from_reduce_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "shell_ran"

    class Shell:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    path = tmp_path / "shell.pt"
    torch.save({"weight": torch.randn(4, 4), "x": Shell()}, path)
    _assert_cli_refuses(path, os.system.__module__ + ".system")
    assert not marker.exists()


def test_payload_before_a_broken_stream_never_runs(tmp_path: Path) -> None:
    """nullifAI: the payload comes first and the pickle breaks afterwards; we parse before we build."""
    marker = tmp_path / "ran"
    broken = b"\x80\x02" + _call("builtins", "exec", f"open({str(marker)!r}, 'w').close()") + b"\xff\xfe"
    path = _write_zip(tmp_path / "broken.pt", broken, {})
    with pytest.raises(FormatError):
        open_model(path)
    _assert_cli_refuses(path)
    assert not marker.exists()


def test_stack_global_with_memoised_strings_is_refused(tmp_path: Path) -> None:
    # Protocol 4: the module and name come from the memo, not from a GLOBAL line a scanner would see.
    stream = (
        b"\x80\x04"
        + _unicode("os")
        + b"\x94"
        + _unicode("system")
        + b"\x94"
        + b"h\x00h\x01\x93"
        + _tuple(_unicode("id"))
        + b"R."
    )
    path = _checkpoint_with(tmp_path, stream[2:-1])
    with pytest.raises(UnsafeFileError, match=r"'os\.system'"):
        open_model(path)


def test_protocol_0_inst_opcode_is_refused(tmp_path: Path) -> None:
    path = _checkpoint_with(tmp_path, b"(S'id'\nios\nsystem\n")
    with pytest.raises(UnsafeFileError, match=r"'os\.system'"):
        open_model(path)


def test_reconstructor_of_a_code_running_class_is_refused(tmp_path: Path) -> None:
    payload = (
        _global("copyreg", "_reconstructor")
        + _tuple(_global("subprocess", "Popen"), _global("builtins", "object"), b"N")
        + b"R"
    )
    with pytest.raises(UnsafeFileError, match=r"'subprocess\.Popen'"):
        open_model(_checkpoint_with(tmp_path, payload))


def test_extension_registry_opcodes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="EXT1"):
        open_model(_checkpoint_with(tmp_path, b"\x82\x01"))


def test_build_on_a_stand_in_cannot_change_it(tmp_path: Path) -> None:
    # BUILD with a slot state would otherwise setattr __defaults__ on our rebuild function.
    payload = _global("torch._utils", "_rebuild_tensor_v2") + b"N}" + _unicode("__defaults__") + b")s\x86b"
    with pytest.raises(CorruptFileError):
        open_model(_checkpoint_with(tmp_path, payload))
    assert open_model(FIXTURES / "torch" / "state_dict.pt") is not None


def test_build_on_a_tensor_record_cannot_change_it(tmp_path: Path) -> None:
    payload = _valid_weight() + _tuple(b"N", b"}" + _unicode("offset") + _int(10_000) + b"s") + b"b"
    with pytest.raises(CorruptFileError):
        open_model(_checkpoint_with(tmp_path, payload))


def test_huge_memo_index_is_refused_before_unpickling(tmp_path: Path) -> None:
    payload = b"N" + b"r" + struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(CorruptFileError, match="memo"):
        open_model(_checkpoint_with(tmp_path, payload))


def test_deeply_nested_objects_are_refused(tmp_path: Path) -> None:
    nested: list[object] = []
    for _ in range(400):
        nested = [nested]
    payload = pickle.dumps(nested, protocol=2)[2:-1]
    with pytest.raises(CorruptFileError, match="deeper"):
        open_model(_checkpoint_with(tmp_path, payload))


def test_garbage_pickle_is_corrupt(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "garbage.pt", b"\x80\x02this is not a pickle", {})
    with pytest.raises(CorruptFileError, match="pickle"):
        open_model(path)


def test_module_persistent_id_outside_legacy_files_is_corrupt(tmp_path: Path) -> None:
    payload = _tuple(_unicode("module"), _global("torch.nn", "Linear"), b"N", b"N") + b"Q"
    with pytest.raises(CorruptFileError, match="persistent id"):
        open_model(_checkpoint_with(tmp_path, payload))


# --- lying storages and views -----------------------------------------------------------------------


def test_tensor_reaching_past_its_storage_is_corrupt(tmp_path: Path) -> None:
    pickle_bytes = _state_dict({"w": _tensor("0", 4, 0, (10,), (1,))})
    path = _write_zip(tmp_path / "past.pt", pickle_bytes, {"0": bytes(16)})
    with pytest.raises(CorruptFileError, match=r"tensor 'w' .*reaches byte 40 of storage archive/data/0"):
        open_model(path)
    _assert_cli_refuses(path, "'w'")


def test_storage_larger_than_its_record_is_corrupt(tmp_path: Path) -> None:
    path = _write_zip(
        tmp_path / "short.pt", _state_dict({"w": _tensor("0", 100, 0, (10, 10), (10, 1))}), {"0": bytes(16)}
    )
    with pytest.raises(CorruptFileError, match="declares 100 float32 elements"):
        open_model(path)


def test_missing_storage_record_is_corrupt(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "missing.pt", _state_dict({"w": _tensor("7", 4, 0, (2, 2), (2, 1))}), {})
    with pytest.raises(CorruptFileError, match="archive/data/7"):
        open_model(path)


def test_storage_offset_past_the_end_is_corrupt(tmp_path: Path) -> None:
    path = _write_zip(
        tmp_path / "offset.pt", _state_dict({"w": _tensor("0", 4, 3, (2,), (1,))}), {"0": bytes(16)}
    )
    with pytest.raises(CorruptFileError, match="reaches byte 20"):
        open_model(path)


@pytest.mark.parametrize("stride", [(1 << 62, 1), (1 << 40, 1 << 40)])
def test_strides_that_overflow_are_corrupt(tmp_path: Path, stride: tuple[int, int]) -> None:
    tensor = (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + _tuple(
            _unicode("storage"), _global("torch", "FloatStorage"), _unicode("0"), _unicode("cpu"), _int(4)
        )
        + b"Q"
        + _int(0)
        + _tuple(_int(2), _int(2))
        + _tuple(*(b"\x8a\x08" + struct.pack("<q", step) for step in stride))
        + b"\x89"
        + _global("collections", "OrderedDict")
        + b")RtR"
    )
    path = _write_zip(tmp_path / "stride.pt", _state_dict({"w": tensor}), {"0": bytes(16)})
    with pytest.raises(CorruptFileError):
        open_model(path)
    _assert_cli_refuses(path)


def test_negative_strides_are_corrupt(tmp_path: Path) -> None:
    path = _write_zip(
        tmp_path / "negative.pt", _state_dict({"w": _tensor("0", 4, 3, (4,), (-1,))}), {"0": bytes(16)}
    )
    with pytest.raises(CorruptFileError, match="negative"):
        open_model(path)


def test_storage_key_with_a_path_is_corrupt(tmp_path: Path) -> None:
    path = _write_zip(
        tmp_path / "key.pt", _state_dict({"w": _tensor("../../etc/passwd", 4, 0, (4,), (1,))}), {}
    )
    with pytest.raises(CorruptFileError, match="storage key"):
        open_model(path)


# --- lying archives ---------------------------------------------------------------------------------


def _patch_central_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size a member declares in the zip's central directory."""
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x01\x02")
    while True:
        (name_length,) = struct.unpack_from("<H", data, start + 28)
        if data[start + 46 : start + 46 + name_length].decode() == member:
            struct.pack_into("<I", data, start + 24, size)
            break
        extra, comment = struct.unpack_from("<HH", data, start + 30)
        start += 46 + name_length + extra + comment
    path.write_bytes(bytes(data))


def test_stored_member_declaring_more_than_the_file_is_corrupt(tmp_path: Path) -> None:
    path = _checkpoint_with(tmp_path, b"N")
    _patch_central_size(path, "archive/data/0", 1 << 31)
    with pytest.raises(CorruptFileError):
        open_model(path)
    _assert_cli_refuses(path)


def test_zip_bomb_declared_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    data_pkl = _state_dict({"fc.weight": _valid_weight()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/data/0", struct.pack("<16f", *range(16)))
    _patch_central_size(path, "archive/data.pkl", 0xFFFFFFF0)
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        open_model(path)
    _assert_cli_refuses(path, "zip bomb")


def test_two_archives_in_one_zip_are_corrupt(tmp_path: Path) -> None:
    first = _state_dict({"fc.weight": _valid_weight()})
    path = _write_zip(tmp_path / "two.pt", first, {"0": bytes(64)}, extra={"other/data.pkl": first})
    with pytest.raises(CorruptFileError, match="2 PyTorch archives"):
        open_model(path)
    _assert_cli_refuses(path, "archives")


def test_checkpoint_nested_inside_another_zip_is_not_read(tmp_path: Path) -> None:
    inner = (FIXTURES / "torch" / "state_dict.pt").read_bytes()
    path = tmp_path / "outer.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("outer/inner.pt", inner)
    with pytest.raises(UnknownFormatError, match=r"data\.pkl"):
        open_model(path)
    _assert_cli_refuses(path)


def test_local_header_naming_another_member_is_corrupt(tmp_path: Path) -> None:
    path = _checkpoint_with(tmp_path, b"N")
    data = path.read_bytes()
    # The record's local header says "archive/data/1" while the central directory says ".../0".
    position = data.index(b"archive/data/0")
    path.write_bytes(data[:position] + b"archive/data/1" + data[position + 14 :])
    with pytest.raises(CorruptFileError):
        open_model(path)


def test_truncated_checkpoint_is_corrupt(tmp_path: Path) -> None:
    data = (FIXTURES / "torch" / "state_dict.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        open_model(path)
    _assert_cli_refuses(path)


def test_truncated_legacy_checkpoint_is_corrupt(tmp_path: Path) -> None:
    data = (FIXTURES / "torch" / "legacy.pt").read_bytes()
    path = tmp_path / "legacy.pt"
    path.write_bytes(data[:-100])
    with pytest.raises(CorruptFileError, match="past the end"):
        open_model(path)


def test_legacy_checkpoint_with_a_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    path = tmp_path / "legacy_evil.pt"
    torch.save({"w": torch.randn(3, 3), "p": Payload()}, path, _use_new_zipfile_serialization=False)
    _assert_cli_refuses(path, "builtins.exec")
    assert not marker.exists()


def test_seven_zip_container_is_not_guessed_at(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(64))
    with pytest.raises(UnknownFormatError):
        open_model(path)
    _assert_cli_refuses(path)


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nope.pt"), "--format", "json")
    assert result.exit_code == 2, (result.stdout, result.stderr)


def test_nothing_is_imported_while_reading(tmp_path: Path) -> None:
    """Reading every fixture in a fresh interpreter imports neither torch nor any module the files name."""
    script = (
        "import sys, pathlib\n"
        "from formats import open_model\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "for name in ['state_dict.pt', 'whole_module.pt', 'lightning.ckpt', 'legacy_module.pt',"
        " 'scripted.pt',"
        " 'hf_sharded']:\n"
        "    with open_model(root / name) as reader:\n"
        "        for ref in reader.tensors():\n"
        "            if ref.info.dtype.is_float and ref.info.skip_reason is None: ref.read()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', '__torch__', 'lightning'))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(FIXTURES / "torch")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_builders_make_readable_files_when_nothing_is_hostile(tmp_path: Path) -> None:
    """A control for the tests above: without a payload, the same builders give a checkpoint that reads."""
    with open_model(_checkpoint_with(tmp_path, b"N")) as reader:
        (ref,) = list(reader.tensors())
        assert ref.info.name == "fc.weight"
        assert ref.read().tolist() == [[float(4 * row + col) for col in range(4)] for row in range(4)]
