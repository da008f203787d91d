"""Benchmark: one month's MHSDS-style submission from a large store (issue 6).

1. Generates a store straight into SQLite through the repository's bulk path (UnitOfWork.create_many):
   PEOPLE Patients, each with a referral (a fifth also an older, discharged one), a RiO-style key
   worker CareTeam, two care contacts around the month; a third have a DIALOG+ care plan (half
   agreed, half changed again in the month); RESPONSES DIALOG QuestionnaireResponses spread evenly
   over MONTHS months ending with the reported one (70% PROM, 30% care planning; timepoints mixed).
   The repository is given a lean indexer and score-row function that write exactly the rows the
   real ones write for what the submission reads (the `subject` reference, the `occurrence` / `date`
   ranges, the dialog_scores row), checked against the real ones on a sample first: the real
   indexer and scorer run at ~1,800 responses/s here, which would make the generation itself
   take ten minutes.
2. Runs `fhir-bridge submission mhsds` on it in a child process (start-up included) and reports the
   wall time, the child's peak RSS, the rows written and the file sizes.

Targets (issue 6, this 2-core machine): under 60 s and peak RSS under 300 MB with 100,000 people
and 1,000,000 DIALOG responses. Measured (the machine shared with other work, load ~2):
- 24 months: generation 468 s (10.3 GB store); October: 91,962 people, 25,089 DIALOGs submitted
  (235,804 MHS606 rows, 81k responses read), 34,974 records left out, a 200 MB file: 45-48 s wall
  with start-up, peak RSS 131 MB;
- 12 months (twice the month's DIALOGs): generation 286 s; 98,764 people, 49,518 DIALOGs (465,700
  rows), a 277 MB file: 55 s, peak RSS 131 MB.
With 5,000 people the peak is 83 MB: what grows is the key sets of the file's check (~100 bytes a
person, referral and contact), not the DIALOG items, which stream.

    python bench/submission.py [--people 100000] [--responses 1000000] [--months 24] [--store DIR]
    (--store: generate into DIR once and reuse it on later runs with the same figures)
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.config import Settings  # noqa: E402
from fhir_bridge.measures import load_dialog_definition  # noqa: E402
from fhir_bridge.pipelines.score_rows import ScoreRows  # noqa: E402
from fhir_bridge.store.database import open_database  # noqa: E402
from fhir_bridge.store.indexer import MAX_TIME, Indexer, date_range  # noqa: E402
from fhir_bridge.store.migrations import migrate  # noqa: E402
from fhir_bridge.store.repository import Repository  # noqa: E402
from fhir_bridge.store.schema import DIALOG_DOMAINS  # noqa: E402
from fhir_bridge.store.search_parameters import SearchParameterRegistry  # noqa: E402
from fhir_bridge.fhir.dates import to_microseconds  # noqa: E402
from fhir_bridge.submission import Period  # noqa: E402
from fhir_bridge.validation import Validator  # noqa: E402

BASE = "https://fhir-bridge.example.org"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
PROVIDER = "RXX"
PERIOD = Period.parse("2026-10")
DOMAINS = [d.replace("_", "-") for d in DIALOG_DOMAINS]
BATCH = 5_000
READ = {"ServiceRequest": ("subject", "occurrence"), "Encounter": ("subject", "date"), "CareTeam": ("subject", None),
        "CarePlan": ("subject", None), "QuestionnaireResponse": ("subject", None), "Patient": (None, None)}


# -- the lean derived rows, and their check against the real ones ------------------------------------
class LeanIndexer:
    """The search rows the submission reads: `subject` references, and the date range of the
    parameter it filters on. Everything else a store holds is left out to keep generation quick."""

    def rows(self, resource: dict) -> dict[str, list[dict]]:
        reference_param, date_param = READ[resource["resourceType"]]
        rows: dict[str, list[dict]] = {}
        if reference_param:
            kind, _, target = resource["subject"]["reference"].partition("/")
            rows["reference"] = [{"param": reference_param, "target_type": kind, "target_id": target, "url": None}]
        if date_param:
            period = resource.get("occurrencePeriod") or resource.get("period")
            low = date_range(period["start"])[0]
            high = date_range(period["end"])[1] if period.get("end") else MAX_TIME
            rows["date"] = [{"param": date_param, "low": low, "high": high}]
        return rows


class LeanScores:
    """The dialog_scores row of a generated response, from the ratings the generator drew."""

    def __init__(self):
        self.ratings: dict[str, dict[str, int]] = {}

    def __call__(self, resource: dict) -> dict | None:
        if resource["resourceType"] != "QuestionnaireResponse":
            return None
        ratings = self.ratings.pop(resource["id"])
        sqol = [r for d, r in ratings.items() if DOMAINS.index(d) < 8 and r != 8]
        treatment = [r for d, r in ratings.items() if DOMAINS.index(d) >= 8 and r != 8]
        row = {"subject_type": "Patient", "subject_id": resource["subject"]["reference"][8:],
               "questionnaire": resource["questionnaire"], "authored": to_microseconds(resource["authored"]),
               "authored_text": resource["authored"], "status": resource["status"],
               "purpose": resource["extension"][0]["valueCoding"]["code"],
               "timepoint": resource["extension"][1]["valueCoding"]["code"],
               "recording_organization": f"{ODS}|{PROVIDER}", "author": None,
               "not_applicable": ",".join(d for d, r in ratings.items() if r == 8),
               "sqol_mean": sum(sqol) / len(sqol) if sqol else None, "sqol_answered": len(sqol),
               "treatment_satisfaction_mean": sum(treatment) / len(treatment) if treatment else None,
               "treatment_satisfaction_answered": len(treatment),
               "dissatisfied_count": sum(1 for r in ratings.values() if r <= 3)}
        for domain, column in zip(DOMAINS, DIALOG_DOMAINS):
            rating = ratings.get(domain)
            row[f"rating_{column}"] = rating if rating not in (None, 8) else None
            row[f"help_{column}"] = None
        return row


def check_lean_rows(sample: list[dict], scores: LeanScores) -> None:
    """The lean rows equal what the real indexer and scorer write for the columns the submission reads."""
    settings = Settings()
    validator = Validator.load(settings)
    real_index = Indexer(SearchParameterRegistry.load(validator.package))
    real_scores = ScoreRows(load_dialog_definition(settings.profiles_dir, settings.terminology_dir),
                            {"sqol": 1, "treatment": 1})
    lean = LeanIndexer()
    for resource in sample:
        mine, theirs = lean.rows(resource), real_index.rows(resource)
        for kind, rows in mine.items():
            for row in rows:
                assert row in [{k: r.get(k) for k in row} for r in theirs.get(kind, [])], (resource["resourceType"], row)
        if resource["resourceType"] == "QuestionnaireResponse":
            ratings = dict(scores.ratings[resource["id"]])
            real = real_scores(resource)
            row = scores(resource)
            scores.ratings[resource["id"]] = ratings
            for key in ("subject_id", "authored", "authored_text", "status", "purpose", "timepoint",
                        "recording_organization", "not_applicable", *[f"rating_{c}" for c in DIALOG_DOMAINS]):
                assert row[key] == real[key], (key, row[key], real[key])


# -- generation ------------------------------------------------------------------------------------
def nhs_number(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        if check != 10 and len(set(digits)) > 1:
            return "".join(map(str, digits)) + str(check)


def moment(day: date, rng: random.Random) -> str:
    return datetime(day.year, day.month, day.day, rng.randrange(9, 18), rng.randrange(60), tzinfo=timezone.utc).isoformat()


def people(n: int, rng: random.Random, months: int):
    """Per person: their resources except DIALOGs, and the span their DIALOGs fall in."""
    first_day = (PERIOD.start.replace(day=1) - timedelta(days=30 * (months - 1))).replace(day=1)
    for p in range(n):
        pid = f"p{p:07d}"
        patient = {"resourceType": "Patient", "id": pid,
                   "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number(rng),
                                   "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                                                  "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "code": "01"}]}}]},
                                  {"system": f"{BASE}/Id/rio-client/{PROVIDER}", "value": str(1_000_000 + p)}],
                   "name": [{"family": "Person", "given": [str(p)]}], "gender": rng.choice(["male", "female"]),
                   "birthDate": f"{rng.randrange(1940, 2005)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}",
                   "address": [{"postalCode": f"E{rng.randrange(1, 20)} {rng.randrange(10)}AB"}],
                   "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
                                  "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland",
                                                                       "code": rng.choice("ABCDEFGHJKLMNPRSZ")}]}}]}
        received = first_day + timedelta(days=rng.randrange(0, 30 * months - 60))
        discharged = received + timedelta(days=rng.randrange(200, 900)) if rng.random() < 0.3 else None
        referrals = [_referral(f"r{p:07d}", pid, received, discharged, rng)]
        if rng.random() < 0.2:
            old = received - timedelta(days=rng.randrange(400, 900))
            referrals.append(_referral(f"q{p:07d}", pid, old, old + timedelta(days=300), rng))
        contacts = [_contact(f"c{p:07d}{k}", pid, referrals[0]["id"], PERIOD.start + timedelta(days=rng.randrange(-15, 45)), rng)
                    for k in range(2)]
        team = {"resourceType": "CareTeam", "id": f"t{p:07d}", "status": "active", "subject": {"reference": f"Patient/{pid}"},
                "participant": [{"role": [{"coding": [{"system": f"{BASE}/CodeSystem/careteam-role", "code": "key-worker"}]}],
                                 "member": {"type": "Practitioner", "identifier": {"system": f"{BASE}/Id/rio-staff/{PROVIDER}",
                                                                                   "value": f"STF{rng.randrange(500):04d}"}},
                                 "period": {"start": received.isoformat()}}]}
        plans = []
        if rng.random() < 1 / 3:
            plans.append(_plan(f"pl{p:07d}", pid, PERIOD.start + timedelta(days=rng.randrange(-200, 25)), rng.random() < 0.5))
        yield patient, referrals, contacts, team, plans, (first_day, PERIOD.end)


def _referral(rid, pid, received, discharged, rng):
    period = {"start": received.isoformat(), **({"end": discharged.isoformat()} if discharged else {})}
    return {"resourceType": "ServiceRequest", "id": rid, "status": "completed" if discharged else "active",
            "intent": "order", "subject": {"reference": f"Patient/{pid}"}, "authoredOn": received.isoformat(),
            "identifier": [{"system": f"{BASE}/Id/rio-referral/{PROVIDER}", "value": rid}],
            "occurrencePeriod": period,
            "performerType": {"coding": [{"system": f"{BASE}/CodeSystem/mhsds-service-team-type", "code": rng.choice(["A06", "A14"])}]},
            "performer": [{"type": "Organization", "identifier": {"system": ODS, "value": PROVIDER}},
                          {"type": "CareTeam", "identifier": {"system": f"{BASE}/Id/rio-team/{PROVIDER}", "value": "CMHT-1"}}]}


def _contact(cid, pid, rid, day, rng):
    return {"resourceType": "Encounter", "id": cid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "identifier": [{"system": f"{BASE}/Id/rio-contact/{PROVIDER}", "value": cid}],
            "subject": {"reference": f"Patient/{pid}"}, "basedOn": [{"reference": f"ServiceRequest/{rid}"}],
            "period": {"start": moment(day, rng)},
            "extension": [{"url": f"{BASE}/StructureDefinition/encounter-attendance",
                           "valueCoding": {"system": f"{BASE}/CodeSystem/mhsds-attendance", "code": rng.choice("555623")}}],
            "type": [{"coding": [{"system": f"{BASE}/CodeSystem/mhsds-consultation-mechanism", "code": rng.choice(["01", "02", "11"])}]}],
            "participant": [{"individual": {"type": "Practitioner", "identifier": {"system": f"{BASE}/Id/rio-staff/{PROVIDER}", "value": "STF0001"}}}]}


def _plan(plan_id, pid, created, agreed):
    plan = {"resourceType": "CarePlan", "id": plan_id, "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": f"{BASE}/CodeSystem/mhsds-care-plan-type", "code": "10"}]}],
            "subject": {"reference": f"Patient/{pid}"}, "created": f"{created.isoformat()}T11:00:00+00:00",
            "period": {"start": created.isoformat()}}
    if agreed:
        plan["extension"] = [{"url": f"{BASE}/StructureDefinition/careplan-agreement", "extension": [
            {"url": "agreedBy", "valueCoding": {"system": f"{BASE}/CodeSystem/careplan-agreed-by", "code": "person"}},
            {"url": "agreedDateTime", "valueDateTime": f"{created.isoformat()}T11:30:00+00:00"}]}]
    return plan


def dialog(qid, pid, rid, at: str, rng: random.Random, scores: LeanScores) -> dict:
    ratings = {d: rng.choice((1, 2, 3, 4, 4, 5, 5, 6, 7, 8)) if rng.random() > 0.05 else 8 for d in DOMAINS}
    scores.ratings[qid] = ratings
    purpose = "prom" if rng.random() < 0.7 else "care-planning"
    return {"resourceType": "QuestionnaireResponse", "id": qid,
            "extension": [{"url": f"{BASE}/StructureDefinition/dialog-collection-purpose",
                           "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-purpose", "code": purpose}},
                          {"url": f"{BASE}/StructureDefinition/dialog-timepoint",
                           "valueCoding": {"system": f"{BASE}/CodeSystem/dialog-timepoint",
                                           "code": rng.choice(["assessment", "review", "review", "discharge"]) if purpose == "prom" else "other"}},
                          {"url": f"{BASE}/StructureDefinition/recording-organization",
                           "valueReference": {"identifier": {"system": ODS, "value": PROVIDER}}}],
            "questionnaire": f"{BASE}/Questionnaire/dialog|1.0.0", "status": "completed",
            "subject": {"reference": f"Patient/{pid}"}, "authored": at, "basedOn": [{"reference": f"ServiceRequest/{rid}"}],
            "author": {"type": "Practitioner", "identifier": {"system": f"{BASE}/Id/rio-staff/{PROVIDER}", "value": "STF0001"}},
            "item": [{"linkId": d, "answer": [{"valueCoding": {"system": f"{BASE}/CodeSystem/dialog-rating", "code": str(r)}}]}
                     for d, r in ratings.items()]}


def generate(folder: Path, n_people: int, n_responses: int, months: int) -> dict:
    gc.disable()   # millions of short-lived dicts, no cycles: the collector's passes cost a third of the time
    rng = random.Random(6)
    scores = LeanScores()
    database = open_database(f"sqlite:///{folder / 'fhir-bridge.db'}", folder)
    migrate(database)
    now = [to_microseconds("2026-01-01T00:00:00Z")]

    def clock() -> int:   # a version's time: "created or changed in the month" reads it
        now[0] += 1000
        return now[0]

    repository = Repository(database, LeanIndexer(), clock=clock, score_rows=scores)
    counts: dict[str, int] = {}
    pending: list[dict] = []
    sampled: list[dict] = []

    def put(resource: dict) -> None:
        pending.append(resource)
        if len(sampled) < 300 and resource["resourceType"] != "Patient":
            sampled.append(resource)
        if len(pending) >= BATCH:
            flush()

    def flush() -> None:
        if pending:
            with repository.unit_of_work() as uow:
                uow.create_many(pending)
            for r in pending:
                counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
            pending.clear()

    per_person = n_responses // n_people
    extra = n_responses - per_person * n_people
    plans_by_day: dict[str, list[dict]] = {}   # written last, each at the time it was made
    started = time.perf_counter()
    checked = False
    for number, (patient, referrals, contacts, team, plans, (first_day, last_day)) in enumerate(people(n_people, rng, months)):
        for resource in (patient, *referrals, *contacts, team):
            put(resource)
        for plan in plans:
            plans_by_day.setdefault(plan["period"]["start"], []).append(plan)
        span = (last_day - first_day).days
        for k in range(per_person + (1 if number < extra else 0)):
            day = first_day + timedelta(days=rng.randrange(span + 1))
            put(dialog(f"d{number:07d}{k:02d}", patient["id"], referrals[0]["id"], moment(day, rng), rng, scores))
        if not checked and len(sampled) >= 300:
            check_lean_rows(sampled, scores)
            checked = True
    flush()
    later = []   # half the plans changed again on 20 October: a second version
    for day, plans in sorted(plans_by_day.items()):
        now[0] = to_microseconds(f"{day}T09:00:00Z")
        with repository.unit_of_work() as uow:
            uow.create_many(plans)
        counts["CarePlan"] = counts.get("CarePlan", 0) + len(plans)
        later += [{**plan, "title": "reviewed"} for plan in plans if rng.random() < 0.5]
    now[0] = to_microseconds(f"{PERIOD.start.isoformat()[:8]}20T09:00:00Z")
    for start in range(0, len(later), BATCH):
        with repository.unit_of_work() as uow:
            uow.put_many(later[start:start + BATCH])
    counts["CarePlan versions written on 20 October"] = len(later)
    counts["seconds"] = round(time.perf_counter() - started, 1)
    database.dispose()
    return counts


_CHILD = """
import sys
from fhir_bridge.cli import main
try:
    main()
