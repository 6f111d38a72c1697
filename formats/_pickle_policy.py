"""Which globals a PyTorch pickle may name, and what each becomes: the one place that decision lives.

Nothing a pickle names is ever imported or called (see `formats._unpickler`): the real protection is the
unpickler itself. This policy says what a global would do if the file were loaded the usual way
(`torch.load(weights_only=False)`, `pickle.load`), in the three tiers the pickle scanners use:

- `Tier.ALLOWED`: an allow-list. The globals tensors, storages, dtypes and the standard containers need,
  which we implement ourselves (`formats._torch_stand_ins.stand_in`: rebuild functions, storage classes,
  dtypes, OrderedDict, set...), plus a short list of value types whose reconstruction is known to have no
  effect outside the object (`_KNOWN_SAFE`: plain builtins, numpy's array and scalar reconstructors,
  `argparse.Namespace`, datetime values, torch's own layer classes...), which become inert placeholders.
  The base is torch's `weights_only` allow-list (`torch._weights_only_unpickler._get_allowed_globals`) and
  the scanners' safe lists (picklescan `_safe_globals`).
- `Tier.DANGEROUS`: loading the file the usual way would run code, import modules, touch files, processes
  or the network, or load further pickles. The file is reported unsafe (exit 3), naming the global. The
  list joins picklescan's `_unsafe_globals` and modelscan's `unsafe_globals` (CRITICAL and HIGH) with what
  they miss: side-effecting constructors (`numpy.memmap`, logging handlers), nested loaders, and modules
  reached through attribute paths (protocol 4 resolves `posixpath.os.system` by attribute lookup).
- `Tier.UNKNOWN`: everything else, for example the user's model classes in a whole-module pickle. It
  becomes an inert placeholder like the known-safe values, is named in the reader's warnings, and
  `--strict-pickles` (`strict_pickles`, a context the reader's open runs in) makes it a refusal too.

A deny-list is never complete, which is why only the allow-list is read without a word: whatever the
dangerous list misses still arrives as an UNKNOWN global the report names.
"""

from __future__ import annotations

import _compat_pickle
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum

from formats._messages import quote_name
from formats._torch_stand_ins import stand_in


class Tier(str, Enum):
    """What loading a global the usual way would do, as far as we know."""

    ALLOWED = "allowed"  # our own implementation, or a value type known to be inert
    DANGEROUS = "dangerous"  # code, files, processes, network or nested loading: the file is unsafe
    UNKNOWN = "unknown"  # anything else: an inert placeholder, named in the warnings


class Danger(str, Enum):
    """Why a dangerous global is refused; the value is the message's wording."""

    CODE = "it runs code or imports modules"
    PROCESSES = "it starts processes or threads, or changes the interpreter"
    FILES = "it opens, creates or writes files"
    NETWORK = "it opens network connections or a browser"
    LOADERS = "it loads further pickles or files"
    INDIRECT = "it calls or looks up whatever it is given"
    INTERNALS = "it reaches into an object's internals (a dunder attribute)"


@dataclass(frozen=True, slots=True)
class Decision:
    """The tier of one global, and for a dangerous one, why."""

    tier: Tier
    danger: Danger | None = None

    @property
    def reason(self) -> str | None:
        """Why the global makes the file unsafe, or None when it is not dangerous."""
        return f"{self.danger.value} when the file is loaded" if self.danger is not None else None


# ----------------------------------------------------------------------------------------------------
# Dangerous. Module prefixes are matched on whole dotted components: "os" covers "os.system" and
# "os.path.join", not "osmnx".

