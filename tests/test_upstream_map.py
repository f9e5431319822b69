"""docs/upstream-cases.md names a test for every upstream case; each named test must exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "upstream-cases.md"


def test_every_mapped_test_exists() -> None:
    named = re.findall(r"`(test_\w+)\.py::(test_\w+)`", DOC.read_text())
    assert len(named) >= 55
    missing = [
        f"{module}::{name}"
        for module, name in named
        if not hasattr(importlib.import_module(f"tests.{module}"), name)
    ]
    assert missing == []
