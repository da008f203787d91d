"""Search against real databases: a SQLite file, and PostgreSQL when FHIR_BRIDGE_TEST_POSTGRES_URL is set.

One corpus per backend (the examples plus a few made-up resources) is written with the indexer's
rows, then every search runs through parse_search -> build_search/build_includes -> SearchMixin.
A deleted response keeps stale index rows on purpose: deleted resources must never match.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, Engine, create_engine, insert, select
from sqlalchemy.pool import NullPool

from fhir_bridge.errors import InputError
from fhir_bridge.fhir.package import load_package
from fhir_bridge.store import schema
from fhir_bridge.store.indexer import Indexer
from fhir_bridge.store.search import MAX_COUNT, build_search, parse_search
from fhir_bridge.store.search_execution import SearchMixin
from fhir_bridge.store.search_parameters import SearchParameterRegistry
from fhir_bridge.store.types import SearchResult, Stored
from tests.postgres import BACKENDS, POSTGRES_ENV, postgres_schema

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BASE = "https://bridge.example.org/fhir"
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z: the first resource's last_updated, then one second apart
NOW = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z, what `ap` measures from

QR = "QuestionnaireResponse"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
DIALOG = "https://fhir-bridge.example.org/Questionnaire/dialog"
ASSESSMENT, CARE_PLANNING, REVIEW = "dialog-prom-assessment-01", "dialog-care-planning-01", "dialog-prom-review-01"
ROSA = "example-patient-01"
PAGED = [f"paged-{i:02d}" for i in range(25)]


# -- the corpus ---------------------------------------------------------------------------------------
def example(path: str) -> dict:
    return orjson.loads((EXAMPLES / path).read_bytes())


def patient(pid: str, family: str, given: str, birth: str | None, nhs: str | None = None) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}]}
    if birth:
        resource["birthDate"] = birth
    if nhs:
        resource["identifier"] = [{"system": NHS, "value": nhs}]
    return resource


def paged_response(i: int) -> dict:
    qr = example("dialog-questionnaire-response/valid-prom-review-amended.json")
    qr.update(id=PAGED[i], status="completed", subject={"reference": "Patient/pat-joseph"},
              authored=f"2023-01-{i + 1:02d}T09:00:00Z")
    return qr


def corpus() -> list[dict]:
    qrs = sorted(EXAMPLES.glob("dialog-questionnaire-response/valid-*.json"))
    observations = sorted(EXAMPLES.glob("dialog-score-observation/valid-*.json"))
    plans = sorted(EXAMPLES.glob("dialog-plus-careplan/valid-*.json"))
    finished_plan = example("dialog-plus-careplan/valid-dialog-plus-plan.json")
    finished_plan.update(id="anna-plan", status="completed", subject={"reference": "Patient/pat-anna"})
    return [
        example("bridge-patient/valid-patient-nhs-number-verified.json"),
        patient("pat-jose", "Álvarez", "José", "1990", "9990000018"),
        patient("pat-joseph", "Smith", "Joseph", "1990-06", "9990000026"),
        patient("pat-anna", "O'Brien", "Anna", "1975-01-01"),
        {"resourceType": "Organization", "id": "example-mh-trust", "name": "Example Mental Health NHS FT"},
        {"resourceType": "Practitioner", "id": "example-key-worker-01", "name": [{"family": "Adeyemi"}]},
        orjson.loads((REPO / "profiles/Questionnaire-dialog.json").read_bytes()),
        *(orjson.loads(p.read_bytes()) for p in qrs),
        *(paged_response(i) for i in range(len(PAGED))),
        *(orjson.loads(p.read_bytes()) for p in observations),
        *(orjson.loads(p.read_bytes()) for p in plans),
        finished_plan,
        provenance("prov-assessment", f"{QR}/{ASSESSMENT}/_history/1"),
        provenance("prov-plan", "CarePlan/dialog-plus-plan-01/_history/1"),
        *encounters(),
    ]


ENCOUNTERS = {"enc-rosa": f"Patient/{ROSA}", "enc-group": "Group/g1",
              "enc-other": "https://other.example.org/fhir/Patient/p9", "enc-none": None}


def encounters() -> list[dict]:
    """Whom `patient` (rows of `subject` to a Patient) finds and not: a Patient here, a group,
    another server's Patient, no one."""
    made = []
    for eid, subject in ENCOUNTERS.items():
        encounter = {"resourceType": "Encounter", "id": eid, "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
        if subject:
            encounter["subject"] = {"reference": subject}
        if eid == "enc-rosa":
            encounter["participant"] = [{"individual": {"reference": "Practitioner/example-key-worker-01"}},
                                        {"individual": {"reference": "RelatedPerson/rp1"}}]
        made.append(encounter)
    return made


def provenance(pid: str, target: str) -> dict:
    return {"resourceType": "Provenance", "id": pid, "target": [{"reference": target}],
            "recorded": "2024-06-01T00:00:00Z", "agent": [{"who": {"display": "partner"}}]}


def deleted_response() -> dict:
    qr = example("dialog-questionnaire-response/valid-prom-assessment-complete.json")
    qr["id"] = "deleted-response"
    return qr


# -- databases ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_registry() -> SearchParameterRegistry:
    """The served parameters plus a number one (R4 gives the served types none) to test numbers with."""
    package = load_package(REPO / "profiles")
    package.add({"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/score",
                 "code": "score", "base": ["Observation"], "type": "number",
                 "expression": "Observation.valueQuantity.value | Observation.valueInteger"}, Path("score.json"))
    return SearchParameterRegistry.load(package)


@pytest.fixture(scope="module", params=BACKENDS)
def search_db(request: pytest.FixtureRequest, tmp_path_factory, search_registry) -> Iterator[Engine]:
    """An engine on a database holding the corpus; PostgreSQL in a schema of its own, dropped after."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('search') / 'search.db'}", poolclass=NullPool)
        _load(engine, search_registry)
        yield engine
        engine.dispose()
        return
    for url in postgres_schema(os.environ[POSTGRES_ENV]):  # a schema of its own, dropped after
        engine = create_engine(url, poolclass=NullPool)
        try:
            _load(engine, search_registry)
            yield engine
        finally:
            engine.dispose()


def _load(engine: Engine, registry: SearchParameterRegistry) -> None:
    schema.metadata.create_all(engine)
    indexer = Indexer(registry, base_url=BASE)
    resources = [(r, False) for r in corpus()] + [(deleted_response(), True)]
    with engine.begin() as connection:
        for i, (resource, deleted) in enumerate(resources):
            key = {"resource_type": resource["resourceType"], "resource_id": resource["id"]}
            connection.execute(insert(schema.resources).values(
                **key, version_id=1, last_updated=T0 + i * 1_000_000, deleted=deleted,
                body=None if deleted else orjson.dumps(resource)))
            for table, rows in indexer.rows(resource).items():
                if rows:
                    connection.execute(insert(schema.INDEX_TABLES[table]), [{**row, **key} for row in rows])


class _Store(SearchMixin):
    """The two methods SearchMixin needs from Repository, over a bare engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    def _fetch_stored(self, keys: list[tuple[str, str]], connection: Connection | None = None) -> list[Stored]:
        found = {}
        for rtype, rid in keys:
            row = connection.execute(select(schema.resources).where(
                schema.resources.c.resource_type == rtype, schema.resources.c.resource_id == rid,
                schema.resources.c.deleted.is_(False))).first()
            if row is not None:
                found[rtype, rid] = Stored(rtype, rid, row.version_id, row.last_updated, False, orjson.loads(row.body))
        return [found[k] for k in keys if k in found]


@pytest.fixture(scope="module")
def store(search_db: Engine) -> _Store:
    return _Store(search_db)


@pytest.fixture(scope="module")
def find(store: _Store, search_registry):
    """find(type, query) -> SearchResult, query as a list of pairs or a `a=b&c=d` string."""
    def run(resource_type: str, query, *, strict: bool = False) -> SearchResult:
        pairs = [tuple(p.split("=", 1)) for p in query.split("&")] if isinstance(query, str) else query
        return store.search(parse_search(resource_type, pairs, search_registry, strict=strict, base_url=BASE, now=NOW))
    return run


def ids(result: SearchResult) -> list[str]:
    return [s.resource_id for s in result.matches]


def included(result: SearchResult) -> set[tuple[str, str]]:
    return {(s.resource_type, s.resource_id) for s in result.included}


# -- Patient ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query, expected", [
    (f"identifier={NHS}|9994527819", [ROSA]),
    ("identifier=9994527819", [ROSA]),
    (f"identifier={NHS}|", ["example-patient-01", "pat-jose", "pat-joseph"]),
    ("identifier=|9994527819", []),                       # `|code`: no system at all
    ("identifier=https://other.example.org|9994527819", []),
    ("identifier=RP-0047312", [ROSA]),
    ("identifier:missing=true", ["pat-anna"]),
])
def test_patient_by_identifier(find, query, expected):
    assert sorted(ids(find("Patient", query))) == expected


