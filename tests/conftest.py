"""Shared test helpers: fixture paths, manifests, and a CLI runner that keeps stdout and stderr apart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Keras 3 must pick its backend before it is first imported; the tests use torch's CPU build.
os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MANIFESTS = FIXTURES / "manifests"


def load_manifests() -> list[dict[str, Any]]:
    """Every fixture manifest (fixtures/manifests/*.json), sorted by fixture name."""
    return [json.loads(path.read_text()) for path in sorted(MANIFESTS.glob("*.json"))]


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def run_cli(*args: str) -> Any:
    """Run the wwinspect CLI in-process; returns click's Result with separate .stdout and .stderr."""
    from typer.testing import CliRunner

    from inspector.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])
