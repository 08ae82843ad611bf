"""Fixtures shared across the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from castseg.data.synthetic import WorldSpec, generate_world


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic world (seed 0, 112 × 112): split name → instances.json."""
    spec = WorldSpec(seed=0, counts={"source_train": 16, "target_train": 16, "target_val": 8})
    return generate_world(tmp_path_factory.mktemp("synthetic") / "world", spec)