@pytest.mark.parametrize("query, expected", [
    ("name=pemb", [ROSA]),
    ("name=ROSA", [ROSA]),                                # case folded
    ("name=jose", ["pat-jose", "pat-joseph"]),            # accents folded, prefix match
    ("name=alvarez", ["pat-jose"]),
    ("name:exact=José", ["pat-jose"]),
    ("name:exact=jose", []),
    ("name:contains=brie", ["pat-anna"]),
    ("name=o'b", ["pat-anna"]),
    ("family=smith", ["pat-joseph"]),
    ("given=mae", [ROSA]),
    ("name=rosa,anna", [ROSA, "pat-anna"]),               # comma: OR
    ("name=jose&name=smith", ["pat-joseph"]),             # repeated: AND
])
def test_patient_by_name(find, query, expected):
    assert sorted(ids(find("Patient", query))) == sorted(expected)


@pytest.mark.parametrize("query, expected", [
    ("birthdate=1986-09-23", [ROSA]),
    ("birthdate=1986", [ROSA]),
    ("birthdate=1990", ["pat-jose", "pat-joseph"]),       # a year and a month, both within 1990
    ("birthdate=1990-06", ["pat-joseph"]),                # 1990 as a whole is not within June
    ("birthdate=1990-06-15", []),
    ("birthdate=ne1990", [ROSA, "pat-anna"]),
    ("birthdate=lt1980", ["pat-anna"]),
    ("birthdate=gt1990-03", ["pat-jose", "pat-joseph"]),  # 1990 ends after March
    ("birthdate=ge1986-09-23", [ROSA, "pat-jose", "pat-joseph"]),
    ("birthdate=le1986-09-23", [ROSA, "pat-anna"]),
    ("birthdate=sa1986", ["pat-jose", "pat-joseph"]),
    ("birthdate=eb1986-09-23", ["pat-anna"]),
    ("birthdate=ap1978", ["pat-anna"]),                   # ±4.7 years: 10% of 1978 to now (2025)
    ("birthdate=ap1986-09-20", [ROSA, "pat-jose", "pat-joseph"]),  # ±3.8 years reaches into 1990
    ("birthdate:missing=false", [ROSA, "pat-jose", "pat-joseph", "pat-anna"]),
])
def test_patient_by_birthdate(find, query, expected):
    assert sorted(ids(find("Patient", query))) == sorted(expected)


