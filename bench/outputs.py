"""Benchmark: pooled DIALOG outcome reports (report part of issue 6; bench/submission.py times the
MHSDS submission) on a SQLite store of 100,000 people and 1,000,000 DIALOG responses.

The data goes straight into the store through the repository's bulk path (UnitOfWork.create_many,
5,000 resources a unit of work) with the real score rows (dialog_scores) and person rows; a fixed
indexer writes only the index rows reports read (a referral's performer, a care plan's subject,
category and status), so the figures are the store's and the report's, not the search indexer's.

Per person: an assessment, 5-8 reviews and a discharge as PROMs, care-planning entries, and for one
in ten a possible duplicate; one referral (team) each; a third hold a DIALOG+ care plan.
Prints the generation rate, the store's write time, and each report's time.

    python bench/outputs.py [PEOPLE] [--db FILE] [--save DIR]   (default 100000; 10 DIALOGs a person)

--db FILE keeps the store in FILE: generated there when FILE does not exist, reused as it is when it
does (the generation takes minutes at full size), so report changes can be timed again alone.
--save DIR writes each report's JSON there, and its raw figures (numerators, denominators, people)
beside it: compare two runs for identical results.
Every figure is printed with the 1-minute load average beside it (the machine may be shared), and
the process's peak RSS is printed after the store phase and after each report.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import resource
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.careplan.codes import PLAN_TYPE_SYSTEM  # noqa: E402
from fhir_bridge.config import Settings  # noqa: E402
from fhir_bridge.measures import load_dialog_definition  # noqa: E402
from fhir_bridge.pipelines.score_rows import ScoreRows  # noqa: E402
from fhir_bridge.reports import ReportRequest, build_outcome_report, to_html, to_json  # noqa: E402
from fhir_bridge.store.database import open_database  # noqa: E402
from fhir_bridge.store.migrations import migrate  # noqa: E402
from fhir_bridge.store.outcome_fields import ENTRY_FLAG_SYSTEM, POSSIBLE_DUPLICATE  # noqa: E402
from fhir_bridge.store.repository import Repository  # noqa: E402

BASE = "https://fhir-bridge.example.org"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
DOMAINS = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
           "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings"]
ETHNIC = list("ABCDEFGHJKLMNPRS") + ["Z", "99"]
ORGS = ["RV3", "RAT", "RQY", "X9V2K", "X4T7P"]
TEAMS = [f"CareTeam/team-{n:02d}" for n in range(40)]
DIALOGS_PER_PERSON = 10
BATCH = 5_000


class ReportIndexer:
    """Only the index rows the reports join: ServiceRequest.performer, CarePlan subject/category/status."""

    def rows(self, resource: dict) -> dict[str, list[dict]]:
        kind = resource["resourceType"]
        if kind == "ServiceRequest":
            team = resource["performer"][0]["reference"].partition("/")
            return {"reference": [{"param": "performer", "target_type": team[0], "target_id": team[2], "url": None}]}
        if kind == "CarePlan":
            subject = resource["subject"]["reference"].partition("/")
            return {"reference": [{"param": "subject", "target_type": subject[0], "target_id": subject[2], "url": None}],
                    "token": [{"param": "category", "system": PLAN_TYPE_SYSTEM, "code": "10"},
                              {"param": "status", "system": None, "code": "active"}]}
        return {}


def _extension(url: str, **value) -> dict:
    return {"url": f"{BASE}/StructureDefinition/{url}", **value}


PURPOSE = {p: _extension("dialog-collection-purpose", valueCoding={"system": f"{BASE}/CodeSystem/dialog-purpose", "code": p})
           for p in ("prom", "care-planning")}
TIMEPOINT = {t: _extension("dialog-timepoint", valueCoding={"system": f"{BASE}/CodeSystem/dialog-timepoint", "code": t})
             for t in ("assessment", "review", "discharge")}
RECORDER = {o: _extension("recording-organization", valueReference={"identifier": {"system": ODS, "value": o}})
            for o in ORGS}
ANSWERS = {r: [{"valueCoding": {"system": f"{BASE}/CodeSystem/dialog-rating", "code": str(r)}}] for r in range(1, 9)}


def people_and_dialogs(people: int, seed: int = 6):
    """Yields batches of resources; every dict is built from shared parts (the generation is cheap)."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 2, 9, tzinfo=timezone.utc)
    batch: list[dict] = []
    for n in range(people):
        pid, org = f"p{n}", ORGS[n % len(ORGS)]
        born = date(1940 + n % 65, 1 + n % 12, 1 + n % 28).isoformat()
        batch.append({"resourceType": "Patient", "id": pid, "gender": ("female", "male", "other", "unknown")[n % 4 if n % 50 else 3],
                      "birthDate": born, "extension": [{
                          "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
                          "valueCodeableConcept": {"coding": [{
                              "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                              "code": ETHNIC[n % len(ETHNIC)]}]}}]})
        batch.append({"resourceType": "ServiceRequest", "id": f"r{n}", "status": "active", "intent": "order",
                      "subject": {"reference": f"Patient/{pid}"}, "performer": [{"reference": TEAMS[n % len(TEAMS)]}]})
        if n % 3 == 0:
            batch.append({"resourceType": "CarePlan", "id": f"cp{n}", "status": "active", "intent": "plan",
                          "subject": {"reference": f"Patient/{pid}"}})
        level = rng.randint(2, 6)
        when = start + timedelta(days=rng.randint(0, 600))
        reviews = rng.randint(5, 8)
        for k in range(DIALOGS_PER_PERSON):
            if k == 0:
                purpose, timepoint = "prom", "assessment"
            elif k <= reviews:
                purpose, timepoint = ("prom", "review") if k % 3 else ("care-planning", None)
            else:
                purpose, timepoint = ("prom", "discharge") if k == reviews + 1 else ("care-planning", None)
            level = min(7, max(1, level + rng.choice((-1, 0, 0, 1, 1))))
            extension = [PURPOSE[purpose], *([TIMEPOINT[timepoint]] if timepoint else []), RECORDER[org]]
            response = {"resourceType": "QuestionnaireResponse", "id": f"q{n}-{k}", "extension": extension,
                        "questionnaire": f"{BASE}/Questionnaire/dialog|1.0.0", "status": "completed",
                        "subject": {"reference": f"Patient/{pid}"}, "basedOn": [{"reference": f"ServiceRequest/r{n}"}],
                        "authored": when.isoformat().replace("+00:00", "Z"),
                        "item": [{"linkId": d, "answer": ANSWERS[min(7, max(1, level + (i % 3) - 1))]}
                                 for i, d in enumerate(DOMAINS) if (i + k) % 13]}
            if k == 2 and n % 10 == 0:
                response["meta"] = {"tag": [{"system": ENTRY_FLAG_SYSTEM, "code": POSSIBLE_DUPLICATE}]}
            batch.append(response)
            when += timedelta(days=rng.randint(14, 60))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def _peak_rss() -> str:
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"


def _generate(repo: Repository, people: int) -> None:
    started = time.perf_counter()
    generated = sum(len(b) for b in people_and_dialogs(min(people, 10_000)))
    gen_seconds = time.perf_counter() - started
    print(f"generation alone: {generated:,} resources in {gen_seconds:.2f} s "
          f"({generated / gen_seconds:,.0f}/s) for {min(people, 10_000):,} people [{_load()}]", flush=True)

    started, written = time.perf_counter(), 0
    for batch in people_and_dialogs(people):
        with repo.unit_of_work() as uow:
            uow.create_many(batch)
        written += len(batch)
    store_seconds = time.perf_counter() - started
    dialogs = people * DIALOGS_PER_PERSON
    print(f"store (generation + create_many, score + person rows): {written:,} resources ({dialogs:,} DIALOGs) "
          f"in {store_seconds:.1f} s = {written / store_seconds:,.0f} resources/s; [{_load()}; {_peak_rss()}]",
          flush=True)


def _file_size(path: Path) -> str:
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return f"{size / 2**20:,.0f} MiB"


def main(people: int, db: Path | None = None, save: Path | None = None) -> None:
    settings = Settings()
    definition = load_dialog_definition(settings.profiles_dir, settings.terminology_dir)
    with tempfile.TemporaryDirectory() as folder:
        path = db or Path(folder, "outputs.db")
        fresh = not path.exists()
        database = open_database(f"sqlite:///{path}", path.parent)
        migrate(database)
        repo = Repository(database, ReportIndexer(), score_rows=ScoreRows(definition, {"sqol": 1, "treatment": 1}))
        if fresh:
            _generate(repo, people)
        else:
            with database.connect() as connection:
                held = connection.execute(text("SELECT count(*) FROM dialog_scores")).scalar()
            print(f"reusing {path}: {held:,} DIALOGs (PEOPLE is ignored)")
        print(f"store file {path}: {_file_size(path)}", flush=True)

        cases = [("population, all subgroups, 2024", ReportRequest(start=date(2024, 1, 1), end=date(2024, 12, 31))),
                 ("population, all subgroups, all time", ReportRequest()),
                 ("service (one organisation), all subgroups", ReportRequest(level="service", organizations=("RV3",))),
                 ("service (one team), all subgroups, 2024",
                  ReportRequest(level="service", teams=("CareTeam/team-07",), start=date(2024, 1, 1),
                                end=date(2024, 12, 31))),
                 ("individual", ReportRequest(level="individual", patient_id="p42"))]
        if save:
            save.mkdir(parents=True, exist_ok=True)
        for n, (label, request) in enumerate(cases):
            started = time.perf_counter()
            report = build_outcome_report(repo, definition, request, today=date(2025, 6, 30))
            seconds = time.perf_counter() - started
            html = to_html(report)
            people_figure = report.figure("people")
            print(f"report {label}: {seconds:.2f} s ({len(report.figures):,} figures; people "
                  f"{people_figure.shown.text if people_figure else '-'}; HTML {len(html) / 1024:,.0f} KiB) "
                  f"[{_load()}; {_peak_rss()}]", flush=True)
            if save:
                (save / f"report-{n}.json").write_bytes(to_json(report))
                raw = {"figures": [dataclasses.asdict(f) for f in report.figures],
                       "trend": [{k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in t.items()}
                                 for t in report.trend],
                       "dialogs": report.dialogs, "episodes": report.episodes}
                (save / f"report-{n}.raw.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
        database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("people", nargs="?", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="the SQLite file: generated when missing, reused when present")
    parser.add_argument("--save", type=Path, help="a folder for each report's JSON")
    arguments = parser.parse_args()
    main(arguments.people, arguments.db, arguments.save)
