"""The submission mapping and its XSD are data, checked whole at load: every mistake fails with the
file and the rule. Tiny broken copies of the shipped files show each check; the paths they use
are a small closed syntax."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.submission import load_schema, load_submission_mapping
from fhir_bridge.submission.paths import PathError, compile_path, first
from tests.conftest import REPO

SHIPPED = REPO / "mappings" / "mhsds-out"


def registry_lookup(validator):
    from fhir_bridge.store.search_parameters import SearchParameterRegistry

    registry = SearchParameterRegistry.load(validator.package)

    def lookup(resource_type: str, code: str):
        found = registry.get(resource_type, code)
        return found.type if found else None
    return lookup


def test_the_shipped_mapping_loads_and_covers_every_table_and_field(validator):
    mapping = load_submission_mapping(SHIPPED / "mhsds-dialog.yaml", search_parameters=registry_lookup(validator))
    assert [t.name for t in mapping.tables] == [t.name for t in mapping.schema.tables]
    for table, xsd in zip(mapping.tables, mapping.schema.tables):
        assert [f.name for f in table.fields] == list(xsd.field_names)
    unmapped = {f"{t.name}.{f.name}" for t in mapping.tables for f in t.fields if f.kind == "unmapped"}
    assert unmapped == {"MHS001MPI.GenderIDCode", "MHS001MPI.OrgIDResidenceResp", "MHS101Referral.SourceOfReferralMH",
                        "MHS101Referral.PrimReasonReferralMH"}


def broken(tmp_path: Path, change) -> Path:
    """A copy of the shipped mapping and XSD with `change(mapping dict)` applied."""
    shutil.copy(SHIPPED / "mhsds-dialog.xsd", tmp_path / "mhsds-dialog.xsd")
    data = yaml.safe_load((SHIPPED / "mhsds-dialog.yaml").read_text())
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fields(data, table):
    return data["tables"][table]["fields"]


@pytest.mark.parametrize("change, message", [
    (lambda d: fields(d, "MHS001MPI").pop("Postcode"), r"tables\.MHS001MPI\.fields: .*missing \['Postcode'\]"),
    (lambda d: fields(d, "MHS001MPI").update(Colour={"const": "red"}), r"not in the schema \['Colour'\]"),
    (lambda d: d["tables"].pop("MHS607CodedScoreAssessmentAct"), r"tables: .*missing \['MHS607CodedScoreAssessmentAct'\]"),
    (lambda d: fields(d, "MHS001MPI")["Gender"].update(transform="shout"), r"MHS001MPI\.fields\.Gender: unknown transform 'shout'"),
    (lambda d: fields(d, "MHS001MPI")["Gender"].update(check="plausible"), r"Gender: unknown check 'plausible'"),
    (lambda d: fields(d, "MHS001MPI")["Gender"].update(codes="sex"), r"Gender: unknown code table 'sex'"),
    (lambda d: fields(d, "MHS001MPI").update(LocalPatientId={"unmapped": "unknown"}),
     r"LocalPatientId: the schema requires this field: it cannot be unmapped"),
    (lambda d: fields(d, "MHS006MHCareCoord").update(LocalPatientId={"row": "MHS101Referral.LocalPatientId"}),
     r"MHS006MHCareCoord\.fields\.LocalPatientId: `row: MHS101Referral\.LocalPatientId` must name a field of a table this row hangs under"),
    (lambda d: fields(d, "MHS001MPI").update(LocalPatientId={"from": "identifier[system={trust}].value"}),
     r"placeholder \{trust\} is not a declared parameter"),
    (lambda d: fields(d, "MHS001MPI").update(LocalPatientId={"from": "identifier[system=x.value"}), r"'\[' without '\]'"),
    (lambda d: fields(d, "MHS000Header").update(DatSetVer={"const": "line\nbreak"}), r"DatSetVer: the constant .* does not have the form"),
    (lambda d: d["sources"]["referral"].update(during="received"), r"sources\.referral: ServiceRequest has no date search parameter 'received'"),
    (lambda d: d["sources"]["contact"].update(patient="date"), r"sources\.contact: Encounter has no reference search parameter 'date' \(it is a date parameter\)"),
    (lambda d: d["sources"].pop("care-plan"), r"sources: source 'care-plan' is not described"),
    (lambda d: d["tables"]["MHS101Referral"].pop("opens"), r"MHS101Referral: the referral table says which fields hold the days it is open"),
    (lambda d: d["tables"]["MHS606CodedScoreAssessmentRefer"].pop("attach"), r"`attach: referral \| contact` is given for DIALOG tables"),
    (lambda d: d["tables"]["MHS201CareContact"]["keep"].append({True: "period.start"}), r"keep\[2\]: unknown key\(s\) True"),
    (lambda d: d["tables"]["MHS201CareContact"]["keep"].append({"from": "status"}), r"a condition is `from` with one of in, not-in, equals"),
    (lambda d: fields(d, "MHS001MPI")["Gender"].update(**{"after-period-end": "drop"}), r"`after-period-end: blank` is the one choice"),
])
def test_a_broken_mapping_fails_naming_the_file_and_the_rule(tmp_path, validator, change, message):
    path = broken(tmp_path, change)
    with pytest.raises(ConfigurationError, match=message) as error:
        load_submission_mapping(path, search_parameters=registry_lookup(validator))
    assert str(path) in error.value.message


@pytest.mark.parametrize("content", [b"tables: [unclosed", "name: Gr\u00e4fin".encode("cp1252"), b""],
                         ids=["bad YAML", "not UTF-8", "missing"])
def test_a_mapping_file_that_cannot_be_read_fails_naming_it(tmp_path, content):
    path = tmp_path / "odd.yaml"
    if content:
        path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=r"odd\.yaml: cannot read the mapping: ") as error:
        load_submission_mapping(path)
    assert error.value.location == str(path)


def test_a_schema_using_what_the_loader_does_not_understand_fails_naming_it(tmp_path):
    text = (SHIPPED / "mhsds-dialog.xsd").read_text()
    path = tmp_path / "odd.xsd"
    path.write_text(text.replace('<xs:pattern value="[0-9]{10}"/>', '<xs:whiteSpace value="collapse"/>'))
    with pytest.raises(ConfigurationError, match=r"odd\.xsd: simpleType NHSNumber: facet xs:whiteSpace is not understood"):
        load_schema(path)
    path.write_text("<not a schema")
    with pytest.raises(ConfigurationError, match="not a usable XML schema"):
        load_schema(path)


def test_field_checks_follow_the_schemas_simple_types():
    schema = load_schema(SHIPPED / "mhsds-dialog.xsd")
    mpi = {f.name: f for f in schema.table("MHS001MPI").fields}
    assert mpi["NHSNumberStatus"].check("07") is None and mpi["NHSNumberStatus"].check("08")
    assert mpi["Postcode"].check("E1 4NS") is None and mpi["Postcode"].check("E14NS")
    assert mpi["PersonBirthDate"].check("1980-02-29") is None
    assert mpi["PersonBirthDate"].check("1981-02-29") == "is not a date"
    assert mpi["LocalPatientId"].check("a\x07b") == "holds a character XML cannot carry"
    header = {f.name: f for f in schema.table("MHS000Header").fields}
    assert header["DateTimeDatSetCreate"].check("2026-11-05T10:00:00") is None
    assert header["DateTimeDatSetCreate"].check("2026-11-05T10:00:00+00:00")
    assert not schema.table("MHS000Header").repeats and schema.table("MHS606CodedScoreAssessmentRefer").repeats


def test_paths_read_fhir_elements_with_filters():
    plan = {"extension": [{"url": "a", "extension": [{"url": "agreedBy", "valueCoding": {"code": "person"}},
                                                     {"url": "agreedBy", "valueCoding": {"code": "carer"}},
                                                     {"url": "family", "valueBoolean": False}]},
                          {"url": "b.c/d", "valueString": "dotted url"}],
            "category": [{"coding": [{"system": "x", "code": "1"}, {"system": "y", "code": "10"}]}],
            "participant": [{"role": [{"coding": [{"code": "carer"}]}], "id": 1},
                            {"role": [{"coding": [{"code": "other"}, {"code": "key-worker"}]}], "id": 2}]}
    assert list(compile_path("extension[url=a].extension[url=agreedBy].valueCoding.code")(plan)) == ["person", "carer"]
    assert first(compile_path("category.coding[system=y].code"), plan) == "10"
    assert first(compile_path("extension[url=b.c/d].valueString"), plan) == "dotted url"
    assert first(compile_path("extension[0].extension[url=family].valueBoolean"), plan) is False
    assert [p["id"] for p in compile_path("participant[role.coding.code=key-worker]")(plan)] == [2]
    assert first(compile_path("extension[5].url"), plan) is None and first(compile_path("nothing.here"), plan) is None
    assert first(compile_path("extension[url=a].extension[url=family].valueBoolean"), plan) is False
    for bad in ("", "a..b", "a[", "a]", "a[x]y", "a[=1]", "1a"):
        with pytest.raises(PathError):
            compile_path(bad)