# -- QuestionnaireResponse ----------------------------------------------------------------------------
ROSA_RESPONSES = sorted([ASSESSMENT, CARE_PLANNING, REVIEW])


@pytest.mark.parametrize("query", [
    f"subject=Patient/{ROSA}", f"subject={ROSA}", f"patient={ROSA}", f"patient=Patient/{ROSA}",
    f"subject={BASE}/Patient/{ROSA}", f"subject:Patient={ROSA}", f"subject=Patient/{ROSA}/_history/1",
])
def test_response_by_subject_or_patient(find, query):
    assert sorted(ids(find(QR, query))) == ROSA_RESPONSES  # the deleted response never shows


def test_response_subject_of_another_type_or_unknown(find):
    assert ids(find(QR, f"subject=Group/{ROSA}")) == []
    assert ids(find(QR, "patient=nobody")) == []
    assert ids(find(QR, "subject=https://other.example.org/fhir/Patient/example-patient-01")) == []


@pytest.mark.parametrize("query, expected", [
    (f"questionnaire={DIALOG}", ROSA_RESPONSES + PAGED),   # any version
    (f"questionnaire={DIALOG}|1.0.0", ROSA_RESPONSES + PAGED),
    (f"questionnaire={DIALOG}|2.0.0", []),
    ("questionnaire=https://fhir-bridge.example.org/Questionnaire/dia", []),  # not a prefix match
])
def test_response_by_questionnaire(find, query, expected):
    assert sorted(ids(find(QR, query + "&_count=100"))) == sorted(expected)


