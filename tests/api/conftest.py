"""API fixtures: a Bridge over a throwaway database (SQLite, and PostgreSQL too when
FHIR_BRIDGE_TEST_POSTGRES_URL is set), the app in process with authentication on, bearer tokens,
and builders of valid resources taken from examples/.

Time is injected: every write advances a fake clock by one second from 2025-01-01, so _since,
_lastUpdated and history order are exact rather than racing the wall clock.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from fhir_bridge.api.app import create_app
from fhir_bridge.api.auth import Grant, TokenStore, token_hash
from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.validation import Validator
from tests.api.helpers import OutcomeCheckingClient, expect
from tests.conftest import EXAMPLES
from tests.postgres import BACKENDS, throwaway_database_url

PARTNER = "RV3"                     # ODS code of the full-scope test partner
PARTNER_NAME = "East London NHS Foundation Trust"
CLOCK_START = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds
CLOCK_STEP = 1_000_000
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
DIALOG_PROFILE = "https://fhir-bridge.example.org/StructureDefinition/dialog-questionnaire-response"
PURPOSE_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-collection-purpose"
TIMEPOINT_EXT = "https://fhir-bridge.example.org/StructureDefinition/dialog-timepoint"


def example(relative: str) -> dict:
    return orjson.loads((EXAMPLES / relative).read_bytes())


class SteppingClock:
    """Microseconds since the epoch, one step further on every call."""

    def __init__(self, start: int = CLOCK_START, step: int = CLOCK_STEP):
        self.now, self.step = start - step, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


# -- database and bridge ------------------------------------------------------------------------------
@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a PostgreSQL schema of its own dropped afterwards."""
    yield from throwaway_database_url(request.param, tmp_path / "api.db")


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def bridge(database_url: str, tmp_path: Path, validator: Validator, clock: SteppingClock) -> Iterator[Bridge]:
    # The validator is shared by the session (loading it costs ~0.1 s); the database is not.
    opened = Bridge(Settings(data_dir=tmp_path, database_url=database_url), validator=validator, clock=clock)
    yield opened
    opened.close()  # before the PostgreSQL schema is dropped: no connection may hold it


# -- tokens ---------------------------------------------------------------------------------------------
@pytest.fixture
def grants() -> dict[str, Grant]:
    """The grants the test app accepts. TokenStore looks tokens up in the dict it was built with,
    so grants added by `token_for` during a test are live at once."""
    return {}


@pytest.fixture
def token_for(grants: dict[str, Grant]) -> Callable[..., dict]:
    """token_for("system/*.read", partner="X") -> Authorization headers of a new token with those scopes."""
    def make(*scopes: str, partner: str = "TST01", name: str = "Test partner") -> dict:
        token = f"test-token-{len(grants)}-{partner}"
        grants[token_hash(token)] = Grant(partner, name, frozenset(scopes))
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def tokens(grants: dict[str, Grant]) -> TokenStore:
    return TokenStore(grants)


@pytest.fixture
def auth(token_for) -> dict:
    """Headers of a token with every scope, for partner RV3, as the bridge's operators hold: it sees
    every person (access/all-people), so tests of the REST mechanics need no care relationships.
    Partners without it are limited to the people they care for: test_care_access.py, the DIALOG+ tests."""
    return token_for("system/*.*", "access/all-people", partner=PARTNER, name=PARTNER_NAME)


@pytest.fixture
def trust(token_for) -> dict:
    """Headers of partner RV3 as a partner: every SMART scope, limited to the people it cares for."""
    return token_for("system/*.*", partner=PARTNER, name=PARTNER_NAME)


# -- the app --------------------------------------------------------------------------------------------
@pytest.fixture
def client(bridge: Bridge, tokens: TokenStore) -> Iterator[OutcomeCheckingClient]:
    # raise_server_exceptions=False: a 500 is answered as a client would see it, not re-raised here.
    with OutcomeCheckingClient(create_app(bridge, tokens=tokens), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def create(client: OutcomeCheckingClient, auth: dict) -> Callable[[dict], dict]:
    """POST a resource with the full-scope token; the stored resource (201 asserted)."""
    def post(resource: dict) -> dict:
        return expect(client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=auth), 201)

    return post


