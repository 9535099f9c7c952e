"""Shared test helpers: the Psiphon vector files and hypothesis profiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

VECTORS_DIR = Path(__file__).parent / "vectors"

settings.register_profile("fast", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=20000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def load_vectors(name: str) -> dict:
    """Load ``tests/vectors/<name>.json`` (copied verbatim from Psiphon-produced vectors)."""
    with open(VECTORS_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def vector_cases(file: str, **match) -> list[dict]:
    cases = load_vectors(file)["cases"]
    return [c for c in cases if all(c.get(k) == v for k, v in match.items())]


@pytest.fixture
def vectors():
    return load_vectors
