"""Golden submissions: tests/golden/<mapping name>/<case>/{store.ndjson, parameters.json, expected.xml,
expected-quality.json} for every mappings/mhsds-out/*.yaml.

store.ndjson is a small fixed store, one resource a line, each written at its meta.lastUpdated
(a resource twice: two versions). The file made for the case's month must equal expected.xml
once the creation time is masked, and validate against the XSD; the quality report (less what
identifies the run) must equal expected-quality.json. FHIR_BRIDGE_UPDATE_GOLDEN=1 rewrites both
(review the diff). The case files are not named input.*, which tests/golden/test_golden.py maps.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import orjson
import pytest
import yaml

from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.submission import load_schema, validate_xml
from tests.conftest import REPO
from tests.submission.conftest import submit

GOLDEN = REPO / "tests" / "golden"
MAPPINGS = sorted((REPO / "mappings").glob("mhsds-out/*.yaml"))
CASES = sorted(p for p in GOLDEN.glob("*/*") if (p / "store.ndjson").exists())
UPDATE = os.environ.get("FHIR_BRIDGE_UPDATE_GOLDEN") == "1"
_CREATED = re.compile(r"<DateTimeDatSetCreate>[^<]*</DateTimeDatSetCreate>")


def normalize(xml: str) -> str:
    return _CREATED.sub("<DateTimeDatSetCreate>(created)</DateTimeDatSetCreate>", xml)


def store(case: Path) -> list[dict]:
    return [orjson.loads(line) for line in (case / "store.ndjson").read_bytes().splitlines() if line.strip()]


def run_case(store_of, out: Path, case: Path):
    parameters = json.loads((case / "parameters.json").read_text())
    bridge = store_of(store(case))
    return submit(bridge, out, parameters["period"], parameters["provider"],
                  created=to_microseconds(parameters["created"]))


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_submission(store_of, tmp_path, case):
    result = run_case(store_of, tmp_path / "out", case)
    assert validate_xml(load_schema(result.schema), result.xml) is None
    xml = normalize(result.xml.read_text(encoding="utf-8"))
    quality = orjson.loads(result.report_json.read_bytes())
    del quality["submission"]
    expected_xml, expected_quality = case / "expected.xml", case / "expected-quality.json"
    if UPDATE:
        expected_xml.write_text(xml, encoding="utf-8")
        expected_quality.write_text(json.dumps(quality, indent=2) + "\n", encoding="utf-8")
    assert expected_xml.exists(), f"no {expected_xml}: run with FHIR_BRIDGE_UPDATE_GOLDEN=1 and review it"
    assert xml == expected_xml.read_text(encoding="utf-8")
    assert quality == json.loads(expected_quality.read_text(encoding="utf-8"))


def test_every_submission_mapping_has_a_golden_case():
    assert MAPPINGS
    for path in MAPPINGS:
        name = yaml.safe_load(path.read_text(encoding="utf-8"))["name"]
        assert [c for c in CASES if c.parent.name == name], f"{path} has no golden case under tests/golden/{name}/"
