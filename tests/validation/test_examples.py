"""Golden examples: every valid-* example validates clean, every invalid-* one is rejected with
the issues its sibling *.expected.json names (code and FHIRPath expression)."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import EXAMPLES

PROFILE_FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "xml")
VALID = sorted(p for folder in PROFILE_FOLDERS for p in folder.glob("valid-*.json"))
INVALID = sorted(p for folder in PROFILE_FOLDERS for p in folder.glob("invalid-*.json")
                 if not p.name.endswith(".expected.json"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_profile_has_valid_and_invalid_examples(validator):
    folders = {p.name for p in PROFILE_FOLDERS}
    for url in validator.profile_nodes:
        name = url.rsplit("/", 1)[-1]
        assert name in folders, f"no examples/{name}/ for profile {url}"
        assert list((EXAMPLES / name).glob("valid-*.json")), f"no valid example for {name}"
        assert list((EXAMPLES / name).glob("invalid-*.expected.json")), f"no invalid example for {name}"


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_valid_example_has_no_errors(validator, path):
    resource = orjson.loads(path.read_bytes())
    result = validator.validate(resource)
    assert result.valid, [(i.code, i.expression, i.message) for i in result.errors]
    profile = f"https://fhir-bridge.example.org/StructureDefinition/{path.parent.name}"
    assert profile in result.profiles, "the example must claim (or imply) its folder's profile"
    assert not result.unevaluated, f"invariants not evaluated: {result.unevaluated}"


@pytest.mark.parametrize("path", INVALID, ids=_id)
def test_invalid_example_reports_expected_issues(validator, path):
    resource = orjson.loads(path.read_bytes())
    expected = orjson.loads(path.with_name(path.stem + ".expected.json").read_bytes())["issues"]
    result = validator.validate(resource)
    assert not result.valid
    found = {(i.severity, i.code, i.expression) for i in result.issues}
    for want in expected:
        key = (want["severity"], want["code"], want["expression"])
        assert key in found, f"missing {key}; got {sorted(found, key=str)}"
