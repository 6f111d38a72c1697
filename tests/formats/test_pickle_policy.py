"""The pickle policy (`formats._pickle_policy`): one decision per global, which the unpickler follows."""

from __future__ import annotations

import pickle

import pytest

from formats._pickle_policy import Tier, decide, refusal
from formats._torch_records import Placeholder, StorageType, TorchDType
from formats._unpickler import load_pickle
from formats.errors import UnsafeFileError


@pytest.mark.parametrize(
    ("module", "name", "tier"),
    [
        ("torch._utils", "_rebuild_tensor_v2", Tier.ALLOWED),
        ("torch", "FloatStorage", Tier.ALLOWED),
        ("torch.storage", "UntypedStorage", Tier.ALLOWED),
        ("torch", "bfloat16", Tier.ALLOWED),
        ("collections", "OrderedDict", Tier.ALLOWED),
        ("builtins", "set", Tier.ALLOWED),
        ("torch.jit._pickle", "build_intlist", Tier.ALLOWED),  # under a refused module, but ours
        ("builtins", "int", Tier.ALLOWED),
        ("pathlib", "PosixPath", Tier.ALLOWED),
        ("__main__", "MyModel", Tier.UNKNOWN),
        ("numpy.core.multiarray", "scalar", Tier.ALLOWED),
        ("os", "system", Tier.DANGEROUS),
        ("posixpath.os", "system", Tier.DANGEROUS),
        ("builtins", "eval", Tier.DANGEROUS),
        ("mypackage", "__class__", Tier.DANGEROUS),
        ("anything", "load_state_dict_from_url", Tier.DANGEROUS),
    ],
)
def test_each_global_gets_one_tier(module: str, name: str, tier: Tier) -> None:
    decision = decide(module, name)
    assert decision.tier is tier
    assert (decision.reason is not None) is (tier is Tier.DANGEROUS)
    assert refusal(module, name) == decision.reason


def _global_pickle(module: str, name: str) -> bytes:
    """A protocol-2 pickle whose only content is the global `module.name`."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."


def test_the_unpickler_builds_what_the_policy_decides() -> None:
    dtype, _ = load_pickle(_global_pickle("torch", "bfloat16"), what="t", path=None)
    assert isinstance(dtype, TorchDType) and dtype.name == "bfloat16"
    storage, _ = load_pickle(_global_pickle("torch", "HalfStorage"), what="t", path=None)
    assert isinstance(storage, StorageType) and storage.element.name == "float16"
    cls, _ = load_pickle(_global_pickle("__main__", "MyModel"), what="t", path=None)
    assert isinstance(cls, type) and issubclass(cls, Placeholder)
    with pytest.raises(UnsafeFileError, match=r"'os\.system'"):
        load_pickle(_global_pickle("os", "system"), what="t", path=None)


def test_the_helper_pickle_is_what_pickle_writes() -> None:
    assert pickle.loads(_global_pickle("builtins", "len")) is len  # noqa: S301 - our own bytes, naming len


def test_unknown_globals_are_warned_about_and_refused_when_strict() -> None:
    from formats import open_model
    from tests.conftest import FIXTURES

    scripted = FIXTURES / "torch" / "scripted.pt"
    with open_model(scripted) as reader:
        (warning,) = reader.warnings
        assert "'__torch__.Scripted'" in warning  # a TorchScript class of the file's own code
    with pytest.raises(UnsafeFileError, match=r"'__torch__\.Scripted' .*not on the allow-list"):
        open_model(scripted, strict_pickles=True)
    with open_model(FIXTURES / "torch" / "whole_module.pt", strict_pickles=True) as reader:
        assert reader.warnings == ()  # torch's own layers are on the allow-list
