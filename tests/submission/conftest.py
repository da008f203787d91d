"""A store holding exactly the resources a test gives, each written at its meta.lastUpdated (the
store's clock is set to it), through the repository alone: no validation, guards or Provenance,
so a test can hold what an older release or a careless feed stored."""
from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.fhir.dates import to_microseconds
from fhir_bridge.pipelines.submission_mhsds import for_bridge
from fhir_bridge.submission import DialogPolicy, Period, load_schema, validate_xml
from fhir_bridge.submission.files import read_table
from tests.postgres import BACKENDS, throwaway_database_url

CREATED = to_microseconds("2026-11-05T10:00:00Z")
SCHEMA = Path(__file__).resolve().parents[2] / "mappings" / "mhsds-out" / "mhsds-dialog.xsd"


class SettableClock:
    def __init__(self) -> None:
        self.now = to_microseconds("2026-01-01T00:00:00Z")

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=BACKENDS)
def store_of(request, tmp_path, validator):
    """store_of(resources, **settings) -> a Bridge whose store holds them: SQLite, and PostgreSQL
    too when FHIR_BRIDGE_TEST_POSTGRES_URL is set (.ci/run), each store a fresh database."""
    made: list[Bridge] = []
    urls: list = []

    def make(resources: list[dict], **settings) -> Bridge:
        clock = SettableClock()
        urls.append(throwaway_database_url(request.param, tmp_path / f"store{len(made)}" / "fhir-bridge.db"))
        settings.setdefault("database_url", next(urls[-1]))
        bridge = Bridge(Settings(data_dir=tmp_path / f"store{len(made)}", **settings), clock=clock, validator=validator)
        bridge.test_clock = clock
        made.append(bridge)
        add(bridge, resources)
        return bridge

    yield make
    for bridge in made:
        bridge.close()
    for url in urls:
        next(url, None)  # drops the PostgreSQL schema


def add(bridge: Bridge, resources: list[dict]) -> None:
    for resource in resources:
        bridge.test_clock.now = to_microseconds(resource["meta"]["lastUpdated"])
        with bridge.repository.unit_of_work() as uow:
            uow.update(resource)


def submit(bridge: Bridge, out: Path, period: str = "2026-10", provider: str = "RXX", *,
           policy: DialogPolicy | None = None, created: int = CREATED, submission_id: str | None = None):
    new_id = (lambda: submission_id) if submission_id else (lambda: str(uuid.uuid4()))
    submission = for_bridge(bridge, clock=lambda: created, new_id=new_id)
    if policy is not None:
        submission.policy = policy
    result = submission.run(Period.parse(period), provider, out, created_by="test")
    # every file a test makes is checked against the shipped schema, not only the run's own check
    assert validate_xml(load_schema(SCHEMA), result.xml) is None
    return result


def tables(result) -> dict[str, list[dict[str, str]]]:
    """The CSV tables of a result, as rows of field -> value ("" left out)."""
    found = {}
    for path in sorted(result.csv_folder.glob("*.csv")):
        header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
        found[path.stem] = [dict(zip(header, values)) for values in read_table(path)]
    return found


def left_out(result) -> list[dict]:
    return orjson.loads(result.report_json.read_bytes())["leftOut"]["records"]


def reasons(result) -> set[tuple[str, str]]:
    return {(item["record"], item["reason"]) for item in left_out(result)}


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "out"


PERIOD = Period.parse("2026-10")
