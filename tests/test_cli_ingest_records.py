"""`fhir-bridge quarantine` and `identity` commands over a real store."""
from __future__ import annotations

from click.testing import CliRunner

from fhir_bridge.bridge import Bridge
from fhir_bridge.cli import main
from fhir_bridge.config import Settings
from fhir_bridge.store.ingest_records import QuarantineEntry, Review


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def test_quarantine_list_and_show(tmp_path, monkeypatch, validator):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    bridge = Bridge(Settings(data_dir=tmp_path), validator=validator)
    bridge.repository.quarantine_record(QuarantineEntry(
        "q-1", "run-1", "rio", "assessments.csv:17", "validation", "9,Ng,\u00a3".encode(),
        b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"value","diagnostics":"rating 9"}]}', 1))
    bridge.close()
    listed = run("quarantine", "list")
    assert listed.exit_code == 0 and "assessments.csv:17" in listed.output and "1 quarantined" in listed.output
    shown = run("quarantine", "show", "q-1")
    assert shown.exit_code == 0 and "9,Ng,\u00a3" in shown.output and "rating 9" in shown.output
    missing = run("quarantine", "show", "nope")
    assert missing.exit_code == 2 and "no quarantined record" in missing.output


def test_identity_review_and_link_new(tmp_path, monkeypatch, validator):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    bridge = Bridge(Settings(data_dir=tmp_path), validator=validator)
    waiting = b'{"location":"x.csv:2","resources":[{"resourceType":"Patient","id":"p-new","name":[{"family":"Ng"}]}]}'
    bridge.repository.add_review(Review("r-1", "vcse", "C-2", "similar Patients found", ("a",), waiting, 1))
    bridge.close()
    listed = run("identity", "review")
    assert "vcse:C-2" in listed.output and "Patient/a" in listed.output
    assert run("identity", "link", "r-1").exit_code == 2  # neither a patient nor --new
    linked = run("identity", "link", "r-1", "--new")
    assert linked.exit_code == 0 and "created" in linked.output
    assert "0 open review(s)" in run("identity", "review").output