_DANGEROUS_MODULES: dict[str, Danger] = {
    **dict.fromkeys(
        (
            # code, imports and the interpreter's internals
            "builtins",  # except the plain value types and our stand-ins, below
            "__builtin__",
            "__builtins__",
            "importlib",
            "_imp",
            "imp",
            "runpy",
            "pkgutil",
            "zipimport",
            "site",
            "sysconfig",
            "code",
            "codeop",
            "compileall",
            "py_compile",
            "types",
            "ast",
            "inspect",
            "gc",
            "ctypes",
            "_ctypes",
            "cffi",
            "_frozen_importlib",
            "_frozen_importlib_external",
            "pydoc",
            "commands",
            # debuggers, profilers and tools that run code strings
            "pdb",
            "bdb",
            "trace",
            "timeit",
            "profile",
            "cProfile",
            "doctest",
            "unittest",
            "idlelib",
            "lib2to3",
            "tkinter",
            "turtle",
            "cgi",
            "cgitb",
            # package managers
            "pip",
            "ensurepip",
            "venv",
            "setuptools",
            "distutils",
            # numpy and torch entry points that build extensions, compile, trace or call native operators
            "numpy.f2py",
            "numpy.testing",
            "numpy.ctypeslib",
            "numpy.distutils",
            "torch.hub",
            "torch.ops",
            "torch._C",
            "torch._ops",
            "torch.library",
            "torch._library",
            "torch.jit",
            "torch.package",
            "torch.fx",
            "torch.utils.cpp_extension",
            "torch.utils.collect_env",
            "torch.utils.bottleneck",
            "torch.utils._config_module",
            "torch._dynamo",
            "torch._inductor",
            "torch.compile",
            "torch.testing",
        ),
        Danger.CODE,
    ),
    **dict.fromkeys(
        (
            "os",
            "posix",
            "nt",
            "subprocess",
            "_posixsubprocess",
            "sys",
            "multiprocessing",
            "_multiprocessing",
            "concurrent",
            "threading",
            "_thread",
            "signal",
            "asyncio",
            "pty",
            "platform",
            "resource",
            "fcntl",
            "termios",
            "torch.distributed",
            "torch.multiprocessing",
        ),
        Danger.PROCESSES,
    ),
    **dict.fromkeys(
        (
            "operator",
            "_operator",
            "functools",
            "_functools",
            "copy",
            "copyreg",  # except our two reconstructors: the rest calls constructors or edits the registry
            "weakref",
            "contextlib",
        ),
        Danger.INDIRECT,
    ),
    **dict.fromkeys(
        (
            "pickle",
            "_pickle",
            "cPickle",
            "pickletools",
            "marshal",
            "shelve",
            "dbm",
            "dill",
            "cloudpickle",
            "joblib",
            "yaml",
            "jsonpickle",
            "pandas.io",
            "numpy.lib.npyio",
            "numpy.lib.format",
            "torch.serialization",  # except _get_layout, ours
            "torch.storage._load_from_bytes",
            "torch.load",
            "torch.utils.data.datapipes.utils.decoder",
        ),
        Danger.LOADERS,
    ),
    **dict.fromkeys(
        (
            "io",
            "_io",
            "pathlib",  # except the path classes themselves: building a path touches nothing
            "shutil",
            "tempfile",
            "glob",
            "fileinput",
            "linecache",
            "tarfile",
            "zipfile",
            "gzip",
            "bz2",
            "lzma",
            "mmap",
            "sqlite3",
            "logging.handlers",
            "logging.config",
            "distutils.file_util",
        ),
        Danger.FILES,
    ),
    **dict.fromkeys(
        (
            "socket",
            "_socket",
            "ssl",
            "select",
            "selectors",
            "socketserver",
            "http",
            "httplib",
            "urllib",
            "urllib2",
            "urllib3",
            "ftplib",
            "smtplib",
            "poplib",
            "imaplib",
            "telnetlib",
            "xmlrpc",
            "webbrowser",
            "requests",
            "aiohttp",
            "httpx",
        ),
        Danger.NETWORK,
    ),
}
# Modules whose appearance anywhere in a dotted path is refused: protocol 4 resolves `posixpath.os.system`
# by attribute lookup, so the module a chain reaches matters, not only the one it starts from.
_DANGEROUS_ANYWHERE: dict[str, Danger] = {
    **dict.fromkeys(("os", "posix", "nt", "sys", "subprocess", "pty"), Danger.PROCESSES),
    **dict.fromkeys(("builtins", "__builtins__", "__builtin__", "importlib", "runpy", "ctypes"), Danger.CODE),
    **dict.fromkeys(("operator", "functools"), Danger.INDIRECT),
    **dict.fromkeys(("pickle", "_pickle", "marshal"), Danger.LOADERS),
    **dict.fromkeys(("shutil", "_io", "io"), Danger.FILES),
    **dict.fromkeys(("socket",), Danger.NETWORK),
}
# Last components that name an executor, a loader or a file writer, in whatever module (`some_package.loads`,
# `numpy.memmap`, `pandas.read_pickle`, `logging.FileHandler` is matched by the suffix rule below).
_DANGEROUS_NAMES: dict[str, Danger] = {
    **dict.fromkeys(
        (
            "eval",
            "exec",
            "execfile",
            "compile",
            "apply",
            "breakpoint",
            "input",
            "globals",
            "locals",
            "vars",
            "getattr",
            "setattr",
            "delattr",
            "import_module",
            "runcode",
            "runsource",
            "runctx",
            "run_path",
            "run_module",
            "execWrapper",
        ),
        Danger.CODE,
    ),
    **dict.fromkeys(
        (
            "system",
            "popen",
            "popen2",
            "popen3",
            "popen4",
            "Popen",
            "spawn",
            "spawnl",
            "spawnlp",
            "spawnlpe",
            "spawnv",
            "spawnve",
            "execv",
            "execve",
            "execvp",
            "execvpe",
            "execl",
            "fork",
            "call",
            "check_call",
            "check_output",
            "run",
            "kill",
        ),
        Danger.PROCESSES,
    ),
    **dict.fromkeys(
        ("load", "loads", "read_pickle", "load_state_dict_from_url", "from_pretrained", "load_library"),
        Danger.LOADERS,
    ),
    **dict.fromkeys(
        (
            "open",
            "remove",
            "unlink",
            "rmtree",
            "rmdir",
            "rename",
            "write_text",
            "write_bytes",
            "write_file",
            "memmap",
            "open_memmap",
            "fromfile",
            "tofile",
            "save",
            "savez",
            "savez_compressed",
            "savetxt",
            "loadtxt",
            "genfromtxt",
            "basicConfig",
            "DataSource",
        ),
        Danger.FILES,
    ),
    **dict.fromkeys(("urlopen", "urlretrieve", "create_connection"), Danger.NETWORK),
    **dict.fromkeys(("attrgetter", "methodcaller", "itemgetter", "partial", "reduce"), Danger.INDIRECT),
}
# `logging.FileHandler`, `logging.StreamHandler`, `logging.handlers.SocketHandler`...: a handler's
# constructor opens its file, socket or mail connection.
_HANDLER_MODULES = frozenset({"logging"})
_DUNDER = re.compile(r"^__\w+__$")
# Dunder names that are module names rather than attribute lookups.
_DUNDER_MODULES = frozenset({"__main__", "__torch__", "__builtin__", "__mp_main__"})

