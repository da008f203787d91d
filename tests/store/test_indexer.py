"""The indexer: resources -> index rows, dates as ranges, strings normalized, never raising on odd data."""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from fhir_bridge.fhir.package import load_package
from fhir_bridge.store.indexer import MAX_TIME, MIN_TIME, Indexer, date_range, normalize, parse_reference
from fhir_bridge.store.schema import INDEX_TABLES
from fhir_bridge.store.search_parameters import SearchParameterRegistry

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BASE = "https://bridge.example.org/fhir"


def us(text: str) -> int:
    """ISO text with offset -> microseconds since the epoch."""
    delta = datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


def example(path: str) -> dict:
    return orjson.loads((EXAMPLES / path).read_bytes())


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return Indexer(SearchParameterRegistry.load(load_package(REPO / "profiles")), base_url=BASE)


def rows_of(rows: dict, table: str, param: str) -> list[tuple]:
    return [tuple(v for k, v in row.items() if k != "param") for row in rows[table] if row["param"] == param]


@pytest.fixture
def qr() -> dict:
    return example("dialog-questionnaire-response/valid-prom-assessment-complete.json")


@pytest.fixture
def patient() -> dict:
    return example("bridge-patient/valid-patient-nhs-number-verified.json")


# -- the DIALOG examples ------------------------------------------------------------------------------
def test_dialog_response_rows(indexer, qr):
    rows = indexer.rows(qr)
    assert rows_of(rows, "token", "status") == [(None, "completed")]
    assert rows_of(rows, "token", "purpose") == [("https://fhir-bridge.example.org/CodeSystem/dialog-purpose", "prom")]
    assert rows_of(rows, "token", "timepoint") == [
        ("https://fhir-bridge.example.org/CodeSystem/dialog-timepoint", "assessment")]
    assert rows_of(rows, "reference", "subject") == [("Patient", "example-patient-01", None)]
    assert rows_of(rows, "reference", "patient") == []  # read from subject's rows to a Patient
    assert rows_of(rows, "reference", "author") == [("Practitioner", "example-key-worker-01", None)]
    assert rows_of(rows, "reference", "recording-organization") == [("Organization", "example-mh-trust", None)]
    assert rows_of(rows, "reference", "questionnaire") == [
        (None, None, "https://fhir-bridge.example.org/Questionnaire/dialog|1.0.0")]  # canonical kept whole
    assert rows_of(rows, "reference", "_profile") == [
        (None, None, "https://fhir-bridge.example.org/StructureDefinition/dialog-questionnaire-response")]
    second = us("2024-02-06T10:15:00+00:00")
    assert rows_of(rows, "date", "authored") == [(second, second + 999_999)]


def test_patient_rows(indexer, patient):
    rows = indexer.rows(patient)
    assert rows_of(rows, "token", "identifier") == [("https://fhir.nhs.uk/Id/nhs-number", "9994527819"), (
        "https://fhir-bridge.example.org/Id/example-mh-trust/local-patient-id", "RP-0047312")]
    assert rows_of(rows, "token", "gender") == [(None, "female")]
    assert rows_of(rows, "token", "deceased") == [(None, "false")]
    assert rows_of(rows, "string", "name") == [("pemberton", "Pemberton"), ("rosa", "Rosa"), ("mae", "Mae")]
    assert rows_of(rows, "string", "family") == [("pemberton", "Pemberton")]
    assert rows_of(rows, "date", "birthdate") == [(us("1986-09-23T00:00:00+00:00"),
                                                  us("1986-09-24T00:00:00+00:00") - 1)]


def test_observation_and_careplan_rows(indexer):
    rows = indexer.rows(example("dialog-score-observation/valid-item-score-mental-health.json"))
    assert ("QuestionnaireResponse", "dialog-prom-assessment-01", None) in rows_of(rows, "reference", "derived-from")
    assert ("http://snomed.info/sct", "1037651000000100") in rows_of(rows, "token", "code")
    assert rows_of(rows, "date", "date")
    plan = indexer.rows(example("dialog-plus-careplan/valid-dialog-plus-plan.json"))
    assert rows_of(plan, "token", "category") == [
        ("https://fhir-bridge.example.org/CodeSystem/mhsds-care-plan-type", "10")]
    assert rows_of(plan, "date", "date") == [(us("2024-02-20T00:00:00+00:00"), MAX_TIME)]  # open Period


def test_every_row_of_a_table_has_the_table_columns(indexer, qr, patient):
    for resource in (qr, patient, example("dialog-plus-careplan/valid-crisis-plan.json")):
        for table, rows in indexer.rows(resource).items():
            columns = {c.name for c in INDEX_TABLES[table].c} - {"resource_type", "resource_id"}
            assert all(set(row) == columns for row in rows), table


