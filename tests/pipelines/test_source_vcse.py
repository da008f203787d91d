"""The VCSE adapter end to end: synthetic exports (CSV and JSON forms) through the real pipeline
and store - counts add up, identity follows the rules, both forms give the same resources, every
injected fault is quarantined where the manifest says and every quirk imports."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.errors import InputError
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.identity import NHS_SYSTEM, demographics_of, nhs_number_of
from fhir_bridge.pipelines.ingest import Ingest, RunReport, SourceRecord
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.source_vcse import VcseSource, json_elements
from fhir_bridge.synth import SynthManifest, generate
from fhir_bridge.terminology import Terminology
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "vcse"
VCSE = Caller("8ZX01", "VCSE test partner")


@pytest.fixture(scope="module")
def source() -> VcseSource:
    terminology = Terminology.load(REPO / "terminology")
    return VcseSource(MappingEngine(load_mappings(REPO / "mappings", terminology), terminology))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    return generate("vcse", tmp_path_factory.mktemp("vcse-clean"), count=40, seed=11)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    return generate("vcse", tmp_path_factory.mktemp("vcse-dirty"), count=40, seed=11, dirty=True)


@pytest.fixture()
def bridge(tmp_path, validator):
    b = Bridge(Settings(data_dir=tmp_path), validator=validator)
    yield b
    b.close()


def run(bridge: Bridge, source: VcseSource, paths: list[Path], quarantine_dir: Path | None = None) -> RunReport:
    return Ingest(bridge, source.name, source.map, VCSE, quarantine_dir=quarantine_dir).run(source.records(paths))


def subjects(bridge: Bridge) -> set[str]:
    return {s.resource["subject"]["reference"] for s in bridge.find("QuestionnaireResponse", [])}


def mapped(source: VcseSource, path: Path) -> list[list[dict]]:
    return [source.map(r).resources for r in source.records([path])]


# -- the adapter ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_adapter_gives_the_golden_resources(source, case):
    # The golden test passes parameters.json; the adapter derives the parameter from each row.
    resources = [r for rs in mapped(source, GOLDEN / case / "input.csv") for r in rs]
    assert resources == json.loads((GOLDEN / case / "expected.json").read_text(encoding="utf-8"))


def test_csv_and_json_forms_map_to_the_same_resources(source, clean):
    from_csv = mapped(source, clean.out_dir / "sessions.csv")
    from_json = mapped(source, clean.out_dir / "sessions.json")
    assert len(from_csv) == len(from_json) == 40
    assert from_csv == from_json


def test_a_zip_of_both_forms_reads_both(source, clean, tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name in ("sessions.csv", "sessions.json"):
            out.write(clean.out_dir / name, f"export/{name}")
    records = list(source.records([archive]))
    assert [r.location for r in records[::40]] == [f"{archive}/export/sessions.csv:2",
                                                   f"{archive}/export/sessions.json:2"]
    resources = [source.map(r).resources for r in records]
    assert resources[:40] == resources[40:] == mapped(source, clean.out_dir / "sessions.csv")


def test_json_records_are_located_by_line_and_keep_their_own_text(source, clean):
    records = list(source.records([clean.out_dir / "sessions.json"]))
    assert [r.location.rsplit(":", 1)[1] for r in records[:3]] == ["2", "3", "4"]  # line 1 is "["
    assert json.loads(records[0].raw)["session"]["id"] == records[0].data["SessionID"] == "S00000001"


@pytest.mark.parametrize("text, reason", [
    (b"", "empty file"),
    (b'[\n{"client": {}, "session": {}},\n{"client": \n', "not JSON"),
    (b'{"client": {}, "session": {}}', "expected a JSON list"),
    (b"\x00\xff\xfe garbage", "not a text file"),
])
def test_a_json_file_that_is_not_a_list_of_records_is_one_failing_record(source, tmp_path, text, reason):
    path = tmp_path / "sessions.json"
    path.write_bytes(text)
    [record] = source.records([path])
    with pytest.raises(InputError, match=reason):
        source.map(record)


def test_a_json_record_without_client_or_session_fails_alone(source, tmp_path):
    good = (GOLDEN / "complete-session" / "input.csv")
    [csv_record] = source.records([good])
    path = tmp_path / "sessions.json"
    path.write_text('[\n{"session": {"id": "S1"}},\n42,\n' + json.dumps(_as_json(csv_record.data)) + "\n]\n")
    first, second, third = source.records([path])
    for bad, reason in ((first, "needs a `client` and a `session`"), (second, "not int")):
        with pytest.raises(InputError, match=reason):
            source.map(bad)
    assert (first.location, second.location, third.location) == (f"{path}:2", f"{path}:3", f"{path}:4")
    assert source.map(third).resources == source.map(csv_record).resources


def _as_json(row: dict[str, str]) -> dict:
    """The JSON form of a golden CSV row (mappings/vcse/README.md)."""
    answers = {column.removesuffix(" rating"): {"rating": int(v) if v else None,
                                                "help": {"Yes": True, "No": False}.get(row[column[:-7] + " help"])}
               for column, v in row.items() if column.endswith(" rating")}
    return {"client": {"ref": row["ClientRef"], "nhsNumber": row["NHSNumber"] or None, "surname": row["Surname"],
                       "forename": row["Forename"], "dateOfBirth": row["DateOfBirth"], "postcode": row["Postcode"]},
            "session": {"id": row["SessionID"], "date": row["SessionDate"], "worker": row["WorkerName"],
                        "organisationOds": row["OrganisationODS"], "type": row["SessionType"],
                        "chosenDomains": row["ChosenDomains"].split(";")},
            "ratings": answers, "actions": []}


def test_json_elements_give_each_element_its_line():
    assert json_elements(b'[{"a": 1},\n  {"b": [1,\n 2]}, 3\n]') == [(1, '{"a": 1}', {"a": 1}),
                                                                    (2, '{"b": [1,\n 2]}', {"b": [1, 2]}),
                                                                    (3, "3", 3)]


def test_a_misnamed_domain_column_is_an_error_not_a_lost_answer(source):
    [record] = source.records([GOLDEN / "complete-session" / "input.csv"])
    row = {**record.data, "Mental Health rating": "3"}  # wrong case: not the format's domain name
    result = source.map(SourceRecord("vcse", record.location, record.raw, row))
    assert [i.message for i in result.problems if i.is_error] == [
        f"{record.location}: column 'Mental Health rating' is not a DIALOG domain of the VCSE format "
        "(mappings/vcse/README.md)"]


def test_an_export_missing_a_domain_column_is_an_error_naming_it(source, tmp_path):
    """A CSV without 'Friendships help' would otherwise store every session without that answer."""
    with (GOLDEN / "complete-session" / "input.csv").open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    with (tmp_path / "s.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != "Friendships help"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    [record] = source.records([tmp_path / "s.csv"])
    assert any("no field 'Friendships help'" in i.message for i in source.map(record).problems if i.is_error)


def test_a_json_record_leaving_out_unanswered_domains_imports(source, tmp_path):
    [record] = source.records([GOLDEN / "complete-session" / "input.csv"])
    record_json = _as_json(record.data)
    record_json["ratings"] = {"Accommodation": {"rating": 3, "help": True}}  # nothing else asked
    (tmp_path / "s.json").write_text(json.dumps([record_json]))
    [json_record] = source.records([tmp_path / "s.json"])
    result = source.map(json_record)
    assert not [i for i in result.problems if i.is_error]
    [response] = [r for r in result.resources if r["resourceType"] == "QuestionnaireResponse"]
    assert [item["linkId"] for item in response["item"]] == ["accommodation", "accommodation.more-help"]


def test_a_midnight_birth_date_from_a_spreadsheet_is_a_date(source, tmp_path):
    text = (GOLDEN / "complete-session" / "input.csv").read_text().replace("23/09/1986", "23/09/1986 00:00")
    (tmp_path / "s.csv").write_text(text)
    [[patient, _]] = mapped(source, tmp_path / "s.csv")
    assert patient["birthDate"] == "1986-09-23"


# -- end to end through Ingest -------------------------------------------------------------------
def test_clean_export_end_to_end(bridge, source, clean):
    sessions = list(source.records([clean.out_dir / "sessions.csv"]))
    report = run(bridge, source, [clean.out_dir / "sessions.csv"])
    held = report.quarantined["identity-review"]
    assert report.records_in == 40 and report.balanced
    assert set(report.quarantined) <= {"identity-review"}
    assert report.counts["created"] + report.counts["updated"] + report.counts["unchanged"] == 40 - held
    waiting = {r.source_key for r in bridge.repository.reviews()}
    assert len(waiting) == held  # one review per waiting session: none overwrites another
    linked = without = 0
    for record in sessions:
        patient, response = source.map(record).resources
        if record.source_key in waiting:
            assert not record.data["NHSNumber"]  # only those without an NHS number wait
            continue
        stored = bridge.repository.read("QuestionnaireResponse", response["id"]).resource
        subject = bridge.repository.read("Patient", stored["subject"]["reference"].split("/")[1]).resource
        if record.data["NHSNumber"]:  # linked by NHS number: the one Patient holding it
            assert nhs_number_of(subject) == record.data["NHSNumber"]
            linked += 1
        else:  # the exact same name, birth date and postcode, or a new Patient of its own
            assert demographics_of(subject) == demographics_of(patient)
            without += 1
    assert linked and without  # the seed gives both kinds
    nhs_numbers = {r.data["NHSNumber"] for r in sessions if r.data["NHSNumber"]}
    for number in nhs_numbers:  # one Patient per person
        assert len(bridge.find("Patient", [("identifier", f"{NHS_SYSTEM}|{number}")])) == 1

    again = run(bridge, source, [clean.out_dir / "sessions.json"])  # the same sessions, as JSON
    assert again.records_in == 40 and again.balanced
    assert again.counts["created"] == again.counts["updated"] == 0
    assert again.counts["unchanged"] == 40 - held and again.quarantined == report.quarantined


def test_dirty_export_quarantines_every_fault_by_location_and_imports_every_quirk(bridge, source, dirty,
                                                                                      tmp_path):
    report = run(bridge, source, [dirty.out_dir], quarantine_dir=tmp_path / "q")
    assert report.balanced
    assert report.records_in == sum(f.records for f in dirty.files) + 1  # the empty file is one record
    entries = [json.loads(line) for f in (tmp_path / "q").glob("*.jsonl") for line in f.read_text().splitlines()]
    faulty = {e["location"]: e for e in entries if e["reason"] != "identity-review"}
    expected = {f"{dirty.out_dir}/{fault.file}:{fault.line}" for fault in dirty.faults()}
    assert set(faulty) == expected  # every fault, by location, and nothing else
    assert all(e["reason"] == "mapping" for e in faulty.values())
    assert not [e for e in faulty.values() if any(i["code"] == "exception" for i in e["outcome"]["issue"])]
    stored = sum(report.counts.values())
    assert stored + report.quarantined["identity-review"] == report.records_in - len(expected)


def test_without_nhs_number_exact_details_link_and_weaker_ones_wait_for_review(bridge, source, tmp_path):
    [first] = source.records([GOLDEN / "without-nhs-number" / "input.csv"])
    row = first.data
    # The same person at another organisation (exact name, birth date, postcode), then someone
    # who only shares the family name and birth date.
    rows = [row, {**row, "OrganisationODS": "8ZX02", "ClientRef": "8ZX02-77", "SessionID": "S9"},
            {**row, "Forename": "Danny", "ClientRef": "8ZX01-0500999", "SessionID": "S10"}]
    path = tmp_path / "sessions.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerows(rows)
    report = run(bridge, source, [path])
    assert dict(report.counts) == {"created": 2} and report.quarantined == {"identity-review": 1}
    [patient] = [s.resource for s in bridge.find("Patient", [])]  # one Patient: the second session linked
    assert subjects(bridge) == {f"Patient/{patient['id']}"}
    assert {i["system"].rsplit("/", 1)[1] for i in patient["identifier"]} == {"8ZX01", "8ZX02"}
    [review] = bridge.repository.reviews()
    assert review.source_key == "8ZX01/8ZX01-0500999/S10" and review.candidates == (patient["id"],)