@pytest.mark.parametrize("value, expected", [
    ("2024-02-06", [ASSESSMENT]),
    ("eq2024-02", [ASSESSMENT, CARE_PLANNING]),
    ("2024-02-06T10:15:00Z", [ASSESSMENT]),
    ("2024-05-07T14:30:00+01:00", [REVIEW]),
    ("2024-05-07T14:30:00 01:00", [REVIEW]),             # a `+` the URL decoding turned into a space
    ("ne2024-02", [REVIEW]),
    ("gt2024-02-06", [CARE_PLANNING, REVIEW]),
    ("lt2024-02-20", [ASSESSMENT]),
    ("ge2024-02-20", [CARE_PLANNING, REVIEW]),
    ("le2024-02-20", [ASSESSMENT, CARE_PLANNING]),
    ("sa2024-02-06", [CARE_PLANNING, REVIEW]),
    ("eb2024-05", [ASSESSMENT, CARE_PLANNING]),
    ("ap2024-05-01", [REVIEW]),                           # ±24 days from now (2025-01-01)
])
def test_response_by_authored(find, value, expected):
    assert sorted(ids(find(QR, [("authored", value), ("subject", ROSA)]))) == sorted(expected)


def test_response_authored_either_of_two_ranges(find):
    result = find(QR, "authored=ge2024-02-01,lt2023-01-03&_sort=authored")
    assert ids(result) == ["paged-00", "paged-01", ASSESSMENT, CARE_PLANNING, REVIEW]


def test_response_authored_range_by_repetition(find):
    assert ids(find(QR, "authored=ge2024-02-01&authored=lt2024-03-01&_sort=authored")) == [ASSESSMENT, CARE_PLANNING]


@pytest.mark.parametrize("query, expected", [
    ("status=amended", [REVIEW]),
    ("status=completed,amended&subject=Patient/example-patient-01", ROSA_RESPONSES),
    ("status:not=completed", [REVIEW]),
    ("author=Practitioner/example-key-worker-01", [ASSESSMENT, REVIEW] + PAGED),
    ("author=Practitioner/example-vcse-worker-01", [CARE_PLANNING]),
    ("purpose=care-planning", [CARE_PLANNING]),
    ("purpose=https://fhir-bridge.example.org/CodeSystem/dialog-purpose|prom&subject=example-patient-01",
     [ASSESSMENT, REVIEW]),
    ("timepoint=assessment", [ASSESSMENT]),
    ("timepoint=review&subject=example-patient-01", [REVIEW]),
    ("timepoint:missing=true", [CARE_PLANNING]),
    ("recording-organization=Organization/example-vcse-wellbeing", [CARE_PLANNING]),
    ("recording-organization=example-mh-trust&purpose=prom&timepoint=assessment", [ASSESSMENT]),
])
def test_response_by_status_author_purpose_timepoint(find, query, expected):
    assert sorted(ids(find(QR, query + "&_count=100"))) == sorted(expected)


@pytest.mark.parametrize("query, expected", [
    (f"patient={ROSA}", ["enc-rosa"]),
    (f"patient=Patient/{ROSA}", ["enc-rosa"]),
    ("patient=https://other.example.org/fhir/Patient/p9", ["enc-other"]),
    ("subject=https://other.example.org/fhir/Patient/p9", ["enc-other"]),
    ("patient=g1", []),
    ("subject=g1", ["enc-group"]),
    ("patient:missing=true", ["enc-group", "enc-none"]),
    ("patient:missing=false", ["enc-other", "enc-rosa"]),
    ("subject:missing=true", ["enc-none"]),
    ("practitioner=example-key-worker-01", ["enc-rosa"]),
    ("practitioner=rp1", []),
    ("participant=rp1", ["enc-rosa"]),
    (f"patient={ROSA}&subject=Patient/{ROSA}&class=AMB", ["enc-rosa"]),
])
def test_a_parameter_read_from_another_ones_rows(find, query, expected):
    """`patient` and `practitioner` have no rows of their own: `subject`'s and `participant`'s to a
    Patient and a Practitioner (SearchParam.stored_as)."""
    assert sorted(ids(find("Encounter", query))) == expected


