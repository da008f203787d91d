"""`fhir-bridge import dialog-app`: the whole pipeline from a real CSV file to the store."""
from __future__ import annotations

import csv
import io
import zipfile

from click.testing import CliRunner

from fhir_bridge.cli import main
from tests.conftest import REPO, synthetic_exports

GOLDEN = REPO / "tests" / "golden" / "dialog-app"


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def test_app_sessions_wait_for_identity_review_then_store(tmp_path, monkeypatch):
    """The app export has a name and no NHS number or birth date: never enough to link safely."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    csv = GOLDEN / "complete-session" / "input.csv"
    first = run("import", "dialog-app", str(csv), "--organization", "RV3")
    assert first.exit_code == 1 and "2 in = 0 created + 0 updated + 0 unchanged + 2 quarantined" in first.output
    assert "identity-review: 2" in first.output
    again = run("import", "dialog-app", str(csv), "--organization", "RV3")
    assert again.exit_code == 1
    reviews = run("identity", "review").output
    assert "2 open review(s)" in reviews  # the same sessions again are not doubled
    [okafor] = [line.split()[0] for line in reviews.splitlines() if "dialog-app:Okafor" in line]
    linked = run("identity", "link", okafor, "--new")  # a session that agreed nothing: only its ratings
    assert linked.exit_code == 0 and "created" in linked.output
    assert "1 open review(s)" in run("identity", "review").output


def test_an_app_export_with_a_rank_column_renamed_is_quarantined_naming_it(tmp_path, monkeypatch):
    """Not held for review and stored later without that domain's rating."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    renamed = tmp_path / "export.csv"
    text = (GOLDEN / "complete-session" / "input.csv").read_bytes().decode("utf-8-sig")
    renamed.write_text(text.replace("Friendships Rank", "Friends Rank", 1), encoding="utf-8")
    result = run("import", "dialog-app", str(renamed), "--organization", "RV3")
    assert result.exit_code == 1 and "quarantined, mapping: 2" in result.output
    assert "no field 'Friendships Rank'" in run("quarantine", "list").output + run(
        "quarantine", "show", run("quarantine", "list").output.split()[0]).output


def test_an_app_session_the_plan_refuses_at_identity_link_says_why(tmp_path, monkeypatch):
    """Rosa's session agreed actions; as a new person she has no plan, and the app names no key worker."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path))
    run("import", "dialog-app", str(GOLDEN / "complete-session" / "input.csv"), "--organization", "RV3")
    [rosa] = [line.split()[0] for line in run("identity", "review").output.splitlines() if "Pemberton" in line]
    linked = run("identity", "link", rosa, "--new")
    assert linked.exit_code == 1 and f"review {rosa}: quarantined:session" in linked.output
    assert "the DIALOG+ session was refused" in linked.output and "key worker" in linked.output
    [entry] = [line.split()[0] for line in run("quarantine", "list").output.splitlines() if "session" in line]
    assert f"fhir-bridge quarantine retry {entry}" in linked.output
    assert "1 open review(s)" in run("identity", "review").output  # Okafor's; Rosa's person is decided


def test_bad_rows_and_files_are_quarantined_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    header, good = list(csv.reader(io.StringIO((GOLDEN / "complete-session" / "input.csv").read_text(encoding="utf-8-sig"))))[:2]
    nine = list(good)
    nine[header.index("Mental Health Rank")] = "9"
    bad = tmp_path / "export.csv"
    with bad.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([header, good, nine])
        out.write("too,few\r\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run("import", "dialog-app", str(bad), str(empty), "--organization", "RV3")
    assert result.exit_code == 1
    assert "4 in = 0 created + 0 updated + 0 unchanged + 4 quarantined" in result.output
    assert "mapping: 3" in result.output and "identity-review: 1" in result.output
    listed = run("quarantine", "list").output
    assert f"{bad}:3" in listed and f"{bad}:4" in listed and f"{empty}:1" in listed
    saved = list((tmp_path / "data" / "quarantine").glob("*.jsonl"))
    assert len(saved) == 1 and len(saved[0].read_text().splitlines()) == 3


def test_a_rio_export_imports_and_a_second_run_changes_nothing(tmp_path, monkeypatch):
    from fhir_bridge.synth import generate

    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    generate("rio", tmp_path / "export", count=20, seed=4)
    first = run("import", "rio", str(tmp_path / "export"), "--organization", "RV3")
    assert first.exit_code == 0, first.output
    total = first.output.split(" in = ")[0].rsplit(" ", 1)[1]
    assert f"{total} in = {total} created" in first.output
    again = run("import", "rio", str(tmp_path / "export"), "--organization", "RV3")
    assert f"{total} in = 0 created + 0 updated + {total} unchanged + 0 quarantined" in again.output


def test_a_vcse_export_imports_csv_then_json_unchanged(tmp_path, monkeypatch):
    """The same sessions as CSV and as JSON are the same records: the second import changes nothing."""
    from fhir_bridge.synth import generate

    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    generate("vcse", tmp_path / "export", count=15, seed=11)
    first = run("import", "vcse", str(tmp_path / "export" / "sessions.csv"), "--organization", "X1A2B")
    assert first.exit_code == 0 and "15 in = 15 created + 0 updated + 0 unchanged + 0 quarantined" in first.output
    second = run("import", "vcse", str(tmp_path / "export" / "sessions.json"), "--organization", "X1A2B")
    assert second.exit_code == 0 and "15 in = 0 created + 0 updated + 15 unchanged + 0 quarantined" in second.output


def test_standard_input_imports_as_the_file_would(tmp_path, monkeypatch):
    """`-` reads standard input: an HL7 feed, a VCSE export as CSV or JSON (told apart by its
    content), a RiO export as a zip; the same records as from the files (all unchanged after)."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    exports = synthetic_exports(tmp_path, 2, hl7=10, vcse=8, rio=6)
    cases = [("hl7", "X1A2B", exports["hl7"].read_bytes(), exports["hl7"]),
             ("vcse", "X1A2B", (exports["vcse"] / "sessions.json").read_bytes(), exports["vcse"] / "sessions.csv"),
             ("rio", "RV3", exports["rio.zip"].read_bytes(), exports["rio"])]
    for source, organization, piped, same_as_file in cases:
        result = CliRunner().invoke(main, ["import", source, "-", "--organization", organization], input=piped)
        assert result.exit_code == 0 and " 0 quarantined" in result.output, (source, result.output)
        total = result.output.split(" in = ")[0].rsplit(" ", 1)[1]
        assert int(total) > 0
        again = run("import", source, str(same_as_file), "--organization", organization)
        assert f"{total} in = 0 created + 0 updated + {total} unchanged + 0 quarantined" in again.output, source


