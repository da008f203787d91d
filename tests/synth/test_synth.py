"""The synthetic export generator: deterministic, consistent, valid, and dirty exactly as promised."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_bridge.cli import main
from fhir_bridge.identifiers import is_valid_nhs_number, normalise_nhs_number
from fhir_bridge.synth import SOURCES, SynthManifest, generate
from fhir_bridge.synth.dirty import FAULTS, QUIRKS
from fhir_bridge.synth.people import person

COUNT = 400


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    return generate("all", tmp_path_factory.mktemp("clean"), count=COUNT, seed=7)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    return generate("all", tmp_path_factory.mktemp("dirty"), count=COUNT, seed=7, dirty=True)


def _rows(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    # errors="replace": dirty files hold a garbage line that decodes in no encoding.
    with path.open(encoding=encoding, errors="replace", newline="") as f:
        return list(csv.DictReader(f))


def _records(manifest: SynthManifest, file: str) -> list[dict[str, str]]:
    entry = next(f for f in manifest.files if f.path == file)
    return _rows(manifest.out_dir / file, entry.encoding)


def _lines(path: Path) -> list[bytes]:
    """Physical lines as a line-numbering reader sees them: CRLF, CR and LF each end one."""
    return re.split(rb"\r\n|\r|\n", path.read_bytes())


def _files(manifest: SynthManifest) -> dict[str, bytes]:
    return {f.path: (manifest.out_dir / f.path).read_bytes() for f in manifest.files}


# -- determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("is_dirty", [False, True])
def test_same_seed_gives_the_same_bytes(tmp_path: Path, is_dirty: bool) -> None:
    first = generate("all", tmp_path / "a", count=150, seed=3, dirty=is_dirty)
    second = generate("all", tmp_path / "b", count=150, seed=3, dirty=is_dirty)
    assert _files(first) == _files(second)
    assert first.injections == second.injections


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    one = generate("rio", tmp_path / "a", count=50, seed=1)
    two = generate("rio", tmp_path / "b", count=50, seed=2)
    assert _files(one)["clients.csv"] != _files(two)["clients.csv"]


# -- counts and identifiers ----------------------------------------------------------------------

def test_main_file_of_each_source_holds_count_records(clean: SynthManifest) -> None:
    assert clean.records("rio/dialog_assessments.csv") == COUNT
    assert clean.records("vcse/sessions.csv") == COUNT
    assert clean.records("vcse/sessions.json") == COUNT
    assert clean.records("dialog-app/dialog-plus-export.csv") == COUNT
    oru = clean.out_dir.joinpath("hl7/feed.hl7").read_bytes().count(b"|ORU^R01^")
    assert oru == COUNT


def test_manifest_counts_match_the_files(clean: SynthManifest) -> None:
    for entry in clean.files:
        path = clean.out_dir / entry.path
        if path.suffix == ".csv":
            found = len(_rows(path))
        elif path.suffix == ".json":
            found = len(json.loads(path.read_bytes()))
        else:
            found = len([s for s in _lines(path) if s.startswith(b"MSH|")])
        assert found == entry.records, entry.path


def _nhs_numbers(manifest: SynthManifest) -> list[str]:
    root = manifest.out_dir
    numbers = [r["NHSNumber"] for r in _records(manifest, "rio/clients.csv")]
    numbers += [r["NHSNumber"] for r in _records(manifest, "vcse/sessions.csv")]
    numbers += [r["client"]["nhsNumber"] or "" for r in json.loads((root / "vcse/sessions.json").read_bytes())]
    numbers += re.findall(r"[|~]([0-9 ]+)\^\^\^NHS\^NH", (root / "hl7/feed.hl7").read_bytes().decode(errors="replace"))
    return [normalise_nhs_number(n).strip() for n in numbers if n]


def test_nhs_numbers_are_valid_and_in_the_test_range(clean: SynthManifest) -> None:
    numbers = _nhs_numbers(clean)
    assert len(numbers) > COUNT
    assert all(is_valid_nhs_number(n) and n.startswith("999") for n in numbers)


def test_only_the_injected_nhs_numbers_are_invalid(dirty: SynthManifest) -> None:
    invalid = [n for n in _nhs_numbers(dirty) if not is_valid_nhs_number(n)]
    injected = [i for i in dirty.injections if i.kind == "invalid-nhs-number"]
    assert len(invalid) == len(injected) == 4  # RiO clients, VCSE CSV, VCSE JSON, HL7
    assert {i.detail.split()[-6] for i in injected} == set(invalid)


def test_people_are_a_function_of_seed_and_index() -> None:
    assert person(5, 42) == person(5, 42)
    assert person(5, 42) != person(6, 42)


# -- RiO consistency -----------------------------------------------------------------------------

def test_rio_ids_are_consistent_across_files(clean: SynthManifest) -> None:
    root = clean.out_dir / "rio"
    clients = {r["ClientID"] for r in _rows(root / "clients.csv")}
    referrals = {r["ReferralID"]: r["ClientID"] for r in _rows(root / "referrals.csv")}
    assert set(referrals.values()) <= clients
    assert {r["ReferralID"] for r in _rows(root / "care_contacts.csv")} <= set(referrals)
    assert {r["ClientID"] for r in _rows(root / "key_workers.csv")} <= clients
    assessments = _rows(root / "dialog_assessments.csv")
    per_referral: dict[str, int] = {}
    for a in assessments:
        assert referrals[a["ReferralID"]] == a["ClientID"]
        per_referral[a["ReferralID"]] = per_referral.get(a["ReferralID"], 0) + 1
        assert a["Purpose"] in ("PROM", "Care planning")
        assert a["Timepoint"] in ("Assessment", "Review", "Discharge", "Other")
        assert all(v in "1234567" and len(v) <= 1 for k, v in a.items() if k.startswith("Item"))
    assert max(per_referral.values()) <= 4
    assert len({a["AssessmentID"] for a in assessments}) == len(assessments)


def test_rio_items_are_numbered_in_the_mhsds_order(clean: SynthManifest) -> None:
    header = next(csv.reader(io.StringIO((clean.out_dir / "rio/dialog_assessments.csv").read_text())))
    assert "Item06_Friendships" in header and "Item07_PartnerFamily" in header
    assert "Help06_Friendships" in header and "Help11_Meetings" in header


def test_some_vcse_people_are_rio_clients_some_with_a_typo(tmp_path: Path) -> None:
    rio = generate("rio", tmp_path / "rio", count=2000, seed=9)
    vcse = generate("vcse", tmp_path / "vcse", count=2000, seed=9)
    clients = _rows(rio.out_dir / "clients.csv")
    exact = {(c["Surname"], c["Forename"], c["DateOfBirth"], c["Postcode"]) for c in clients}
    loose = {(c["Surname"], c["DateOfBirth"], c["Postcode"]): c["Forename"] for c in clients}
    sessions = _rows(vcse.out_dir / "sessions.csv")
    keys = [(s["Surname"], s["Forename"], s["DateOfBirth"], s["Postcode"]) for s in sessions]
    assert 0.15 < sum(k in exact for k in keys) / len(keys) < 0.6
    assert any(k not in exact and loose.get((k[0], k[2], k[3]), k[1]) != k[1] for k in keys)
    missing = sum(not s["NHSNumber"] for s in sessions) / len(sessions)
    assert 0.45 < missing < 0.75


# -- DIALOG+ app ---------------------------------------------------------------------------------

APP_DOMAINS_IN_APP_ORDER = ["Mental Health", "Physical Health", "Job Situation", "Accommodation",
                            "Leisure Activities", "Partner / Family", "Friendships", "Personal Safety",
                            "Medication", "Practical Help", "Meetings"]


def test_app_csv_has_the_native_headers(clean: SynthManifest) -> None:
    expected = ["Client Name", "Date Start", "Date End"]
    for domain in APP_DOMAINS_IN_APP_ORDER:
        discussed = "Leisure Activitie Discussed" if domain == "Leisure Activities" else f"{domain} Discussed"
        expected += [f"{domain} Rank", f"{domain} Additional Help", discussed, f"{domain} Action Items"]
    path = clean.out_dir / "dialog-app/dialog-plus-export.csv"
    assert next(csv.reader(io.StringIO(path.read_text()))) == expected
    rows = _rows(path)
    assert all(re.fullmatch(r"\d\d/\d\d/\d{4}", r["Date Start"]) for r in rows)
    assert {r["Mental Health Additional Help"] for r in rows} <= {"1", "2", ""}
    assert all(", " in r["Client Name"] for r in rows)


# -- HL7 ----------------------------------------------------------------------------------------

def test_hl7_batch_parses_with_python_hl7(clean: SynthManifest) -> None:
    import hl7  # python-hl7: a declared dependency
    text = (clean.out_dir / "hl7/feed.hl7").read_bytes().decode()  # read_text would turn CR into LF
    batches = hl7.parse_file(text)
    messages = [m for batch in batches for m in batch]
    assert len(messages) == clean.records("hl7/feed.hl7")
    results = [m for m in messages if str(m.segment("MSH")[9]).startswith("ORU^R01")]
    assert len(results) == COUNT
    for m in results:
        assert m.segments("PID")
        obx = m.segments("OBX")
        assert len(obx) >= 3
        assert all(str(o[3][0][2]) in ("SCT", "L") for o in obx)
    assert {str(m.segment("MSH")[9][0][1]) for m in messages} >= {"A28", "A40", "R01"}
    assert text.startswith("FHS|") and text.rstrip("\r").endswith("FTS|1")


def test_hl7_merge_names_the_merged_record(clean: SynthManifest) -> None:
    text = (clean.out_dir / "hl7/feed.hl7").read_bytes().decode()  # read_text would turn CR into LF
    merged = re.findall(r"\rMRG\|(\d+)\^\^\^RAT\^MR", text)
    assert merged
    assert all(f"|{m}^^^RAT^MR|" in text.replace("~", "|") for m in merged)


# -- dirty mode ----------------------------------------------------------------------------------

def test_dirty_mode_injects_every_quirk_and_fault(dirty: SynthManifest) -> None:
    assert dirty.kinds() == set(QUIRKS) | set(FAULTS)
    assert {i.expect for i in dirty.injections if i.kind in FAULTS} == {"quarantine"}
    assert {i.expect for i in dirty.injections if i.kind in QUIRKS} == {"import"}


def test_clean_mode_injects_nothing(clean: SynthManifest) -> None:
    assert clean.injections == [] and clean.quirk_counts == {}


def test_dirty_file_level_quirks_are_in_the_bytes(dirty: SynthManifest) -> None:
    files = _files(dirty)
    assert files["rio/dialog_assessments.csv"].startswith(b"\xef\xbb\xbf")
    assert files["dialog-app/dialog-plus-export.csv"].startswith(b"\xef\xbb\xbf")
    for cp1252 in ("rio/clients.csv", "vcse/sessions.csv"):
        data = files[cp1252]
        assert not data.startswith(b"\xef\xbb\xbf")
        data.decode("cp1252")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        assert data.count(b"\r\n") >= dirty.records(cp1252)
    assert b"\xa3150" in files["vcse/sessions.csv"]  # £ in Windows-1252
    for empty in ("rio/key_workers.csv", "vcse/sessions-empty.csv", "dialog-app/dialog-plus-empty.csv",
                  "hl7/empty.hl7"):
        assert files[empty] == b""


def _line(manifest: SynthManifest, file: str, line: int) -> bytes:
    return _lines(manifest.out_dir / file)[line - 1]


def test_every_fault_is_where_the_manifest_says(dirty: SynthManifest) -> None:
    headers = {f.path: _lines(dirty.out_dir / f.path)[0] for f in dirty.files if f.path.endswith(".csv")}
    faults = dirty.faults()
    assert len(faults) == 31
    for fault in faults:
        if fault.kind == "empty-file":
            assert (dirty.out_dir / fault.file).stat().st_size == 0
            continue
        raw = _line(dirty, fault.file, fault.line)
        text = raw.decode("cp1252" if fault.file.endswith(("clients.csv", "sessions.csv")) else "utf-8",
                          errors="replace")
        if fault.kind == "binary-garbage":
            assert raw.startswith(b"\x00")
        elif fault.kind == "wrong-column-count":
            header = next(csv.reader([headers[fault.file].decode("utf-8-sig", errors="replace")]))
            assert len(next(csv.reader([text]))) != len(header)
        elif fault.kind == "rating-9":
            assert re.search(r'(,9,)|("rating":9)|(\|NM\|.*\|\|9\|)', text) or fault.file.endswith(".hl7")
        elif fault.kind == "impossible-date":
            assert "31/02/2024" in text or fault.file.endswith(".hl7")
        elif fault.kind == "unparseable-date":
            assert "yesterday" in text or fault.file.endswith(".hl7")
        elif fault.kind in ("missing-pid", "invalid-nhs-number"):
            assert text.startswith("MSH|") if fault.file.endswith(".hl7") else fault.detail.split()[0] in text


def test_hl7_faults_are_in_the_message_the_manifest_names(dirty: SynthManifest) -> None:
    lines = _lines(dirty.out_dir / "hl7/feed.hl7")
    for fault in dirty.faults():
        if not fault.file.endswith("feed.hl7") or fault.kind == "binary-garbage":
            continue
        message = []
        for line in lines[fault.line - 1:]:
            if message and line.startswith(b"MSH|"):
                break
            message.append(line.decode())
        text = "\r".join(message)
        expected = {"missing-pid": lambda t: "\rPID|" not in t, "rating-9": lambda t: "|NM|" in t and "||9|" in t,
                    "impossible-date": lambda t: "20240231120000" in t, "unparseable-date": lambda t: "yesterday" in t,
                    "invalid-nhs-number": lambda t: fault.detail.split()[1] in t}[fault.kind]
        assert expected(text), fault


def test_row_quirks_are_in_the_bytes(dirty: SynthManifest) -> None:
    first = {(i.file, i.kind): i for i in dirty.injections if i.expect == "import"}
    spaced = _line(dirty, "rio/clients.csv", first[("rio/clients.csv", "nhs-number-spaces")].line)
    assert re.search(rb"999 \d{3} \d{4}", spaced)
    assert _line(dirty, "rio/clients.csv", first[("rio/clients.csv", "trailing-spaces")].line).count(b"   ,")
    dmy = first[("rio/dialog_assessments.csv", "date-with-time")].line
    assert re.search(rb",\d\d/\d\d/\d{4} \d\d:\d\d:\d\d,", _line(dirty, "rio/dialog_assessments.csv", dmy))
    dup = first[("rio/dialog_assessments.csv", "duplicate-row")]
    lines = _lines(dirty.out_dir / "rio/dialog_assessments.csv")
    assert lines[dup.line - 1] == lines[dup.line - 2]
    newline_in_field = first[("vcse/sessions.csv", "quoted-newline")].line
    rows = list(csv.reader(io.StringIO((dirty.out_dir / "vcse/sessions.csv").read_bytes().decode("cp1252"),
                                       newline="")))
    assert any("\n" in r[-1] for r in rows)
    assert _line(dirty, "vcse/sessions.csv", newline_in_field).count(b'"') == 1
    helps = {r["Help01_MentalHealth"] for r in _rows(dirty.out_dir / "rio/dialog_assessments.csv", "utf-8-sig")}
    assert helps >= {"Y", "N", "Yes", "No", "1", "0", ""}
    ratings = {r["Item01_MentalHealth"] for r in _rows(dirty.out_dir / "rio/dialog_assessments.csv", "utf-8-sig")
               if r["AssessmentID"]}
    assert {"8", ""} <= ratings
    hl7_bytes = (dirty.out_dir / "hl7/feed.hl7").read_bytes()
    assert b"\nOBX|" in hl7_bytes and b"\r\nOBX|" in hl7_bytes and b"\rOBX|" in hl7_bytes


def test_dirty_generation_stays_deterministic_with_faults_when_count_is_tiny(tmp_path: Path) -> None:
    # Fewer rows than planned faults: every fault still appears (written after the last row).
    manifest = generate("all", tmp_path, count=1, seed=1, dirty=True)
    assert {i.kind for i in manifest.faults()} == set(FAULTS)


# -- command line --------------------------------------------------------------------------------

def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    manifest_file = tmp_path / "manifest.json"
    result = CliRunner().invoke(main, ["synth", "vcse", str(tmp_path / "out"), "--count", "20", "--seed", "4",
                                       "--dirty", "--manifest", str(manifest_file)])
    assert result.exit_code == 0, result.output
    assert "sessions.csv: " in result.output and "faults to quarantine" in result.output
    saved = json.loads(manifest_file.read_bytes())
    assert saved["source"] == "vcse" and saved["dirty"] and saved["injections"]


@pytest.mark.parametrize("args", [["synth", "epr", "OUT"], ["synth", "rio", "OUT/blocked/x"]])
def test_cli_refuses_with_a_sentence(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "OUT").mkdir()
    (tmp_path / "OUT/blocked").write_text("a file where a folder should be")
    result = CliRunner().invoke(main, [a.replace("OUT", str(tmp_path / "OUT")) for a in args])
    assert result.exit_code == 2
    assert result.output.startswith("fhir-bridge: ") and "Traceback" not in result.output


def test_sources_are_the_four_the_issue_names() -> None:
    assert SOURCES == ("rio", "vcse", "dialog-app", "hl7")


def test_fault_records_count_as_importers_number_them(dirty: SynthManifest) -> None:
    from fhir_bridge.formats.hl7v2 import split_batch

    messages = dict(split_batch((dirty.out_dir / "hl7/feed.hl7").read_bytes()))
    markers = {"missing-pid": "ORU^R01", "binary-garbage": "\x00", "rating-9": "||9|",
               "impossible-date": "20240231120000", "unparseable-date": "yesterday"}
    rows = list(csv.reader(io.StringIO((dirty.out_dir / "vcse/sessions.csv").read_bytes().decode("cp1252"),
                                       newline="")))
    for fault in dirty.faults():
        if fault.file == "hl7/feed.hl7":
            marker = markers.get(fault.kind) or fault.detail.split()[1]
            assert marker in messages[fault.record], fault
        elif fault.file == "vcse/sessions.csv":
            row = rows[fault.record]  # rows[0] is the header
            assert row[0].startswith("F") and row[0].endswith(fault.kind), fault