# -- resource builders -----------------------------------------------------------------------------------
def nhs_number(serial: int) -> str:
    """A valid NHS number from the never-issued 999 range: 999 + 6 digits + mod-11 check digit."""
    for n in range(serial, serial + 20):
        digits = f"999{n:06d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        if check != 10 and len(set(digits)) > 1:
            return digits + str(check)
    raise ValueError(f"no valid NHS number near serial {serial}")


@pytest.fixture
def make_patient() -> Callable[..., dict]:
    """A valid bridge-patient; `nhs` is a serial turned into a valid NHS number."""
    template = example("bridge-patient/valid-patient-nhs-number-verified.json")

    def make(nhs: int = 1, *, family: str = "Pemberton", given: str = "Rosa", birth_date: str = "1986-09-23",
             resource_id: str | None = None) -> dict:
        patient = copy.deepcopy(template)
        patient.pop("text")  # the narrative would contradict the changed name
        patient.pop("id")
        if resource_id:
            patient["id"] = resource_id
        patient["identifier"] = [{**patient["identifier"][0], "value": nhs_number(nhs)}]
        patient["name"] = [{"use": "official", "family": family, "given": [given]}]
        patient["birthDate"] = birth_date
        return patient

    return make


@pytest.fixture
def make_response() -> Callable[..., dict]:
    """A valid DIALOG PROM QuestionnaireResponse, with the searchable elements as arguments."""
    template = example("dialog-questionnaire-response/valid-prom-assessment-complete.json")

    def make(subject: str = "Patient/example-patient-01", *, authored: str = "2024-02-06T10:15:00+00:00",
             timepoint: str = "assessment", status: str = "completed",
             author: str = "Practitioner/example-key-worker-01") -> dict:
        response = copy.deepcopy(template)
        response.pop("id")
        response["subject"] = {"reference": subject}
        response["source"] = {"reference": subject}
        response["authored"] = authored
        response["status"] = status
        response["author"] = {"reference": author}
        for ext in response["extension"]:
            if ext["url"] == TIMEPOINT_EXT:
                ext["valueCoding"] = {**ext["valueCoding"], "code": timepoint}
                ext["valueCoding"].pop("display", None)
        return response

    return make


@pytest.fixture
def care_planning_response() -> dict:
    response = example("dialog-questionnaire-response/valid-care-planning-partial.json")
    response.pop("id")
    return response


@pytest.fixture
def make_observation() -> Callable[..., dict]:
    """A valid DIALOG score Observation: `score` is sqol-mean or treatment-satisfaction-mean."""
    templates = {score: example(f"dialog-score-observation/valid-{score}.json")
                 for score in ("sqol-mean", "treatment-satisfaction-mean")}

    def make(subject: str = "Patient/example-patient-01", *, derived_from: str = "QuestionnaireResponse/x",
             effective: str = "2024-02-06T10:15:00+00:00", score: str = "sqol-mean") -> dict:
        observation = copy.deepcopy(templates[score])
        observation.pop("id")
        observation["subject"] = {"reference": subject}
        observation["performer"] = [{"reference": subject}]
        observation["derivedFrom"] = [{"reference": derived_from}]
        observation["effectiveDateTime"] = effective
        return observation

    return make


@pytest.fixture
def make_care_plan() -> Callable[..., dict]:
    """A valid DIALOG+ CarePlan: `category` 10 (care plan) or 12 (crisis plan, part of another)."""
    templates = {"10": example("dialog-plus-careplan/valid-dialog-plus-plan.json"),
                 "12": example("dialog-plus-careplan/valid-crisis-plan.json")}

    def make(subject: str = "Patient/example-patient-01", *, status: str = "active", category: str = "10") -> dict:
        plan = copy.deepcopy(templates[category])
        plan.pop("id")
        plan["subject"] = {"reference": subject}
        plan["status"] = status
        return plan

    return make
