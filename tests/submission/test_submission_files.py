"""The files a submission leaves: valid against the XSD, the same for the same data (the creation
time aside), the XML equal to the CSV tables when read back with the hardened parser, nothing left
behind when a file would be invalid, and every run recorded so a resubmission shows."""
from __future__ import annotations

import orjson
import pytest
from lxml import etree

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.formats.xml import hardened_parser
from fhir_bridge.pipelines import submission_mhsds
from fhir_bridge.pipelines.submission_mhsds import describe_submissions
from fhir_bridge.submission import load_schema, validate_xml
from tests.conftest import REPO
from tests.submission.builders import care_plan, contact, dialog, patient, referral
from tests.submission.conftest import CREATED, add, submit, tables
from tests.submission.test_submission_golden import CASES, normalize, store

GOLDEN = CASES[0]


def month(bridge_of):
    return bridge_of(store(GOLDEN))


def test_every_file_made_is_valid_against_the_shipped_schema(store_of, tmp_path):
    result = submit(month(store_of), tmp_path / "out")
    schema = load_schema(REPO / "mappings" / "mhsds-out" / "mhsds-dialog.xsd")
    assert result.schema == schema.path
    assert validate_xml(schema, result.xml) is None
    # and the schema is really checking: a row that breaks it is caught, with its line
    broken = tmp_path / "broken.xml"
    broken.write_text(result.xml.read_text().replace("<Gender>2</Gender>", "<Gender>male</Gender>"))
    problem = validate_xml(schema, broken)
    assert problem.startswith("Element 'Gender'") and "'male'" in problem


def test_keys_and_key_references_are_checked_as_the_file_streams(store_of, tmp_path):
    result = submit(month(store_of), tmp_path / "out")
    schema = load_schema(result.schema)
    text = result.xml.read_text()
    broken = tmp_path / "broken.xml"
    broken.write_text(text.replace("<ServiceRequestId>r2</ServiceRequestId><LocalPatientId>p2-no-local-id",
                                   "<ServiceRequestId>r2</ServiceRequestId><LocalPatientId>someone-else"))
    assert validate_xml(schema, broken) == ("MHS101Referral.LocalPatientId 'someone-else' matches no row before it "
                                            "(key reference referralPerson)")
    broken.write_text(text.replace("<CareActId>7001</CareActId><CodedAssToolType>1037651000000100",
                                   "<CareActId>9999</CareActId><CodedAssToolType>1037651000000100"))
    assert "MHS607CodedScoreAssessmentAct.CareActId '9999' matches no row" in validate_xml(schema, broken)
    broken.write_text(text.replace("<LocalPatientId>p2-no-local-id</LocalPatientId><OrgIDLocalPatientId>",
                                   "<LocalPatientId>1001</LocalPatientId><OrgIDLocalPatientId>"))
    assert validate_xml(schema, broken) == "MHS001MPI.LocalPatientId '1001' appears twice (key person)"
    # a reference to a later table could not be checked in one pass: the schema is refused
    odd = tmp_path / "odd.xsd"
    odd.write_text(schema.path.read_text().replace(
        '<xs:keyref name="coordinatorPerson" refer="person">', '<xs:keyref name="coordinatorPerson" refer="referral">'))
    with pytest.raises(ConfigurationError, match="keyref coordinatorPerson: refers to 'referral', which must be a key of an earlier table"):
        load_schema(odd)


def test_the_same_data_makes_the_same_file_apart_from_its_creation_time(store_of, tmp_path):
    bridge = month(store_of)
    first = submit(bridge, tmp_path / "one", created=CREATED, submission_id="a")
    second = submit(bridge, tmp_path / "two", created=CREATED + 3_600_000_000, submission_id="b")
    assert first.xml.read_bytes() != second.xml.read_bytes()           # the header's creation time
    assert normalize(first.xml.read_text()) == normalize(second.xml.read_text())
    assert first.record.content_sha256 == second.record.content_sha256
    assert first.record.file_sha256 != second.record.file_sha256
    for name in tables(first):
        if name != "MHS000Header":
            assert (first.csv_folder / f"{name}.csv").read_bytes() == (second.csv_folder / f"{name}.csv").read_bytes()