def test_a_bad_row_from_standard_input_is_located_in_stdin_and_kept_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    text = (GOLDEN / "complete-session" / "input.csv").read_bytes().decode("utf-8-sig")
    bad = text.replace("Friendships Rank", "Friends Rank", 1).encode()
    for _ in range(2):
        result = CliRunner().invoke(main, ["import", "dialog-app", "-", "--organization", "RV3"], input=bad)
        assert result.exit_code == 1 and "quarantined, mapping: 2" in result.output
    listed = run("quarantine", "list").output
    assert listed.count("stdin.csv:") == 2 and "fhir-bridge-stdin-" not in listed


def test_an_incomplete_export_on_standard_input_is_named_by_what_was_sent_and_resolved_when_sent_whole(
        tmp_path, monkeypatch):
    """A file-level fault from standard input names `stdin.zip`, not the temporary file it was
    spooled to, in its reason and in the file it is about: so the whole export piped later resolves it."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    exports = synthetic_exports(tmp_path, 2, hl7=1, vcse=1, rio=4)
    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(exports["rio.zip"]) as whole, zipfile.ZipFile(partial, "w") as out:
        for name in whole.namelist():
            if name != "dialog_assessments.csv":
                out.writestr(name, whole.read(name))
    first = CliRunner().invoke(main, ["import", "rio", "-", "--organization", "RV3"], input=partial.read_bytes())
    assert first.exit_code == 1 and "quarantined" in first.output, first.output
    listed = run("quarantine", "list").output
    assert "stdin.zip" in listed and "fhir-bridge-stdin-" not in listed
    whole = CliRunner().invoke(main, ["import", "rio", "-", "--organization", "RV3"], input=exports["rio.zip"].read_bytes())
    assert whole.exit_code == 0 and "resolved" in whole.output, whole.output
    assert "dialog_assessments" not in run("quarantine", "list").output


def test_a_path_that_does_not_exist_or_a_blank_organization_is_a_usage_error(tmp_path, monkeypatch):
    """Said at once, exit 2, rather than a run that quarantines an entry no retry can resolve or
    fails every record for its blank organisation."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    missing = run("import", "rio", str(tmp_path / "nowhere"), "--organization", "RV3")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    blank = run("import", "vcse", str(tmp_path), "--organization", " ")
    assert blank.exit_code == 2 and "not an ODS code" in blank.output
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_rio_extract_files_named_one_by_one_import_and_a_csv_on_standard_input_asks_for_a_zip(tmp_path, monkeypatch):
    """Named one by one (the shell's `*.csv`), a RiO export's files are one export: no "missing"
    faults, exit 0. On standard input a lone CSV cannot say which extract it is: one fault saying
    to send a zip, exit 1."""
    from fhir_bridge.synth import generate

    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    generate("rio", tmp_path / "export", count=5, seed=4)
    files = sorted(str(p) for p in (tmp_path / "export").glob("*.csv"))
    named = run("import", "rio", *files, "--organization", "RV3")
    assert named.exit_code == 0 and " 0 quarantined" in named.output, named.output
    piped = CliRunner().invoke(main, ["import", "rio", "-", "--organization", "RV3"],
                               input=(tmp_path / "export" / "clients.csv").read_bytes())
    assert piped.exit_code == 1 and "1 in = 0 created" in piped.output, piped.output
    entry = run("quarantine", "list").output.split()[0]
    assert "stdin.csv is not a RiO extract" in run("quarantine", "show", entry).output