# ----------------------------------------------------------------------------------------------------
# Allowed without being ours: values whose reconstruction has no effect outside the object. They become
# inert placeholders that record what the pickle gives them.

_KNOWN_SAFE: frozenset[str] = frozenset(
    {
        # plain builtin values (torch's weights_only loader and picklescan allow the same)
        "builtins.object",
        "builtins.int",
        "builtins.float",
        "builtins.str",
        "builtins.bytes",
        "builtins.bool",
        "builtins.tuple",
        "builtins.NoneType",
        "builtins.Ellipsis",
        "builtins.NotImplemented",
        # torch's own value types (torch's weights_only allow-list)
        "torch.Tensor",
        "torch._tensor.Tensor",
        "torch.device",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.nn.parameter.UninitializedParameter",
        "torch.nn.parameter.UninitializedBuffer",
        "torch.storage.TypedStorage",
        # numpy arrays, scalars and dtypes inside checkpoints (picklescan's safe list, torch's documented
        # additions for numpy); we never build the array
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        # attribute bags holding hyperparameters (fairseq's args, Lightning's hparams)
        "argparse.Namespace",
        "types.SimpleNamespace",
        "lightning.fabric.utilities.data.AttributeDict",
        "lightning.pytorch.utilities.parsing.AttributeDict",
        "pytorch_lightning.utilities.parsing.AttributeDict",
        # values of the standard library: building one touches nothing
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
    }
)
# Modules whose classes (a plain name, never an attribute path) are allowed: torch's own layers, whose
# unpickling runs only torch's own `__setstate__` (restoring attributes, no files, processes or network);
# numpy's dtype classes.
_KNOWN_SAFE_CLASS_MODULES: tuple[str, ...] = ("torch.nn.modules", "numpy.dtypes")
# TorchScript's name of a class compiled from the archive's `code/`: `__torch__.` and mangled components.
_TORCHSCRIPT_PREFIX = "__torch__."
_TORCHSCRIPT_MANGLE = re.compile(r"\.___torch_mangle_\d+(?=\.)")

#: Most unknown globals a warning names one by one.
MAX_NAMED_UNKNOWN = 8


