"""Which globals a PyTorch pickle may name, and what each becomes: the one place that decision lives.

Nothing a pickle names is ever imported or called (see `formats._unpickler`): the real protection is the
unpickler itself. This policy decides, per global, between three outcomes:

- `Verdict.STAND_IN`: we have our own version (rebuild functions, storage classes, dtypes, inert
  containers and builtins; `formats._torch_stand_ins.stand_in`);
- `Verdict.INERT`: it becomes a `Placeholder` that records what the pickle tells it (user classes in
  whole-module pickles, Lightning hyperparameter objects, numpy scalars...);
- `Verdict.REFUSED`: loading the file the usual way would run code, touch files, processes or the
  network, or load further pickles, so the file is reported unsafe (exit 3) rather than read.

REFUSED comes from a deny-list: modules refused with everything under them (`_DENIED_PREFIXES`, matched
on whole dotted components: "os" refuses "os.system" and "os.path.join", not "osmnx"), modules refused
anywhere in an attribute path (protocol 4 resolves `posixpath.os.system` by attribute lookup), dunder
attribute paths, and last components that name loaders, executors and file writers. Every other global
is INERT today; a deny-list is never complete, and splitting INERT into known-safe and unknown globals
(the scanners' tiers) belongs here too.
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass
from enum import Enum

from formats._torch_stand_ins import stand_in


class Verdict(str, Enum):
    """What a global named in a pickle becomes."""

    STAND_IN = "stand_in"  # our own implementation
    INERT = "inert"  # a placeholder that only records data
    REFUSED = "refused"  # the file is unsafe


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one global, with the reason for a refusal."""

    verdict: Verdict
    reason: str | None = None


_DENIED_PREFIXES: frozenset[str] = frozenset(
    {
        # processes, code and imports
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "sys",
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
        "mmap",
        "fcntl",
        "termios",
        "_frozen_importlib",
        "_frozen_importlib_external",
        # function plumbing that calls whatever it is given
        "operator",
        "_operator",
        "functools",
        "_functools",
        "copy",
        "weakref",
        "contextlib",
        # other pickles and loaders (nested unpickling)
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
        # files, archives and the network
        "io",
        "_io",
        "pathlib",
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
        "socket",
        "_socket",
        "ssl",
        "select",
        "selectors",
        "socketserver",
        "http",
        "urllib",
        "urllib2",
        "httplib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "webbrowser",
        "requests",
        "aiohttp",
        "urllib3",
        "httpx",
        "sqlite3",
        "logging.config",
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
        # numpy and torch entry points that load files, build extensions, compile or call native operators
        "numpy.load",
        "numpy.f2py",
        "numpy.testing",
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.lib.npyio",
        "numpy.lib.format",
        "torch.load",
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
        "torch._dynamo",
        "torch._inductor",
        "torch.compile",
        "torch.distributed",
        "torch.multiprocessing",
        "torch.storage._load_from_bytes",
        "torch.serialization",
        "torch.testing",
    }
)
# Modules whose appearance anywhere in a dotted path is refused: protocol 4 resolves `posixpath.os.system`
# by attribute lookup, so the module a chain reaches matters, not only the one it starts from.
_DENIED_ANYWHERE: frozenset[str] = frozenset(
    {
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "builtins",
        "__builtins__",
        "__builtin__",
        "importlib",
        "runpy",
        "shutil",
        "socket",
        "pty",
        "ctypes",
        "pickle",
        "_pickle",
        "marshal",
        "operator",
        "functools",
        "_io",
    }
)
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "__builtins__"})
# builtins that name plain value types: harmless as placeholders. Every other builtin (eval, exec,
# getattr, open, __import__, print, ...) is refused; set/frozenset/dict/... are stand-ins.
_INERT_BUILTINS = frozenset(
    {"object", "int", "float", "str", "bytes", "bool", "tuple", "NoneType", "Ellipsis", "NotImplemented"}
)
# Names under refused modules that are plain values; they become placeholders like any other class.
_INERT_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "torch.storage.TypedStorage",
        "types.SimpleNamespace",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
    }
)
# Last components that name a loader, an executor or a file writer, in whatever module.
_DENIED_NAMES = frozenset(
    {
        "eval",
        "exec",
        "execfile",
        "compile",
        "system",
        "popen",
        "spawn",
        "spawnv",
        "spawnve",
        "spawnl",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "fork",
        "load",
        "loads",
        "load_state_dict_from_url",
        "from_pretrained",
        "import_module",
        "getattr",
        "setattr",
        "delattr",
        "open",
        "urlopen",
        "remove",
        "unlink",
        "rmtree",
        "rmdir",
        "write_text",
        "write_bytes",
        "check_output",
        "check_call",
        "call",
        "run",
        "Popen",
        "breakpoint",
        "input",
        "globals",
        "locals",
        "vars",
        "apply",
        "attrgetter",
        "methodcaller",
        "itemgetter",
        "partial",
        "reduce",
    }
)
_DUNDER = re.compile(r"^__\w+__$")
# Dunder names that are module names rather than attribute lookups.
_DUNDER_MODULES = frozenset({"__main__", "__torch__", "__builtin__", "__mp_main__"})


def normalise(module: str, name: str) -> tuple[str, str]:
    """Python 2 spellings as Python 3 unpickling maps them (`__builtin__.set` is `builtins.set`)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


_STAND_IN = Decision(Verdict.STAND_IN)
_INERT = Decision(Verdict.INERT)


def decide(module: str, name: str) -> Decision:
    """The verdict on the global `module.name` (already normalised)."""
    full = f"{module}.{name}"
    if stand_in(module, name) is not None:
        return _STAND_IN
    if full in _INERT_EXCEPTIONS:
        return _INERT
    if module in _BUILTIN_MODULES:
        if name in _INERT_BUILTINS:
            return _INERT
        return Decision(Verdict.REFUSED, "a builtin that is not a plain value type")
    components = full.split(".")
    for end in range(1, len(components) + 1):
        if ".".join(components[:end]) in _DENIED_PREFIXES:
            return Decision(
                Verdict.REFUSED,
                "it runs code, loads other files or touches the system when the file is loaded",
            )
    if any(part in _DENIED_ANYWHERE for part in components[1:]):
        return Decision(
            Verdict.REFUSED, "its attribute path reaches a module that runs code or touches the system"
        )
    if any(_DUNDER.match(part) and part not in _DUNDER_MODULES for part in components):
        return Decision(Verdict.REFUSED, "it reaches into an object's internals (a dunder attribute)")
    if components[-1] in _DENIED_NAMES:
        return Decision(Verdict.REFUSED, "its name is that of a loader, an executor or a file writer")
    return _INERT


def refusal(module: str, name: str) -> str | None:
    """Why the global `module.name` makes a file unsafe, or None when it may be a stand-in or placeholder."""
    decision = decide(module, name)
    return decision.reason if decision.verdict is Verdict.REFUSED else None