def test_include_and_revinclude_of_a_parameter_read_from_another_ones_rows(find):
    assert included(find("Encounter", "_id=enc-rosa,enc-group&_include=Encounter:patient")) == {("Patient", ROSA)}
    assert included(find("Encounter", "_id=enc-rosa&_include=Encounter:practitioner")) == {
        ("Practitioner", "example-key-worker-01")}
    assert included(find("Patient", f"_id={ROSA}&_revinclude=Encounter:patient")) == {("Encounter", "enc-rosa")}
    assert included(find("Encounter", "_id=enc-rosa,enc-group&_include=Encounter:patient:Group")) == set()
    assert included(find("Encounter", "_id=enc-rosa,enc-group&_include=Encounter:subject:Group")) == set()  # none stored


# -- Observation and CarePlan -------------------------------------------------------------------------
SCORES = ["dialog-item-mental-health-01", "dialog-sqol-mean-01", "dialog-treatment-satisfaction-mean-01"]


@pytest.mark.parametrize("query, expected", [
    (f"subject=Patient/{ROSA}", SCORES),
    (f"patient={ROSA}", SCORES),
    ("code=sqol-mean", ["dialog-sqol-mean-01"]),
    ("code=http://snomed.info/sct|1037651000000100", ["dialog-item-mental-health-01"]),
    ("code=sqol-mean,treatment-satisfaction-mean", SCORES[1:]),
    ("date=2024-02-06", SCORES),
    ("date=gt2024-02-06", []),
    (f"derived-from={QR}/{ASSESSMENT}", SCORES),
    (f"derived-from={QR}/{REVIEW}", []),
])
def test_observation_search(find, query, expected):
    assert sorted(ids(find("Observation", query))) == expected


@pytest.mark.parametrize("query, expected", [
    ("score=3", SCORES[:1]),
    ("score=4.125", SCORES[1:2]),
    ("score=4.1", SCORES[1:2]),                           # 4.1 is [4.05, 4.15)
    ("score=5", SCORES[2:]),
    ("score=4", SCORES[1:2]),                             # 4 is [3.5, 4.5)
    ("score=4.0", []),
    ("score=gt4", SCORES[1:]),
    ("score=le4.125", SCORES[:2]),
    ("score=ne5", SCORES[:2]),
    ("score=ap4.5", SCORES[1:2]),
    ("score=sa4.125", SCORES[2:]),
    ("score=eb4.125", SCORES[:1]),
    ("score:missing=true", []),
])
def test_observation_by_number(find, query, expected):
    assert sorted(ids(find("Observation", query))) == expected


def test_sort_by_number(find):
    assert ids(find("Observation", "_sort=-score")) == list(reversed(SCORES))


@pytest.mark.parametrize("query, expected", [
    (f"subject=Patient/{ROSA}", ["dialog-plus-crisis-plan-01", "dialog-plus-plan-01"]),
    ("status=active", ["dialog-plus-crisis-plan-01", "dialog-plus-plan-01"]),
    ("status=completed", ["anna-plan"]),
    ("category=10", ["anna-plan", "dialog-plus-plan-01"]),
    ("category=https://fhir-bridge.example.org/CodeSystem/mhsds-care-plan-type|12", ["dialog-plus-crisis-plan-01"]),
    ("category=10&status=active&subject=Patient/example-patient-01", ["dialog-plus-plan-01"]),
])
def test_careplan_search(find, query, expected):
    assert sorted(ids(find("CarePlan", query))) == expected


# -- _id, _lastUpdated, _sort, paging ------------------------------------------------------------------
def test_by_id(find):
    assert sorted(ids(find(QR, f"_id={ASSESSMENT},{REVIEW},nothing"))) == [ASSESSMENT, REVIEW]
    assert ids(find(QR, f"_id={ASSESSMENT}&_id={REVIEW}")) == []
    assert ids(find(QR, "_id=deleted-response")) == []