def normalise(module: str, name: str) -> tuple[str, str]:
    """Python 2 spellings as Python 3 unpickling maps them (`__builtin__.set` is `builtins.set`)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _danger(components: list[str]) -> Danger | None:
    """Why a dotted global name is dangerous, or None."""
    for end in range(len(components), 0, -1):
        found = _DANGEROUS_MODULES.get(".".join(components[:end]))
        if found is not None:
            return found
    for part in components[1:]:
        if part in _DANGEROUS_ANYWHERE:
            return _DANGEROUS_ANYWHERE[part]
    if any(_DUNDER.match(part) and part not in _DUNDER_MODULES for part in components):
        return Danger.INTERNALS
    last = components[-1]
    if last in _DANGEROUS_NAMES:
        return _DANGEROUS_NAMES[last]
    if components[0] in _HANDLER_MODULES and (last.endswith("Handler") or last == "getHandlerByName"):
        return Danger.FILES
    return None


def _torch_own(full: str) -> str:
    """A TorchScript class name as the Python class it was compiled from (`__torch__.torch.nn...Linear`)."""
    if not full.startswith(_TORCHSCRIPT_PREFIX):
        return full
    return _TORCHSCRIPT_MANGLE.sub("", full[len(_TORCHSCRIPT_PREFIX) :])


def _known_safe(module: str, name: str) -> bool:
    full = _torch_own(f"{module}.{name}")
    if full in _KNOWN_SAFE:
        return True
    if "." in name:  # an attribute path (`Linear.register_forward_hook`) is never a class of the list
        return False
    owner, _, cls = full.rpartition(".")
    inside = any(owner == prefix or owner.startswith(prefix + ".") for prefix in _KNOWN_SAFE_CLASS_MODULES)
    return inside and cls[:1].isupper()


_ALLOWED = Decision(Tier.ALLOWED)
_UNKNOWN = Decision(Tier.UNKNOWN)


def decide(module: str, name: str) -> Decision:
    """The tier of the global `module.name` (already normalised)."""
    if stand_in(module, name) is not None:
        return _ALLOWED
    full = f"{module}.{name}"
    if full in _KNOWN_SAFE:  # before the dangerous modules: `pathlib.Path` is one class of `pathlib`
        return _ALLOWED
    danger = _danger(full.split(".")) or _danger(_torch_own(full).split("."))
    if danger is not None:
        return Decision(Tier.DANGEROUS, danger)
    if _known_safe(module, name):
        return _ALLOWED
    return _UNKNOWN


def refusal(module: str, name: str) -> str | None:
    """Why the global `module.name` makes a file unsafe, or None when it is allowed or unknown."""
    return decide(module, name).reason


# ----------------------------------------------------------------------------------------------------
# Strict mode: unknown globals refused as well. A context rather than an argument of every opener, so the
# choice made for one open reaches the unpickler of every shard and nested archive it reads.

_STRICT: ContextVar[bool] = ContextVar("wwinspect_strict_pickles", default=False)


@contextmanager
def strict_pickles(strict: bool | None) -> Iterator[None]:
    """Within the block, pickles naming an UNKNOWN global are refused (`--strict-pickles`), or not; None
    keeps the choice of the enclosing block (an adapter's open, which opens its base)."""
    token = _STRICT.set(_STRICT.get() if strict is None else strict)
    try:
        yield
    finally:
        _STRICT.reset(token)


def unknown_is_refused() -> bool:
    """Whether the current open refuses UNKNOWN globals."""
    return _STRICT.get()


def strict_refusal(full: str, what: str) -> str:
    """The one line for an UNKNOWN global under `--strict-pickles`."""
    return (
        f"pickle global {quote_name(full)} in {what} is not on the allow-list "
        "(--strict-pickles refuses globals that are neither known to be safe nor known to be dangerous)"
    )


def dangerous_refusal(full: str, what: str, decision: Decision) -> str:
    """The one line for a DANGEROUS global."""
    return f"refused pickle global {quote_name(full)} in {what}: {decision.reason}"


def unknown_warning(names: Sequence[str], what: str) -> str:
    """The report's warning naming the UNKNOWN globals of one pickle."""
    shown = ", ".join(quote_name(name) for name in names[:MAX_NAMED_UNKNOWN])
    more = f" and {len(names) - MAX_NAMED_UNKNOWN} more" if len(names) > MAX_NAMED_UNKNOWN else ""
    return (
        f"{what} names {len(names)} pickle global{'s' if len(names) != 1 else ''} outside the allow-list, "
        f"read as inert placeholders (never imported or run; --strict-pickles refuses such globals): "
        f"{shown}{more}"
    )
