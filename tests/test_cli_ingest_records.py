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


def test_quarantine_retry_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    assert run("quarantine", "retry").exit_code == 2                      # nothing named
    assert run("quarantine", "retry", "q-1", "--all").exit_code == 2      # both
    assert run("quarantine", "retry", "--source", "epr").exit_code == 2   # no such source
    missing = run("quarantine", "retry", "nope")
    assert missing.exit_code == 2 and "no quarantined record nope" in missing.output
    nothing = run("quarantine", "retry", "--all")
    assert nothing.exit_code == 0 and "nothing to retry" in nothing.output


def test_quarantine_retry_after_the_mapping_is_fixed(tmp_path, monkeypatch):
    import shutil

    from tests.conftest import REPO

    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings" / "vcse", mappings / "vcse")
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FHIR_BRIDGE_MAPPINGS_DIR", str(mappings))
    good = (REPO / "tests" / "golden" / "vcse" / "complete-session" / "input.csv").read_text(encoding="utf-8-sig")
    (tmp_path / "sessions.csv").write_text(good.replace(",DIALOG+,", ",DIALOG Plus,"), encoding="utf-8")
    (tmp_path / "empty.csv").write_bytes(b"")
    assert run("import", "vcse", str(tmp_path / "sessions.csv"), str(tmp_path / "empty.csv"),
               "--organization", "8ZX01").exit_code == 1
    session_id = next(line.split()[0] for line in run("quarantine", "list").output.splitlines() if "sessions.csv:2" in line)

    still = run("quarantine", "retry", "--all")
    assert still.exit_code == 1 and "still quarantined: validation: QuestionnaireResponse/" in still.output
    assert "cannot be retried: " in still.output and "import it again" in still.output
    assert "1 in = 0 created + 0 updated + 0 unchanged + 1 quarantined" in still.output
    assert "retried 1: 0 resolved, 1 still quarantined; 1 cannot be retried" in still.output

    session_yaml = mappings / "vcse" / "session.yaml"
    session_yaml.write_text(session_yaml.read_text().replace(
        '      "DIALOG+": {code: care-planning', '      "DIALOG Plus": {code: care-planning, display: DIALOG+ care-planning session}\n'
                                             '      "DIALOG+": {code: care-planning'))
    fixed = run("quarantine", "retry", session_id)
    assert fixed.exit_code == 0 and "resolved: created (run " in fixed.output
    assert "retried 1: 1 resolved, 0 still quarantined" in fixed.output
    again = run("quarantine", "retry", session_id)
    assert again.exit_code == 0 and "resolved already" in again.output and "retried 0" in again.output
    assert session_id in run("quarantine", "list", "--state", "resolved").output
    assert "resolved by run " in run("quarantine", "show", session_id).output
    assert "1 quarantined record(s)" in run("quarantine", "list").output  # the empty file, until it is sent again


def test_a_row_fixed_at_its_source_and_imported_again_closes_its_quarantine_entry(tmp_path, monkeypatch):
    """Found by its record key (VCSE: organisation and session id), not its line: the fixed export
    has another session above it. Retrying the entry could not help: it holds the bad row."""
    from tests.conftest import REPO

    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    header, row = (REPO / "tests" / "golden" / "vcse" / "complete-session" / "input.csv").read_text(
        encoding="utf-8-sig").splitlines()[:2]
    export = tmp_path / "sessions.csv"
    export.write_text(f"{header}\n{row.replace(',DIALOG+,3,Yes,', ',DIALOG+,9,Yes,')}\n", encoding="utf-8")
    bad = run("import", "vcse", str(export), "--organization", "8ZX01")
    assert bad.exit_code == 1 and "1 quarantined" in bad.output
    other = row.replace("S00000101", "S00000100").replace("06/02/2024", "01/02/2024")
    export.write_text(f"{header}\n{other}\n{row}\n", encoding="utf-8")
    fixed = run("import", "vcse", str(export), "--organization", "8ZX01")
    assert fixed.exit_code == 0 and "0 quarantined" in fixed.output
    assert "resolved 1 quarantine entries of earlier imports" in fixed.output
    assert "sessions.csv:2" in run("quarantine", "list", "--state", "resolved").output
    assert "0 quarantined record(s)" in run("quarantine", "list").output


def test_quarantine_close_by_hand(tmp_path, monkeypatch, validator):
    """A person closes entries not to be stored, saying why; retries of every open entry leave
    them alone; the same record quarantined again opens its entry again."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    bridge = Bridge(Settings(data_dir=tmp_path), validator=validator)
    outcome = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"value","diagnostics":"x"}]}'
    entry = QuarantineEntry("q-1", "run-1", "rio", "$ingest/clients.csv:3", "mapping", b"a,b", outcome, 1)
    bridge.repository.quarantine_record(entry)
    bridge.close()
    assert run("quarantine", "close", "q-1").exit_code == 2                      # no reason
    assert run("quarantine", "close", "q-1", "--reason", " ").exit_code == 2
    missing = run("quarantine", "close", "q-1", "nope", "--reason", "test data")
    assert missing.exit_code == 2 and "no quarantined record nope" in missing.output
    assert "1 quarantined" in run("quarantine", "list").output                   # nothing closed meanwhile
    closed = run("quarantine", "close", "q-1", "--reason", "test record sent by mistake")
    assert closed.exit_code == 0 and "q-1: closed" in closed.output
    assert "0 quarantined" in run("quarantine", "list").output
    assert "q-1  closed" in run("quarantine", "list", "--state", "closed").output
    shown = run("quarantine", "show", "q-1")
    assert "closed by run" in shown.output and ": test record sent by mistake" in shown.output
    again = run("quarantine", "close", "q-1", "--reason", "twice")
    assert again.exit_code == 1 and "not open (closed)" in again.output
    assert "nothing to retry" in run("quarantine", "retry", "--all").output
    bridge = Bridge(Settings(data_dir=tmp_path), validator=validator)
    try:
        bridge.repository.quarantine_record(entry)                                # the same record, a later import
        assert bridge.repository.quarantine_entry("q-1").state == "open"
    finally:
        bridge.close()
