"""Benchmark: `POST Patient/[id]/$dialog-plus-session` latency over the real HTTP server on SQLite.

1. Seeds a fresh SQLite store with P people (default 10,000), each holding a DIALOG+ plan, its care
   team and a goal: one session is recorded through the pipeline, and its resources are copied for
   every person through the import pipeline's bulk path (ResourceService.put_many_validated: index,
   care-access and score rows, Provenance), as the trust (RV3), which so holds every record.
2. Starts `fhir-bridge serve` (uvicorn, auth ON) with a token for RV3 as a partner: every session
   passes the care-relationship check, as in production; once with one server process, once with
   `--workers` one per core (`--workers W` to choose), each on a fresh copy of the seeded store.
3. From a separate process (a lean keep-alive HTTP/1.1 client, so the load generator does not share
   the server's GIL), sends sessions - DIALOG ratings, one domain, one agreed action - each to a
   random person, with 1 client, then 10 concurrent clients, and prints p50/p95/p99, rate and the
   server's CPU time per session (all its processes: the figure that does not depend on what else
   the machine is doing).

Target (issue 5): p95 under 50 ms at 10 concurrent clients.

    python bench/careplan.py [--people P] [--requests N] [--workers W]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from api import Connection, free_port, start  # noqa: E402 - bench/api.py's client and server start
from machine import describe  # noqa: E402

TRUST = ("RV3", "East London NHS Foundation Trust")
TOKEN = "bench-careplan-token"
BATCH_PEOPLE = 500


def ratings(patient_id: str, authored: str) -> dict:
    response = json.loads((REPO / "examples/dialog-questionnaire-response/valid-care-planning-partial.json").read_text())
    response.pop("id", None)
    response.update(subject={"reference": f"Patient/{patient_id}"}, source={"reference": f"Patient/{patient_id}"},
                    authored=authored)
    return response


def session(patient_id: str, n: int) -> dict:
    day = f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{(n // 60) % 60:02d}Z"
    me = {"reference": f"Patient/{patient_id}"}
    return {"resourceType": "Parameters", "parameter": [
        {"name": "response", "resource": ratings(patient_id, day)},
        {"name": "domain", "part": [
            {"name": "code", "valueCode": "accommodation"},
            {"name": "understanding", "valueString": "The flat is damp"},
            {"name": "action", "part": [{"name": "description", "valueString": f"Phone the landlord ({n})"},
                                        {"name": "owner", "valueReference": me}]}]}]}


def seed(data_dir: Path, people: int) -> None:
    from fhir_bridge.bridge import Bridge
    from fhir_bridge.config import Settings
    from fhir_bridge.pipelines.resources import Caller

    caller = Caller(*TRUST)
    bridge = Bridge(Settings(data_dir=data_dir, database_url=None))
    started = time.perf_counter()
    with bridge.repository.unit_of_work() as uow:
        bridge.resources.put_many_validated([
            {"resourceType": "Patient", "id": "template", "name": [{"family": "Bench", "given": ["Template"]}]},
            {"resourceType": "Practitioner", "id": "sam", "name": [{"family": "Adeyemi", "given": ["Sam"]}]}],
            caller, uow=uow)
    first = session("template", 0)
    first["parameter"].append({"name": "keyWorker", "part": [{"name": "member",
                                                              "valueReference": {"reference": "Practitioner/sam"}}]})
    plan = bridge.careplans.record("template", first, caller).plan.resource
    team = bridge.repository.read("CareTeam", plan["careTeam"][0]["reference"].split("/")[1]).resource
    goal = bridge.repository.read("Goal", plan["goal"][0]["reference"].split("/")[1]).resource
    patient = bridge.repository.read("Patient", "template").resource
    plan = {k: v for k, v in plan.items() if k not in ("meta", "supportingInfo")}
    template = json.dumps([patient, team, goal, plan])
    names = {plan["id"]: "plan", team["id"]: "team", goal["id"]: "goal"}
    for start_at in range(0, people, BATCH_PEOPLE):
        batch = []
        for i in range(start_at, min(start_at + BATCH_PEOPLE, people)):
            text = template.replace("Patient/template", f"Patient/p{i}").replace('"id": "template"', f'"id": "p{i}"')
            for old, kind in names.items():
                text = text.replace(old, f"{kind}-{i}")
            batch += json.loads(text.replace("Template Bench", f"Person {i}"))
        with bridge.repository.unit_of_work() as uow:
            bridge.resources.put_many_validated(batch, caller, uow=uow)
    print(f"seeded {people:,} people, each with a DIALOG+ plan, care team and goal, "
          f"in {time.perf_counter() - started:.1f} s")
    bridge.close()


def drive(base: str, people: int, requests: int, concurrency: int, offset: int, out) -> None:
    """Runs in its own process: `requests` sessions over `concurrency` keep-alive connections."""
    from urllib.parse import urlsplit

    url = urlsplit(base)
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/fhir+json",
               "Content-Type": "application/fhir+json"}
    rng = random.Random(offset)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(count: int, first: int) -> None:
        conn = Connection(url.hostname, url.port, headers)
        for k in range(count):
            person = f"p{rng.randrange(people)}"
            body = json.dumps(session(person, first + k)).encode()
            began = time.perf_counter()
            status = await conn.request("POST", f"{url.path}/Patient/{person}/$dialog-plus-session", body)
            latencies.append((time.perf_counter() - began) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    async def main() -> float:
        began = time.perf_counter()
        per = requests // concurrency
        await asyncio.gather(*(client(per, offset + c * per) for c in range(concurrency)))
        return time.perf_counter() - began

    elapsed = asyncio.run(main())
    out.put({"latencies": latencies, "statuses": statuses, "elapsed": elapsed})


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children now running (Linux /proc)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return float("nan")
    total = 0
    for each in [pid, *map(int, children)]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure(base: str, people: int, requests: int, concurrency: int, offset: int) -> dict:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=drive, args=(base, people, requests, concurrency, offset, queue))
    process.start()
    result = queue.get()
    process.join()
    latencies = sorted(result["latencies"])

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(p / 100 * len(latencies))) - 1)]

    return {"clients": concurrency, "requests": len(latencies), "statuses": result["statuses"],
            "p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(pct(95), 1), "p99_ms": round(pct(99), 1),
            "per_second": round(len(latencies) / result["elapsed"], 1)}


def run_server(seeded: Path, folder: Path, people: int, requests: int, workers: int) -> list[dict]:
    """Measurements at 1 and 10 clients against `serve --workers workers` on a copy of the store."""
    from fhir_bridge.api.auth import token_hash

    data = folder / f"data-{workers}"
    shutil.copytree(seeded, data)
    tokens = folder / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"sha256": token_hash(TOKEN), "partner": TRUST[0], "name": TRUST[1],
                                              "scopes": ["system/*.*"]}]}))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")},
           "FHIR_BRIDGE_DATA_DIR": str(data)}
    server = start([sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port), "--tokens", str(tokens),
                    "--workers", str(workers)], env, port)
    base = f"http://127.0.0.1:{port}/fhir"
    results = []
    try:
        measure(base, people, 50 * workers, 2 * workers, 10**6)  # warm up every worker: imports, caches, pages
        for clients in (1, 10):
            before = cpu_seconds(server.pid)
            result = measure(base, people, requests, clients, 10**7 * clients + workers)
            result.update(workers=workers, server_cpu_ms=round((cpu_seconds(server.pid) - before) / requests * 1000, 2))
            results.append(result)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500, help="sessions per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server processes of the second run (default: one per core)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-careplan-") as folder:
        print(describe(Path(folder)))
        seeded = Path(folder) / "seeded"
        seed(seeded, args.people)
        results = []
        for workers in sorted({1, args.workers}):
            results += run_server(seeded, Path(folder), args.people, args.requests, workers)
        after = describe(Path(folder))
    print(f"{'workers':>7} {'clients':>7} {'requests':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'per s':>7} "
          f"{'cpu ms':>7}  statuses")
    for r in results:
        print(f"{r['workers']:>7} {r['clients']:>7} {r['requests']:>8} {r['p50_ms']:>7} {r['p95_ms']:>7} "
              f"{r['p99_ms']:>7} {r['per_second']:>7} {r['server_cpu_ms']:>7}  {r['statuses']}")
    print("cpu ms: the server's CPU time per session, all its processes and threads")
    for ten in (r for r in results if r["clients"] == 10):
        print(f"target p95 < 50 ms at 10 concurrent clients, {ten['workers']} server process(es): "
              f"{'met' if ten['p95_ms'] < 50 else 'NOT met'} ({ten['p95_ms']} ms)")
    print(after)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
