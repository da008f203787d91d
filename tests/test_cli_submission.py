"""`fhir-bridge submission mhsds` and `submission list`: a RiO export imported, then submitted for
a month; readable errors and exit codes, never a traceback."""
from __future__ import annotations

from click.testing import CliRunner

from fhir_bridge.cli import main
from fhir_bridge.submission import load_schema, validate_xml
from fhir_bridge.synth import generate
from tests.conftest import REPO


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def test_a_month_imported_from_rio_is_submitted_and_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    generate("rio", tmp_path / "export", count=120, seed=4)
    assert run("import", "rio", str(tmp_path / "export"), "--organization", "RV3").exit_code == 0

    first = run("submission", "mhsds", "--period", "2022-06", "--provider", "RV3", "--out", str(tmp_path / "out"),
                "--by", "Asha Patel (MHSDS lead)")
    assert first.exit_code == 0, first.output
    assert "MHSDS submission RV3 2022-06:" in first.output and "records left out:" in first.output
    [xml] = (tmp_path / "out").glob("*.xml")
    assert validate_xml(load_schema(REPO / "mappings" / "mhsds-out" / "mhsds-dialog.xsd"), xml) is None
    assert len(list((tmp_path / "out").glob("*-quality.*"))) == 2
    assert (tmp_path / "out" / f"{xml.stem}-csv" / "MHS001MPI.csv").exists()

    again = run("submission", "mhsds", "--period", "2022-06", "--provider", "rv3", "--out", str(tmp_path / "out"))
    assert again.exit_code == 0 and "resubmission #2 of 2022-06: the same data as submission" in again.output
    listed = run("submission", "list", "--period", "2022-06")
    assert listed.exit_code == 0 and "2 submission(s)" in listed.output
    assert "by Asha Patel (MHSDS lead)  first" in listed.output and "resubmission #2 (same data as" in listed.output
    assert "0 submission(s)" in run("submission", "list", "--provider", "RYY").output


def test_bad_input_is_a_sentence_and_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    month = run("submission", "mhsds", "--period", "October", "--provider", "RV3")
    assert month.exit_code == 2 and "is not a reporting period: give a month as YYYY-MM" in month.output
    provider = run("submission", "mhsds", "--period", "2026-10", "--provider", "R-V3", "--out", str(tmp_path / "o"))
    assert provider.exit_code == 2 and "OrgIDProvider" in provider.output and "ODS code" in provider.output
    setting = CliRunner().invoke(main, ["submission", "list"], env={"FHIR_BRIDGE_MHSDS_DIALOG_RECORDERS": "some"})
    assert setting.exit_code == 2 and "FHIR_BRIDGE_MHSDS_DIALOG_RECORDERS must be one of any, provider" in setting.output


def test_a_broken_mapping_is_a_configuration_error_naming_the_file(tmp_path, monkeypatch):
    mappings = tmp_path / "mappings"
    (mappings / "mhsds-out").mkdir(parents=True)
    (mappings / "mhsds-out" / "mhsds-dialog.xsd").write_bytes((REPO / "mappings/mhsds-out/mhsds-dialog.xsd").read_bytes())
    text = (REPO / "mappings/mhsds-out/mhsds-dialog.yaml").read_text().replace("codes: gender", "codes: sex")
    (mappings / "mhsds-out" / "mhsds-dialog.yaml").write_text(text)
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FHIR_BRIDGE_MAPPINGS_DIR", str(mappings))
    result = run("submission", "mhsds", "--period", "2026-10", "--provider", "RV3")
    assert result.exit_code == 3
    assert "mhsds-dialog.yaml: tables.MHS001MPI.fields.Gender: unknown code table 'sex'" in result.output