finally:
    # VmHWM: this process's own peak (getrusage counts the pages of the parent it was forked from)
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
    print(f"peak-rss-kb {peak}", file=sys.stderr)
"""


def run_submission(folder: Path, out: Path) -> tuple[float, float, str]:
    env = {**os.environ, "FHIR_BRIDGE_DATA_DIR": str(folder), "FHIR_BRIDGE_DATABASE_URL": ""}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _CHILD, "submission", "mhsds", "--period", PERIOD.month,
                             "--provider", PROVIDER, "--out", str(out), "--by", "bench"],
                            env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"submission failed ({result.returncode}): {result.stderr or result.stdout}")
    peak_kb = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak-rss-kb"))
    return seconds, peak_kb / 1024, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--store", type=Path, help="generate here once; reuse on later runs")
    args = parser.parse_args()
    import tempfile

    folder = args.store or Path(tempfile.mkdtemp(prefix="bench-submission-"))
    marker = folder / "generated.json"
    wanted = {"people": args.people, "responses": args.responses, "months": args.months}
    if marker.exists() and orjson.loads(marker.read_bytes()).get("wanted") == wanted:
        counts = orjson.loads(marker.read_bytes())["counts"]
        print(f"store reused: {folder} ({counts})")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("fhir-bridge.db*"):
            old.unlink()
        counts = generate(folder, args.people, args.responses, args.months)
        marker.write_bytes(orjson.dumps({"wanted": wanted, "counts": counts}))
        rate = args.responses / counts["seconds"]
        print(f"generated in {counts['seconds']} s ({rate:,.0f} DIALOG responses/s with the rest): {counts}")
    size = sum(f.stat().st_size for f in folder.glob("fhir-bridge.db*")) / 1e9
    print(f"store: {folder} ({size:.1f} GB)")
    out = folder / "out"
    seconds, peak_mb, output = run_submission(folder, out)
    print(output.rstrip())
    files = sorted(out.glob("*.xml"))
    print(f"submission of {PERIOD.month} ({args.people:,} people, {args.responses:,} responses over {args.months} months): "
          f"{seconds:.1f} s wall (process start-up included), peak RSS {peak_mb:.0f} MB; "
          f"XML {files[-1].stat().st_size / 1e6:.0f} MB" if files else "no file")
    print("targets: under 60 s, peak RSS under 300 MB")


if __name__ == "__main__":
    main()