# -- dates --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, low, high", [
    ("1990", "1990-01-01T00:00:00+00:00", "1991-01-01T00:00:00+00:00"),
    ("1990-02", "1990-02-01T00:00:00+00:00", "1990-03-01T00:00:00+00:00"),
    ("2024-02", "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),   # leap year
    ("1990-06-15", "1990-06-15T00:00:00+00:00", "1990-06-16T00:00:00+00:00"),
    ("2024-02-06T10:15", "2024-02-06T10:15:00+00:00", "2024-02-06T10:16:00+00:00"),
    ("2024-02-06T10:15:00Z", "2024-02-06T10:15:00+00:00", "2024-02-06T10:15:01+00:00"),
    ("2024-02-06T10:15:00", "2024-02-06T10:15:00+00:00", "2024-02-06T10:15:01+00:00"),  # no offset: UTC
    ("2024-05-07T14:30:00+01:00", "2024-05-07T13:30:00+00:00", "2024-05-07T13:30:01+00:00"),
    ("2024-05-07T14:30:00-05:30", "2024-05-07T20:00:00+00:00", "2024-05-07T20:00:01+00:00"),
    ("2024-02-06T10:15:00.5Z", "2024-02-06T10:15:00.500000+00:00", "2024-02-06T10:15:00.600000+00:00"),
    ("2024-02-06T10:15:00.123456789Z", "2024-02-06T10:15:00.123456+00:00", "2024-02-06T10:15:00.123457+00:00"),
])
def test_partial_dates_are_ranges(text, low, high):
    assert date_range(text) == (us(low), us(high) - 1)


@pytest.mark.parametrize("text", ["yesterday", "2024-02-30", "2024-13", "2024-02-06T25:00:00Z", "24-02-06",
                                  "2024-02-06T10", "2024-02-06 10:00", ""])
def test_what_is_not_a_date_has_no_range(text):
    assert date_range(text) is None


def test_periods_and_timings(indexer):
    condition = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
                 "onsetPeriod": {"end": "2020-03"}, "abatementPeriod": {"start": "2021", "end": "2021-06-30"},
                 "recordedDate": "2021-07-01"}
    rows = indexer.rows(condition)
    assert rows_of(rows, "date", "onset-date") == [(MIN_TIME, us("2020-04-01T00:00:00+00:00") - 1)]
    assert rows_of(rows, "date", "abatement-date") == [(us("2021-01-01T00:00:00+00:00"),
                                                        us("2021-07-01T00:00:00+00:00") - 1)]
    observation = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
                   "effectiveTiming": {"event": ["2024-01-01", "2024-01-03"]}}
    assert len(rows_of(indexer.rows(observation), "date", "date")) == 2


# -- strings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("José  ÁLVAREZ ", "jose alvarez"), ("Ångström", "angstrom"),
                                            ("O'Brien", "o'brien"), ("Zoë\tvan\nDijk", "zoe van dijk"),
                                            ("ﬁnn", "finn")])
def test_normalize_folds_case_accents_and_space(text, expected):
    assert normalize(text) == expected


def test_names_and_addresses_index_every_part(indexer):
    patient = {"resourceType": "Patient", "id": "p",
               "name": [{"text": "Dr José Álvarez Jr", "family": "Álvarez", "given": ["José"], "prefix": ["Dr"],
                         "suffix": ["Jr"]}],
               "address": [{"line": ["1 High St", "Flat 2"], "city": "Leeds", "district": "West Yorkshire",
                            "postalCode": "LS1 1AA", "country": "UK", "use": "home"}],
               "telecom": [{"system": "phone", "value": "0113 000 0000"}, {"system": "email", "value": "j@x.org"}],
               "active": True}
    rows = indexer.rows(patient)
    assert [n for n, _ in rows_of(rows, "string", "name")] == ["alvarez", "jose", "dr jose alvarez jr", "dr", "jr"]
    assert [n for n, _ in rows_of(rows, "string", "address")] == [
        "1 high st", "flat 2", "leeds", "west yorkshire", "ls1 1aa", "uk"]
    assert rows_of(rows, "string", "address-city") == [("leeds", "Leeds")]
    assert rows_of(rows, "token", "phone") == [("phone", "0113 000 0000")]
    assert rows_of(rows, "token", "email") == [("email", "j@x.org")]
    assert rows_of(rows, "token", "active") == [(None, "true")]
    assert rows_of(rows, "token", "address-use") == [(None, "home")]