def test_the_xml_read_back_with_the_hardened_parser_equals_the_tables(store_of, tmp_path):
    result = submit(month(store_of), tmp_path / "out")
    root = etree.parse(str(result.xml), hardened_parser()).getroot()
    assert root.tag == "MHSDSSubmission" and root.get("schemaVersion") == "1.0"
    from_xml: dict[str, list[dict]] = {}
    for row in root:
        from_xml.setdefault(row.tag, []).append({field.tag: field.text for field in row})
    from_csv = {name: [{k: v for k, v in r.items() if v} for r in rows] for name, rows in tables(result).items()}
    assert {k: v for k, v in from_csv.items() if v} == from_xml
    assert sum(map(len, from_xml.values())) == sum(result.rows.values())
    # every row hangs under a row of the file (MHS606/607 have no key references in the XSD)
    referrals = {r["ServiceRequestId"] for r in from_xml["MHS101Referral"]}
    activities = {r["CareActId"] for r in from_xml["MHS202CareActivity"]}
    assert {r["ServiceRequestId"] for r in from_xml["MHS606CodedScoreAssessmentRefer"]} <= referrals
    assert {r["CareActId"] for r in from_xml["MHS607CodedScoreAssessmentAct"]} <= activities


def test_a_file_that_would_not_validate_is_never_left(store_of, tmp_path, monkeypatch):
    monkeypatch.setattr(submission_mhsds, "validate_xml", lambda schema, path: "an invented problem")
    out = tmp_path / "out"
    with pytest.raises(ConfigurationError, match=r"does not validate .*\(an invented problem\); nothing was written"):
        submit(month(store_of), out)
    assert list(out.iterdir()) == []   # no XML, no tables, no report, no temporary folder
    assert not month(store_of).repository.submissions()


def test_every_run_is_recorded_and_a_resubmission_shows_whether_its_data_changed(store_of, tmp_path):
    bridge = month(store_of)
    first = submit(bridge, tmp_path / "out", submission_id="first")
    submit(bridge, tmp_path / "out", created=CREATED + 60_000_000, submission_id="same")
    add(bridge, [dialog("late", "p1-rio-client", authored="2026-10-30T09:00:00Z", timepoint="discharge",
                        written="2026-11-06T09:00:00Z")])
    changed = submit(bridge, tmp_path / "out", created=CREATED + 120_000_000, submission_id="changed")
    assert not first.earlier and [e.submission_id for e in changed.earlier] == ["first", "same"]
    records = bridge.repository.submissions(provider="RXX", period="2026-10")
    assert [r.submission_id for r in records] == ["first", "same", "changed"]
    record = records[0]
    assert (record.provider, record.period, record.created_by, record.created) == ("RXX", "2026-10", "test", CREATED)
    assert record.file_name == first.xml.name and len(record.file_sha256) == 64
    assert orjson.loads(record.counts)["rows"]["MHS001MPI"] == 2
    assert orjson.loads(record.settings)["purposes"] == ["prom"]
    described = describe_submissions(records)
    assert [(d["number"], d["sameDataAs"], d["changedSince"]) for d in described] == [
        (1, None, None), (2, "first", None), (3, None, "same")]
    assert len(list((tmp_path / "out").glob("*.xml"))) == 3   # each run keeps its own file


def test_the_quality_report_comes_as_json_and_html_with_every_record_left_out(store_of, tmp_path):
    result = submit(month(store_of), tmp_path / "out")
    report = orjson.loads(result.report_json.read_bytes())
    assert report["submission"]["file"] == result.xml.name and report["submission"]["valid"] is True
    assert report["leftOut"]["count"] == len(report["leftOut"]["records"]) == result.left_out
    page = result.report_html.read_text()
    assert "Content-Security-Policy" in page and "QuestionnaireResponse/d4" in page
    assert "possible duplicate" in page and "People with a named key worker" in page


def test_a_value_that_would_break_the_xml_is_never_written(store_of, tmp_path):
    # A control character in an id: XML 1.0 cannot carry it at all. The record is left out.
    bad = referral("r-bad", "p", received="2026-10-01", local="50\x0701")
    bridge = store_of([patient("p", client="9"), bad, contact("c", "p", "r-bad", start="2026-10-02", local="7\x01"),
                       care_plan("pl", "p", plan_type="15")])
    result = submit(bridge, tmp_path / "out")
    assert validate_xml(load_schema(result.schema), result.xml) is None
    assert result.rows["MHS101Referral"] == 0 and result.rows["MHS001MPI"] == 0


def test_text_is_escaped_when_the_xml_is_written(tmp_path):
    from fhir_bridge.submission import Row, TableFiles, write_xml

    schema = load_schema(REPO / "mappings" / "mhsds-out" / "mhsds-dialog.xsd")
    tables = TableFiles(schema, tmp_path / "csv")
    tables.write("MHS000Header", [Row(("v1", "RXX", "RXX", 'fhir & "bridge" <1.0>', "2026-10-01", "2026-10-31",
                                       "2026-11-05T10:00:00"))])
    tables.close()
    write_xml(schema, tables, tmp_path / "out.xml")
    assert validate_xml(schema, tmp_path / "out.xml") is None
    root = etree.parse(str(tmp_path / "out.xml"), hardened_parser()).getroot()
    assert root.findtext("MHS000Header/PrimSystemInUse") == 'fhir & "bridge" <1.0>'
