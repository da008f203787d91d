"""Benchmark: the store's bulk write path (create_many, executemany) against one create per transaction.

On a fresh SQLite file, and on a fresh PostgreSQL schema as well when FHIR_BRIDGE_TEST_POSTGRES_URL
is set (the schema is dropped afterwards):
  1. bulk: N small DIALOG QuestionnaireResponses through uow.create_many, 1,000 per unit of work;
  2. one by one: 5,000 through uow.create, each in its own unit of work (the REST API's path).
Each write also stores its history row and search index rows. A fixed five-parameter indexer stands
in for the real one, so the figures are the store's own and not the indexer's.

    python bench/store.py [N]        (default 100000)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


from fhir_bridge.store.database import open_database
from fhir_bridge.store.migrations import migrate
from fhir_bridge.store.repository import Repository

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.postgres import postgres_schema  # noqa: E402 - one schema-isolation helper for tests and benches

BASE = "https://fhir-bridge.example.org"
DOMAINS = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
           "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings"]
BATCH = 1_000
ONE_BY_ONE = 5_000


class QuestionnaireResponseIndexer:
    """The rows a DIALOG response gets: identifier, status, subject, questionnaire, authored."""

    def rows(self, resource: dict) -> dict[str, list[dict]]:
        subject = resource["subject"]["reference"].partition("/")
        authored = int(resource["authored"][:4]) * 1_000_000
        return {
            "token": [{"param": "identifier", "system": resource["identifier"][0]["system"],
                       "code": resource["identifier"][0]["value"]},
                      {"param": "status", "system": None, "code": resource["status"]}],
            "reference": [{"param": "subject", "target_type": subject[0], "target_id": subject[2], "url": None},
                          {"param": "questionnaire", "target_type": None, "target_id": None,
                           "url": resource["questionnaire"]}],
            "date": [{"param": "authored", "low": authored, "high": authored + 999_999}],
        }


def response(n: int) -> dict:
    return {
        "resourceType": "QuestionnaireResponse", "id": f"qr-{n}",
        "identifier": [{"system": f"{BASE}/Id/dialog-response", "value": str(n)}],
        "questionnaire": f"{BASE}/Questionnaire/dialog", "status": "completed",
        "subject": {"reference": f"Patient/p-{n % 5_000}"}, "authored": "2024-03-01T10:00:00Z",
        "item": [{"linkId": domain, "answer": [{"valueCoding": {
            "system": f"{BASE}/CodeSystem/dialog-rating", "code": str(1 + (n + i) % 7)}}]}
            for i, domain in enumerate(DOMAINS)],
    }


def run(url: str, data_dir: Path, total: int) -> None:
    database = open_database(url, data_dir)
    try:
        migrate(database)
        repo = Repository(database, QuestionnaireResponseIndexer())
        bulk = [response(n) for n in range(total)]
        started = time.perf_counter()
        for start in range(0, total, BATCH):
            with repo.unit_of_work() as uow:
                uow.create_many(bulk[start:start + BATCH])
        bulk_rate = total / (time.perf_counter() - started)

        single = [response(n) for n in range(total, total + ONE_BY_ONE)]
        started = time.perf_counter()
        for resource in single:
            with repo.unit_of_work() as uow:
                uow.create(resource)
        single_rate = ONE_BY_ONE / (time.perf_counter() - started)
        assert repo.count("QuestionnaireResponse") == total + ONE_BY_ONE
    finally:
        database.dispose()
    print(f"{database.dialect:<10} create_many x{BATCH}: {bulk_rate:>9,.0f} resources/s ({total:,})   "
          f"one create per transaction: {single_rate:>7,.0f} resources/s ({ONE_BY_ONE:,})   "
          f"ratio {bulk_rate / single_rate:.1f}x")


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{folder}/bench.db", Path(folder), total)
    if server := os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL"):
        with tempfile.TemporaryDirectory() as folder, contextmanager(postgres_schema)(server) as url:
            run(url, Path(folder), total)


if __name__ == "__main__":
    main()
