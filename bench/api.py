"""Benchmark: the fhir-bridge server against the framework ceiling, over real sockets.

1. Seeds a fresh SQLite store with N DIALOG QuestionnaireResponses (default 100,000) for 10,000
   patients, through the repository's bulk path (validated, indexed, score rows written).
2. Starts `fhir-bridge serve` (SQLite, auth ON) and, in the same run, a bare FastAPI app that
   returns a fixed JSON body (what uvicorn + FastAPI can do at best on this machine).
3. Drives both from a separate client process (a lean asyncio HTTP/1.1 keep-alive client, C
   concurrent connections) and prints requests/s, p50 and p99 for: read, create
   QuestionnaireResponse, and search by subject; and each rate's ratio to the ceiling. Latency
   is also measured with one connection (no queueing), the figure the search target is about.

Targets (issue 3, this 2-core machine): read >= 1,000/s, create >= 300/s, search p99 < 50 ms.

    python bench/api.py [N] [--seconds S] [--concurrency C]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from validate import response  # noqa: E402 - the same generated DIALOG responses as bench/validate.py

CEILING_APP = """
from fastapi import FastAPI
from fastapi.responses import Response
app = FastAPI()
BODY = b'{"resourceType":"Patient","id":"x","name":[{"family":"Ceiling"}]}'
@app.get("/fhir/Patient/{pid}")
def read(pid: str):
    return Response(BODY, media_type="application/fhir+json")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(data_dir: Path, n: int) -> list[str]:
    from fhir_bridge.bridge import Bridge
    from fhir_bridge.config import Settings

    bridge = Bridge(Settings(data_dir=data_dir, database_url=None))
    rng = random.Random(7)
    patients = [f"p-{i}" for i in range(10_000)]
    start = time.perf_counter()
    with bridge.repository.unit_of_work() as uow:
        uow.create_many([{"resourceType": "Patient", "id": p, "name": [{"family": f"Bench{p}"}]} for p in patients])
    done = 0
    while done < n:
        batch = []
        for i in range(done, min(done + 2000, n)):
            qr = response(rng, i)
            qr["subject"] = {"reference": f"Patient/{rng.choice(patients)}"}
            batch.append(qr)
        with bridge.repository.unit_of_work() as uow:
            uow.create_many(batch)
        done += len(batch)
    print(f"seeded {n:,} QuestionnaireResponses for {len(patients):,} patients in {time.perf_counter() - start:.1f} s")
    bridge.close()
    return patients


def start(cmd: list[str], env: dict, port: int) -> subprocess.Popen:
    # The server's log goes to a file: an unread pipe fills after ~700 access-log lines and then
    # blocks the server mid-benchmark.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"{cmd[2:]} exited: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.1)
    raise SystemExit(f"{cmd} did not start")


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: httpx costs more CPU per request
    than the server under test, so it would measure itself (its ceiling was ~800 req/s here)."""

    def __init__(self, host: str, port: int, headers: dict):
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Host": f"{host}:{port}"}.items())
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", extra: str = "") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\n{self.fixed}{extra}Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])


def drive(base: str, token: str, kind: str, seconds: float, concurrency: int, patients: list[str], ids: list[str], out):
    """Runs in its own process: the load generator never shares a core's GIL with the server."""
    from urllib.parse import quote, urlsplit

    url = urlsplit(base)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    rng = random.Random(11)
    latencies: list[float] = []
    errors = 0

    def request(conn: Connection):
        if kind == "read":
            return conn.request("GET", f"{url.path}/QuestionnaireResponse/{rng.choice(ids)}")
        if kind == "ceiling":
            return conn.request("GET", f"{url.path}/Patient/x")
        if kind == "search":
            return conn.request("GET", f"{url.path}/QuestionnaireResponse?subject={quote('Patient/' + rng.choice(patients))}")
        qr = response(rng, rng.randrange(10**9))
        qr["subject"] = {"reference": f"Patient/{rng.choice(patients)}"}
        return conn.request("POST", f"{url.path}/QuestionnaireResponse", json.dumps(qr).encode(),
                            "Content-Type: application/fhir+json\r\nPrefer: return=minimal\r\n")

    async def worker(stop_at: float):
        nonlocal errors
        conn = Connection(url.hostname, url.port, headers)
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            status = await request(conn)
            latencies.append(time.perf_counter() - t)
            errors += status >= 300

    async def main() -> float:
        await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(concurrency)))  # warm up
        latencies.clear()
        begin = time.perf_counter()
        await asyncio.gather(*(worker(begin + seconds) for _ in range(concurrency)))
        return time.perf_counter() - begin

    elapsed = asyncio.run(main())
    latencies.sort()
    out.put({"kind": kind, "rate": len(latencies) / elapsed, "p50": statistics.median(latencies) * 1000,
             "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "n": len(latencies), "errors": errors})


def measure(*args) -> dict:
    queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=drive, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from fhir_bridge.api.auth import token_hash

    work = Path(tempfile.mkdtemp(prefix="fhir-bridge-bench-"))
    patients = seed(work / "data", args.n)
    token = secrets.token_urlsafe(24)
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"sha256": token_hash(token), "partner": "BENCH", "scopes": ["system/*.*"]}]}))
    (work / "ceiling.py").write_text(CEILING_APP)
    env = {**os.environ, "FHIR_BRIDGE_DATA_DIR": str(work / "data"), "PYTHONPATH": str(work)}
    port, ceiling_port = free_port(), free_port()
    server = start([sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port), "--tokens", str(tokens)], env, port)
    ceiling = start([sys.executable, "-m", "uvicorn", "ceiling:app", "--port", str(ceiling_port), "--log-level", "warning"],
                    env, ceiling_port)
    try:
        base, ceiling_base = f"http://127.0.0.1:{port}/fhir", f"http://127.0.0.1:{ceiling_port}/fhir"
        ids = [f"qr-{i}" for i in range(0, args.n, max(args.n // 5000, 1))]
        results = [measure(ceiling_base, token, "ceiling", args.seconds, args.concurrency, patients, ids)]
        for kind in ("read", "search", "create"):
            results.append(measure(base, token, kind, args.seconds, args.concurrency, patients, ids))
        for kind in ("read", "search"):  # one connection: the server's own latency, no queueing
            single = measure(base, token, kind, args.seconds, 1, patients, ids)
            results.append({**single, "kind": f"{kind} c=1"})
    finally:
        for proc in (server, ceiling):
            proc.terminate()
            proc.wait(timeout=30)
    ceiling_rate = results[0]["rate"]
    print(f"\n{args.n:,} stored responses; SQLite; auth on; {args.concurrency} concurrent keep-alive connections; "
          f"{args.seconds:.0f} s per test; client in its own process")
    print(f"{'test':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs ceiling':>11}")
    targets = {"read": ("rate", 1000), "create": ("rate", 300), "search c=1": ("p99", 50)}
    for r in results:
        verdict = ""
        if r["kind"] in targets:
            key, goal = targets[r["kind"]]
            ok = r[key] >= goal if key == "rate" else r[key] < goal
            verdict = f"  target {'met' if ok else 'NOT met'} ({key} {'>=' if key == 'rate' else '<'} {goal})"
        print(f"{r['kind']:<10} {r['rate']:>9,.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7} "
              f"{r['rate'] / ceiling_rate:>10.2f}x{verdict}")


if __name__ == "__main__":
    main()
