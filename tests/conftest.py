"""Shared fixtures: the repository's own conformance data, loaded once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from fhir_bridge.config import Settings
from fhir_bridge.validation import Validator

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def validator(settings: Settings) -> Validator:
    return Validator.load(settings)