# -- references ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reference, expected", [
    ("Patient/p1", ("Patient", "p1", None)),
    ("Patient/p1/_history/3", ("Patient", "p1", None)),
    (f"{BASE}/Patient/p1", ("Patient", "p1", None)),
    (f"{BASE}/Patient/p1/_history/2", ("Patient", "p1", None)),
    ("https://other.example.org/fhir/Patient/p1", ("Patient", None, "https://other.example.org/fhir/Patient/p1")),
    ("urn:uuid:0b5c1d2e-0000-4000-8000-000000000001", (None, None, "urn:uuid:0b5c1d2e-0000-4000-8000-000000000001")),
])
def test_parse_reference(reference, expected):
    assert parse_reference(reference, BASE) == expected
    assert parse_reference(reference, BASE) == expected  # as remembered


def test_a_reference_parsed_on_one_base_is_not_remembered_for_another():
    local = f"{BASE}/Patient/p1"
    assert parse_reference(local, BASE) == ("Patient", "p1", None)
    assert parse_reference(local, "https://other.example.org/fhir") == ("Patient", None, local)
    assert parse_reference(local, None) == ("Patient", None, local)
    assert parse_reference(local, BASE) == ("Patient", "p1", None)


def test_reference_rows_and_the_patient_filter(indexer, qr):
    """`patient` has no rows of its own: it is `subject`'s rows to a Patient, another server's
    included (its type is kept though it has no local id)."""
    assert indexer.registry.rows_of("QuestionnaireResponse", "patient") == ("subject", "Patient")
    cases = {
        "Group/g1": ([("Group", "g1", None)], []),
        f"{BASE}/Patient/p1": ([("Patient", "p1", None)], [("Patient", "p1", None)]),
        "https://other.example.org/fhir/Patient/p1": (
            [("Patient", None, "https://other.example.org/fhir/Patient/p1")],
            [("Patient", None, "https://other.example.org/fhir/Patient/p1")]),
        "urn:uuid:0b5c1d2e-0000-4000-8000-000000000001": (
            [(None, None, "urn:uuid:0b5c1d2e-0000-4000-8000-000000000001")], []),
        "#contained": ([], []),
    }
    for reference, (subject, patient) in cases.items():
        qr["subject"] = {"reference": reference}
        rows = indexer.rows(qr)
        assert rows_of(rows, "reference", "patient") == []
        assert rows_of(rows, "reference", "subject") == subject
        assert [row for row in subject if row[0] == "Patient"] == patient
    qr["author"] = {"reference": "https://other.example.org/fhir/Practitioner/x"}  # no parameter reads author's rows
    assert rows_of(indexer.rows(qr), "reference", "author") == [(None, None, "https://other.example.org/fhir/Practitioner/x")]
    qr["subject"] = {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9994527819"}}
    assert rows_of(indexer.rows(qr), "reference", "subject") == []  # a logical reference points at nothing here


def test_provenance_target_versions_index_the_resource(indexer):
    provenance = {"resourceType": "Provenance", "id": "v", "recorded": "2024-02-06T10:15:00Z",
                  "target": [{"reference": "QuestionnaireResponse/q1/_history/2"}],
                  "agent": [{"who": {"display": "x"}}]}
    assert rows_of(indexer.rows(provenance), "reference", "target") == [("QuestionnaireResponse", "q1", None)]


# -- odd data -----------------------------------------------------------------------------------------
def test_odd_data_is_skipped_and_the_rest_indexed(indexer, qr):
    qr["authored"] = "yesterday"
    qr["author"] = "Practitioner/1"               # a string where a Reference belongs
    qr["identifier"] = [{"value": 42}, 7, {"system": "urn:x", "value": "ok"}]
    qr["extension"][0]["valueCoding"] = ["not", "a", "coding"]
    qr["meta"] = {"profile": "not-a-list", "tag": [None, {"code": {"nested": True}}]}
    qr["status"] = "x" * 300                      # longer than the token column
    rows = indexer.rows(qr)
    assert rows_of(rows, "date", "authored") == []
    assert rows_of(rows, "token", "status") == []
    assert rows_of(rows, "token", "identifier") == [("urn:x", "ok")]
    assert rows_of(rows, "reference", "subject") == [("Patient", "example-patient-01", None)]
    assert rows_of(rows, "token", "timepoint")


@pytest.mark.parametrize("resource", [{}, {"resourceType": 5}, {"resourceType": "Unknown", "id": "x"},
                                      {"resourceType": "Patient", "name": "Smith", "birthDate": 19900101,
                                       "identifier": {"value": "1"}, "telecom": [[]], "address": [None]}])
def test_nothing_odd_raises(indexer, resource):
    rows = indexer.rows(resource)
    assert set(rows) == set(INDEX_TABLES)


def test_long_strings_are_cut_to_the_column(indexer):
    rows = indexer.rows({"resourceType": "Patient", "id": "p", "name": [{"family": "A" * 600}]})
    assert [len(e) for _, e in rows_of(rows, "string", "family")] == [512]


def test_each_type_is_planned_once_and_nothing_is_compiled_per_resource(indexer, qr, patient, monkeypatch):
    """What made indexing slow before (a plan rebuilt per call, an expression compiled per
    resource) cannot come back unnoticed. Speed itself is measured by bench/, not here."""
    import fhir_bridge.store.search_parameters as search_parameters

    indexer.rows(qr)
    indexer.rows(patient)
    plans = dict(indexer._plans)
    monkeypatch.setattr(search_parameters, "compile_expression",
                        lambda *args, **kwargs: pytest.fail("an expression was compiled while indexing"))
    for resource in (qr, patient) * 3:
        indexer.rows(copy.deepcopy(resource))
    assert indexer._plans.keys() == plans.keys()
    assert all(indexer._plans[t] is plans[t] for t in plans)


def test_expressions_that_answer_for_absent_elements_are_still_evaluated():
    """The indexer skips a parameter whose first element is absent, but only when the expression
    cannot produce anything from nothing."""
    package = load_package(REPO / "profiles")
    for code, expression in (("named", "Patient.name.exists()"), ("kids", "children().family"),
                             ("unnamed", "Patient.name.empty()")):
        package.add({"resourceType": "SearchParameter", "url": f"http://example.org/sp/{code}", "code": code,
                     "base": ["Patient"], "type": "token" if code != "kids" else "string", "expression": expression},
                    Path(f"{code}.json"))
    indexer = Indexer(SearchParameterRegistry.load(package))
    rows = indexer.rows({"resourceType": "Patient", "id": "p", "gender": "other"})
    assert (rows_of(rows, "token", "named"), rows_of(rows, "token", "unnamed")) == ([(None, "false")], [(None, "true")])
    rows = indexer.rows({"resourceType": "Patient", "id": "p", "name": [{"family": "Lee"}]})
    assert rows_of(rows, "string", "kids") == [("lee", "Lee")]


def _every_example_resource() -> list[dict]:
    files = [*EXAMPLES.rglob("*.json"), *(REPO / "tests" / "golden").rglob("expected*.json")]
    resources = []
    for path in files:
        data = orjson.loads(path.read_bytes())
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                resources += [e["resource"] for e in item.get("entry", []) if isinstance(e.get("resource"), dict)]
            elif isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                resources.append(item)
    return resources


@pytest.mark.parametrize("with_model", [False, True])
def test_plain_member_paths_are_walked_as_fhirpath_navigates_them(indexer, validator, with_model):
    """The indexer walks plain member chains itself (store/indexer.py `_member_path`): over every
    example resource and golden output, each such parameter gives what its FHIRPath gives. With
    the base definitions it also walks names that are a choice only in other resources (`subject`,
    `code`, `name`, `date`...), and a choice's typed key (`valueCodeableConcept`)."""
    from fhir_bridge.store.indexer import _Elements, _member_path

    model = validator.model if with_model else None
    compared, walked = 0, set()
    for resource in _every_example_resource():
        elements = _Elements(model, resource["resourceType"])
        for param in indexer.registry.for_type(resource["resourceType"]).values():
            walk = _member_path(param.expression.source, elements)
            if walk is not None:
                assert walk(resource) == param.expression(resource), (resource["resourceType"], param.code)
                compared += 1
                walked.add((resource["resourceType"], param.code))
    assert compared > 1000
    assert (("QuestionnaireResponse", "subject") in walked) is with_model
    assert (("Encounter", "patient") in walked) is with_model
    for elements in (_Elements(model, "Patient"), _Elements(model, "Observation")):
        assert _member_path("deceased", elements) is None and _member_path("value", elements) is None
        assert _member_path("telecom.where(system='email')", elements) is None
        assert _member_path("name | alias", elements) is None


def test_the_base_definitions_change_how_rows_are_found_never_which(indexer, validator):
    """Every example resource gives the same rows with the base definitions (choices told per
    resource type) as without (any name that is a choice anywhere taken for one)."""
    modelled = Indexer(indexer.registry, base_url=BASE, model=validator.model)
    resources = _every_example_resource()
    assert len(resources) > 100
    for resource in resources:
        assert modelled.rows(resource) == indexer.rows(resource), resource.get("id")


def test_a_choice_elements_keys_are_its_typed_keys(validator):
    """A parameter on a choice (`Observation.effective`) is skipped only when none of its typed
    keys is there; a name no element has tells nothing."""
    from fhir_bridge.store.indexer import _Elements, _first_keys

    observation = _Elements(validator.model, "Observation")
    keys = _first_keys("effective", observation)
    assert {"effectiveDateTime", "effectivePeriod", "effectiveInstant"} <= set(keys)
    assert _first_keys("subject", observation) == ("subject",)
    assert _first_keys("valueCodeableConcept | component.valueCodeableConcept", observation) == (
        "valueCodeableConcept", "component")
    assert _first_keys("nonsense", observation) is None
    assert _first_keys("subject", _Elements(None, "Observation")) is None  # a choice somewhere


def test_extension_values_are_found_as_fhirpath_finds_them(indexer):
    """`extension('<url>').value` parameters (a DIALOG response's purpose, timepoint, recording
    organisation) are read without the FHIRPath engine (store/indexer.py `_extension_value`): on
    every example resource and on odd shapes, the same values, or the same failure."""
    from fhir_bridge.store.indexer import _extension_value

    url = "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint"
    coding = {"system": "https://fhir-bridge.example.org/CodeSystem/dialog-timepoint", "code": "review"}
    odd = [{}, {"extension": []}, {"extension": [{"url": url, "valueCoding": coding}] * 2},
           {"extension": [{"url": "other", "valueCoding": coding}, {"url": url, "valueString": "x"}]},
           {"extension": [{"url": url, "valueDecimal": 5}, {"url": url, "valueDecimal": 5.5}]},
           {"extension": [{"url": url, "value": [coding, None]}]}, {"extension": [{"url": url, "valueFoo": 1}]},
           {"extension": [{"url": url, "valueCoding": coding, "valueString": "both"}]},
           {"extension": [{"url": url}]}, {"extension": ["not an object"]}, {"extension": {"url": url}},
           {"extension": None}]
    resources = [*_every_example_resource(), *({"resourceType": "QuestionnaireResponse", **shape} for shape in odd)]
    compared = 0
    for resource in resources:
        for param in indexer.registry.for_type(resource["resourceType"]).values():
            fast = _extension_value(param.expression)
            if fast is None:
                continue
            try:
                expected = param.expression(resource)
            except Exception as exc:  # noqa: BLE001 - the indexer skips such a parameter: so must the shortcut
                with pytest.raises(type(exc)):
                    fast(resource)
                continue
            found = fast(resource)
            assert found == expected and [type(v) for v in found] == [type(v) for v in expected], resource
            compared += 1
    assert compared > 40


def test_a_workers_rows_are_taken_for_the_elements_still_as_it_read_them(indexer):
    """An import worker indexes the parameters that read one top-level element (`local_rows`); the
    importing process takes those rows for each element that is still the very object the worker
    read, and indexes the rest itself: on every example, the rows it would have made alone, whatever
    linking changed (a new subject, a new identifier list, a key added or taken away)."""
    compared = 0
    for resource in _every_example_resource():
        as_read = orjson.loads(orjson.dumps(resource))  # as the importing process reads a worker's result
        done = orjson.loads(orjson.dumps(indexer.local_rows(resource)))
        linked = [as_read, {**as_read, "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"}},
                  {**as_read, "subject": {"reference": "Patient/elsewhere"}},
                  {**as_read, "identifier": [{"system": "urn:x", "value": "added"}]},
                  {k: v for k, v in as_read.items() if k not in ("subject", "status")}]
        for written in linked:
            assert indexer.rows(written, (as_read, done)) == indexer.rows(written), written
            compared += 1
    assert compared > 100


def test_a_workers_rows_are_not_recomputed_where_the_element_is_the_same(indexer, qr):
    """What makes the worker's rows worth sending: the importing process does not evaluate a
    parameter whose element it has as the worker read it (here the rows given are made up, and
    taken), but does evaluate one whose element is a new object (the made-up rows are not taken)."""
    status = next(i for i, (param, *_) in enumerate(indexer._plan("QuestionnaireResponse")) if param.code == "status")
    made_up = [[status, [{"param": "status", "system": None, "code": "made-up"}]]]
    assert rows_of(indexer.rows(qr, (qr, made_up)), "token", "status") == [(None, "made-up")]
    completed = "".join(["comp", "leted"])  # a new object, equal to what the worker read
    assert rows_of(indexer.rows({**qr, "status": completed}, (qr, made_up)), "token", "status") == [(None, "completed")]
    assert rows_of(indexer.rows(qr, ({"resourceType": "Patient"}, made_up)), "token", "status") == [(None, "completed")]
