"""The command line: exit codes, formats, readable errors (never a traceback)."""
from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from fhir_bridge.cli import main
from tests.conftest import EXAMPLES, REPO

QR_DIR = EXAMPLES / "dialog-questionnaire-response"
VALID_QR = QR_DIR / "valid-prom-assessment-complete.json"
INVALID_QR = QR_DIR / "invalid-rating-code-0.json"


def run(*args: str, stdin: bytes | None = None):
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert "Traceback" not in result.output
    return result


def test_validate_valid_file_exits_0():
    result = run("validate", str(VALID_QR))
    assert result.exit_code == 0, result.output
    assert "VALID" in result.output and "1 valid, 0 invalid, 0 unusable" in result.output


def test_validate_invalid_file_exits_1_and_names_the_element():
    result = run("validate", str(INVALID_QR))
    assert result.exit_code == 1
    assert "QuestionnaireResponse.item[0].answer[0].value.ofType(Coding)" in result.output
    assert "code-invalid" in result.output


def test_validate_unusable_input_exits_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    result = run("validate", str(bad), str(VALID_QR))
    assert result.exit_code == 2
    assert "1 valid, 0 invalid, 1 unusable" in result.output


def test_validate_missing_file_exits_2_with_a_sentence(tmp_path):
    result = run("validate", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_validate_outcome_format_prints_one_operation_outcome_per_resource():
    result = run("validate", "--format", "outcome", str(EXAMPLES / "dialog-responses.ndjson"))
    lines = [orjson.loads(line) for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 5
    assert all(o["resourceType"] == "OperationOutcome" for o in lines)
    errors = [o for o in lines if any(i["severity"] == "error" for i in o["issue"])]
    assert len(errors) == 1 and errors[0]["extension"][0]["valueString"].endswith(":4")
    assert result.exit_code == 1


def test_validate_reads_xml_bundle_and_stdin():
    xml = run("validate", str(EXAMPLES / "xml" / "valid-prom-assessment-complete.xml"))
    bundle = run("validate", str(EXAMPLES / "bundle-dialog.json"))
    stdin = run("validate", "-", stdin=VALID_QR.read_bytes())
    assert (xml.exit_code, bundle.exit_code, stdin.exit_code) == (0, 0, 0), (xml.output, bundle.output, stdin.output)
    assert "<stdin>" in stdin.output


def test_validate_against_a_named_profile():
    patient = EXAMPLES / "bridge-patient" / "valid-patient-nhs-number-verified.json"
    result = run("validate", "--profile", "https://fhir-bridge.example.org/StructureDefinition/dialog-questionnaire-response",
                 str(patient))
    assert result.exit_code == 1 and "is for QuestionnaireResponse, not Patient" in result.output


def test_score_prints_means_and_item_counts():
    result = run("score", str(VALID_QR))
    assert result.exit_code == 0, result.output
    assert "SQOL mean (items 1-8)" in result.output and "from 8 items" in result.output


def test_score_json_and_observations_agree():
    as_json = orjson.loads(run("score", "--format", "json", str(VALID_QR)).output)
    bundle = orjson.loads(run("score", "--format", "observations", str(VALID_QR)).output)
    means = [e["resource"] for e in bundle["entry"]
             if e["resource"]["code"]["coding"][0]["code"] == "sqol-mean"]
    assert len(means) == 1
    assert means[0]["valueQuantity"]["value"] == pytest.approx(round(as_json["sqolMean"], 2))
    items = [e for e in bundle["entry"] if "valueInteger" in e["resource"]]
    assert len(items) == sum(1 for v in as_json["ratings"].values() if v is not None)


def test_score_refuses_an_invalid_response():
    result = run("score", str(INVALID_QR))
    assert result.exit_code == 1
    assert "NOT SCORED" in result.output


def test_score_observations_are_valid_against_their_profile(validator):
    bundle = orjson.loads(run("score", "--format", "observations", str(VALID_QR)).output)
    for entry in bundle["entry"]:
        result = validator.validate(entry["resource"])
        assert result.valid, [(i.expression, i.message) for i in result.errors]


def test_demo_runs_every_example_as_expected():
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "every result as expected" in result.output
    assert "invalid-rating-code-0.json" in result.output


def test_demo_exits_1_when_an_example_disagrees(tmp_path, monkeypatch):
    folder = tmp_path / "dialog-questionnaire-response"
    folder.mkdir()
    (folder / "valid-actually-broken.json").write_bytes(INVALID_QR.read_bytes())
    monkeypatch.setenv("FHIR_BRIDGE_EXAMPLES_DIR", str(tmp_path))
    result = run("demo")
    assert result.exit_code == 1 and "NOT as expected" in result.output


def test_configuration_error_is_a_sentence_and_exit_3(tmp_path, monkeypatch):
    (tmp_path / "r4-core").mkdir()
    (tmp_path / "r4-core" / "structures.json").write_text("{}")
    monkeypatch.setenv("FHIR_BRIDGE_PROFILES_DIR", str(tmp_path))
    result = run("validate", str(VALID_QR))
    assert result.exit_code == 3
    assert "fhir-bridge:" in result.output


def test_console_script_runs_as_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "fhir_bridge", "validate", str(INVALID_QR)],
                          capture_output=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert b"code-invalid" in proc.stdout and b"Traceback" not in proc.stderr
