"""Fixtures for the FHIRPath engine tests: the R4 core invariants and the fhirpathpy oracle."""
from __future__ import annotations

from pathlib import Path

import fhirpathpy
import orjson
import pytest
from fhirpathpy.models import models

STRUCTURES = Path(__file__).resolve().parents[2] / "profiles/r4-core/structures.json"


@pytest.fixture(scope="session")
def r4_types() -> dict:
    return orjson.loads(STRUCTURES.read_bytes())["types"]


@pytest.fixture(scope="session")
def invariant(r4_types):
    """invariant('qrs-1', 'QuestionnaireResponse') -> the constraint dict (key, human, expression)."""
    def find(key: str, type_name: str) -> dict:
        for element in r4_types[type_name]["elements"]:
            for constraint in element.get("constraint", ()):
                if constraint["key"] == key:
                    return constraint
        raise KeyError(f"{key} not found on {type_name}")
    return find


@pytest.fixture(scope="session")
def oracle():
    """Evaluate with fhirpathpy (R4 model): oracle(expr, node, base=..., resource=...)."""
    quiet = {"traceFn": lambda label, value: None}

    def run(expr: str, node, *, base: str | None = None, resource=None) -> list:
        path = {"expression": expr, "base": base} if base else expr
        context = {"resource": resource, "rootResource": resource} if resource is not None else {}
        return fhirpathpy.evaluate(node, path, context, model=models["r4"], options=quiet)
    return run
