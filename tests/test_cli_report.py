"""`fhir-bridge report outcomes`: the files it writes, what it prints, exit codes, never a traceback."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from fhir_bridge.bridge import Bridge
from fhir_bridge.cli import main
from fhir_bridge.config import Settings
from tests.reports import dataset

YEAR = ["--from", "2024-01-01", "--to", "2024-12-31"]


def run(*args: str):
    result = CliRunner().invoke(main, ["report", "outcomes", *args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture()
def data_dir(tmp_path, monkeypatch, validator):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FHIR_BRIDGE_DATABASE_URL", raising=False)
    bridge = Bridge(Settings(data_dir=tmp_path / "data"), validator=validator)
    try:
        dataset.load(bridge.repository)
    finally:
        bridge.close()
    return tmp_path


def test_html_report_to_a_file(data_dir) -> None:
    out = data_dir / "outcomes.html"
    result = run(*YEAR, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "report outcomes (population, 2024-01-01 to 2024-12-31): 25 people, 50 PROM DIALOGs, 25 people with change" \
        in result.output
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_csv_to_standard_output_for_a_team(data_dir) -> None:
    result = run(*YEAR, "--team", "CareTeam/cmht-north", "--subgroup", "gender", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["dimension"] for r in rows} == {"all", "gender"}
    assert next(r for r in rows if r["measure"] == "people" and r["dimension"] == "all")["shown"] == "15"


def test_exact_counts_only_when_asked(data_dir) -> None:
    result = run(*YEAR, "--format", "json", "--no-disclosure-control", "--subgroup", "ethnicity")
    document = json.loads(result.stdout)
    assert document["disclosure_control"]["applied"] is False
    mixed = next(f for f in document["figures"] if f["measure"] == "people" and f["stratum"] == "Mixed")
    assert mixed["shown"] == "4"


def test_fhir_bundle(data_dir) -> None:
    result = run(*YEAR, "--patient", "p-a0", "--format", "fhir")
    bundle = json.loads(result.stdout)
    assert [e["resource"]["type"] for e in bundle["entry"]] == ["individual"] * 3


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "2024-02-30"], "must be a date such as"),
    (["--level", "service"], "needs an organisation or a team"),
    (["--subgroup", "religion"], "unknown subgroup 'religion'"),
])
def test_unusable_options_exit_2_with_a_sentence(data_dir, args, message) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