def test_by_last_updated(find, search_db):
    with search_db.connect() as connection:
        times = dict(connection.execute(select(schema.resources.c.resource_id, schema.resources.c.last_updated)
                                        .where(schema.resources.c.resource_type == "Patient")).all())
    anna = datetime.fromtimestamp(times["pat-anna"] / 1e6, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    assert ids(find("Patient", f"_lastUpdated=ge{anna}&_sort=_id")) == ["pat-anna"]
    assert ids(find("Patient", f"_lastUpdated=lt{anna}&_sort=_lastUpdated")) == [ROSA, "pat-jose", "pat-joseph"]
    assert ids(find("Patient", f"_lastUpdated={anna[:10]}&_sort=-_lastUpdated")) == [
        "pat-anna", "pat-joseph", "pat-jose", ROSA]
    assert ids(find("Patient", "_lastUpdated=gt2024-06-02")) == []


def test_sort_ascending_descending_and_by_several_keys(find):
    assert ids(find(QR, f"subject={ROSA}&_sort=authored")) == [ASSESSMENT, CARE_PLANNING, REVIEW]
    assert ids(find(QR, f"subject={ROSA}&_sort=-authored")) == [REVIEW, CARE_PLANNING, ASSESSMENT]
    assert ids(find(QR, f"subject={ROSA}&_sort=status,-authored")) == [REVIEW, CARE_PLANNING, ASSESSMENT]
    assert ids(find(QR, f"subject={ROSA}&_sort=-status,authored")) == [ASSESSMENT, CARE_PLANNING, REVIEW]
    assert ids(find(QR, f"subject={ROSA}&_sort=-_id")) == [REVIEW, ASSESSMENT, CARE_PLANNING]
    assert ids(find("Patient", "_sort=family")) == ["pat-jose", "pat-anna", ROSA, "pat-joseph"]
    assert ids(find("Patient", "_sort=-birthdate")) == ["pat-jose", "pat-joseph", ROSA, "pat-anna"]


def test_resources_without_the_sort_value_come_last_both_ways(find):
    assert ids(find("Patient", "_sort=identifier"))[-1] == "pat-anna"
    assert ids(find("Patient", "_sort=-identifier"))[-1] == "pat-anna"


def test_paging_to_the_last_page(find):
    seen = []
    for offset in (0, 10, 20):
        page = find(QR, f"subject=Patient/pat-joseph&_sort=-authored&_count=10&_offset={offset}")
        assert page.total == 25 and page.offset == offset and page.count == 10
        seen += ids(page)
    assert seen == list(reversed(PAGED))
    assert ids(find(QR, "subject=Patient/pat-joseph&_count=10&_offset=25")) == []
    assert find(QR, "subject=Patient/pat-joseph&_count=10&_offset=30").total == 25


def test_default_page_size_and_the_maximum(find):
    assert len(ids(find(QR, f"questionnaire={DIALOG}"))) == 20
    assert find(QR, f"_count={MAX_COUNT + 5}").count == MAX_COUNT


# -- _include, _revinclude -----------------------------------------------------------------------------
def test_include_follows_references_of_the_page(find):
    result = find(QR, f"_id={ASSESSMENT}&_include={QR}:subject&_include={QR}:author")
    assert ids(result) == [ASSESSMENT]
    assert included(result) == {("Patient", ROSA), ("Practitioner", "example-key-worker-01")}


def test_include_of_a_canonical_finds_the_questionnaire_by_url(find):
    result = find(QR, f"_id={ASSESSMENT},{REVIEW}&_include={QR}:questionnaire")
    assert included(result) == {("Questionnaire", "dialog")}


def test_include_with_a_target_type_and_wildcard(find):
    assert included(find(QR, f"_id={ASSESSMENT}&_include={QR}:source:Practitioner")) == set()
    assert included(find(QR, f"_id={ASSESSMENT}&_include={QR}:source:Patient")) == {("Patient", ROSA)}
    assert {("Patient", ROSA), ("Organization", "example-mh-trust"), ("Questionnaire", "dialog"),
            ("Practitioner", "example-key-worker-01")} == included(find(QR, f"_id={ASSESSMENT}&_include=*"))


def test_revinclude_provenance_target(find):
    result = find(QR, f"subject={ROSA}&_revinclude=Provenance:target")
    assert included(result) == {("Provenance", "prov-assessment")}
    plans = find("CarePlan", f"subject={ROSA}&_revinclude=Provenance:target")
    assert included(plans) == {("Provenance", "prov-plan")}


def test_revinclude_of_observations_derived_from_responses(find):
    result = find(QR, f"_id={ASSESSMENT}&_revinclude=Observation:derived-from&_revinclude=Provenance:target")
    assert included(result) == {("Observation", s) for s in SCORES} | {("Provenance", "prov-assessment")}


def test_included_resources_are_not_repeated_among_matches(find):
    result = find("Patient", f"_id={ROSA}&_revinclude=Patient:link")
    assert ids(result) == [ROSA] and result.included == []


# -- _summary, _total, unknown parameters --------------------------------------------------------------
def test_summary_count_gives_the_total_alone(find):
    result = find(QR, f"subject={ROSA}&_summary=count")
    assert (result.total, result.matches) == (3, [])
    assert find(QR, f"subject={ROSA}&_count=0").total == 3


def test_total_none_skips_the_count(find):
    result = find(QR, f"subject={ROSA}&_total=none")
    assert result.total is None and len(result.matches) == 3
    assert find(QR, f"subject={ROSA}&_total=accurate").total == 3


def test_unknown_parameters_are_ignored_or_refused_when_strict(find):
    result = find(QR, f"subject={ROSA}&colour=blue&_include:iterate={QR}:subject")
    assert sorted(ids(result)) == ROSA_RESPONSES
    with pytest.raises(InputError, match="colour"):
        find(QR, f"subject={ROSA}&colour=blue", strict=True)


# -- parsing alone --------------------------------------------------------------------------------------
def parse(resource_type: str, query: str, registry, strict: bool = False):
    pairs = [tuple(p.split("=", 1)) for p in query.split("&")]
    return parse_search(resource_type, pairs, registry, strict=strict, base_url=BASE, now=NOW)


def test_ignored_parameters_are_recorded(search_registry):
    request = parse("Observation", "code-value-quantity=x$1&colour=blue&_format=json&name=", search_registry)
    assert request.ignored == ["code-value-quantity", "colour"]
    with pytest.raises(InputError, match="composite"):
        parse("Observation", "code-value-quantity=x$1", search_registry, strict=True)


def test_result_parameters_are_recorded(search_registry):
    request = parse(QR, "_count=5&_offset=10&_summary=data&_total=estimate&_elements=id,status&_sort=-authored,_id",
                    search_registry)
    assert (request.count, request.offset, request.summary, request.total) == (5, 10, "data", "estimate")
    assert request.elements == ["id", "status"]
    assert [(k.param.code, k.descending) for k in request.sort] == [("authored", True), ("_id", False)]


def test_escaped_commas_and_bars_are_values(search_registry):
    criterion = parse("Patient", r"identifier=urn:a\|b|c\,d,e", search_registry).criteria[0]
    assert [(v.system, v.code) for v in criterion.values] == [("urn:a|b", "c,d"), (None, "e")]


@pytest.mark.parametrize("query, named", [
    ("birthdate=yesterday", "yesterday"),
    ("birthdate=2024-02-30", "birthdate"),
    ("identifier=a|b|c", "a|b|c"),
    ("identifier=|", "identifier"),
    ("name:fuzzy=x", ":fuzzy"),
    ("identifier:text=x", ":text"),
    ("_id:missing=true", "_id"),
    ("birthdate:missing=maybe", "maybe"),
    ("general-practitioner:Group=x", ":Group"),
    ("general-practitioner=a/b/Practitioner/1", "a/b/Practitioner/1"),
    ("organization:Organization=Patient/1", "Patient/1"),
    ("_count=-1", "_count"),
    ("_count=many", "many"),
    ("_offset=1.5", "_offset"),
    ("_sort=link", "link"),
    ("_sort=nothing", "nothing"),
    ("_summary=some", "some"),
    ("_total=all", "all"),
    ("_include=Patient:name", "name"),
    ("_include=Patient", "Patient"),
    ("_include=Patient:organization:Group", "Group"),
    ("organization.name=x", "chained"),
    ("_has:Observation:subject:code=x", "chained"),
])
def test_bad_values_are_refused_naming_them(search_registry, query, named):
    with pytest.raises(InputError) as raised:
        parse("Patient", query, search_registry)
    assert named in raised.value.message


def test_number_values_keep_their_precision(search_registry):
    [hundred, fraction] = parse("Observation", "score=100,ge1.50", search_registry).criteria[0].values
    assert (hundred.prefix, hundred.low, hundred.high) == ("eq", 99.5, 100.5)
    assert (fraction.prefix, fraction.value, fraction.low) == ("ge", 1.5, 1.495)
    with pytest.raises(InputError, match="1e"):
        parse("Observation", "score=1e", search_registry)


def test_statements_only_read_current_resources_of_the_type(search_registry):
    ids_statement, count_statement = build_search(parse(QR, "subject=Patient/1&status=completed", search_registry))
    for statement in (ids_statement, count_statement):
        text = str(statement)
        assert "resources.deleted" in text and "resources.resource_type" in text

