"""The real server: `python -m fhir_bridge serve` in a subprocess (uvicorn, SQLite in a temporary
data dir), driven over a socket with an HTTP client, then stopped with SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from fhir_bridge.api.auth import token_hash
from tests.conftest import REPO

TOKEN = "process-test-token"
START_TIMEOUT = 30.0


class Server:
    def __init__(self, process: subprocess.Popen, base: str, log: Path):
        self.process, self.base, self.log = process, base, log

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("FHIR_BRIDGE_DATABASE_URL", "FHIR_BRIDGE_TOKENS_FILE")}
        env["FHIR_BRIDGE_DATA_DIR"] = str(tmp_path / "data")
        log = tmp_path / f"server-{port}.log"
        with log.open("wb") as sink:  # a file, not a pipe: a chatty server can never block on it
            process = subprocess.Popen([sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port), *args],
                                       cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        server = Server(process, f"http://127.0.0.1:{port}/fhir", log)
        started.append(server)
        _wait_until_up(server)
        return server

    yield start
    for server in started:  # a failed test must not leave a server behind
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=15)


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.base}/metadata", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"the server did not answer within {START_TIMEOUT} s:\n{server.output()}")


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    entry = {"sha256": token_hash(TOKEN), "partner": "RV3", "name": "Test trust", "scopes": ["system/*.*"]}
    path.write_bytes(orjson.dumps({"tokens": [entry]}))
    return path


def test_the_server_answers_over_a_socket_and_stops_cleanly(start_server, tokens_file, tmp_path):
    server = start_server("--tokens", str(tokens_file))
    examples = REPO / "examples"
    patient = orjson.loads((examples / "bridge-patient" / "valid-patient-without-nhs-number.json").read_bytes())
    response = orjson.loads((examples / "dialog-questionnaire-response" / "valid-prom-assessment-complete.json")
                            .read_bytes())
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server.base, headers=auth, timeout=10) as http:
        created = http.post("/Patient", content=orjson.dumps(patient))
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        assert created.headers["location"] == f"{server.base}/Patient/{pid}/_history/1"
        response["subject"] = {"reference": f"Patient/{pid}"}
        stored = http.post("/QuestionnaireResponse", content=orjson.dumps(response))
        assert stored.status_code == 201, stored.text
        read = http.get(f"/QuestionnaireResponse/{stored.json()['id']}")
        assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
        found = http.get("/QuestionnaireResponse", params={"subject": f"Patient/{pid}"})
        assert found.status_code == 200
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [stored.json()["id"]]
    refused = httpx.get(f"{server.base}/Patient/{pid}")
    assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome"
    assert server.stop() == 0
    output = server.output()
    assert f"{server.base}" in output and "database: sqlite:///" in output and "development token" not in output
    assert (tmp_path / "data" / "fhir-bridge.db").exists()
    assert "Traceback" not in output


def test_insecure_dev_says_so_and_serves_without_a_token(start_server):
    server = start_server("--insecure-dev")
    assert httpx.get(f"{server.base}/Patient/nobody").status_code == 404   # not 401: auth is off
    assert server.stop() == 0
    assert "AUTHENTICATION IS OFF" in server.output()


def test_a_real_fhir_client_library_works_against_the_server(start_server, tokens_file):
    """fhirpy (an independent FHIR client, as a partner would use) over the socket: create, read,
    search with its paging, update with the version it read, delete."""
    from fhirpy import SyncFHIRClient

    server = start_server("--tokens", str(tokens_file))
    client = SyncFHIRClient(server.base, authorization=f"Bearer {TOKEN}")
    patients = []
    for n in range(3):
        patient = client.resource("Patient", name=[{"family": f"Client{n}", "given": ["Lib"]}], birthDate="1975-06-0" + str(n + 1))
        patient.save()
        patients.append(patient)
    assert all(p.id for p in patients)
    fetched = client.reference("Patient", patients[0].id).to_resource()
    assert fetched["name"][0]["family"] == "Client0" and fetched["meta"]["versionId"] == "1"
    found = client.resources("Patient").search(given="Lib").limit(2).fetch_all()  # follows next links
    assert sorted(p["name"][0]["family"] for p in found) == ["Client0", "Client1", "Client2"]
    fetched["gender"] = "female"
    fetched.save()
    assert client.reference("Patient", fetched.id).to_resource()["meta"]["versionId"] == "2"
    fetched.delete()
    assert client.resources("Patient").search(given="Lib").count() == 2
    assert server.stop() == 0


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_worker_processes_share_the_port_and_one_that_dies_stops_the_server(start_server, tokens_file):
    server = start_server("--tokens", str(tokens_file), "--workers", "2")
    workers = _children(server.process.pid)
    assert len(workers) == 2
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server.base, headers=auth, timeout=10) as http:
        ids = [http.post("/Patient", content=orjson.dumps({"resourceType": "Patient", "name": [{"family": f"W{n}"}]}))
               .json()["id"] for n in range(10)]
    for n in range(10):  # fresh connections: whichever worker the kernel picks reads every write
        assert httpx.get(f"{server.base}/Patient/{ids[n]}", headers=auth).json()["name"] == [{"family": f"W{n}"}]
    os.kill(workers[0], signal.SIGKILL)
    assert server.process.wait(timeout=15) != 0   # not left running at half strength
    assert not Path(f"/proc/{workers[1]}").exists() or "zombie" in Path(f"/proc/{workers[1]}/status").read_text()
    assert "stopping the others" in server.output()


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def _connections_held(pid: int, port: int) -> int:
    """Established TCP connections to `port` whose socket the process holds open (/proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            held += local_port == port and state == "01" and inode in inodes
    return held


def test_workers_get_keep_alive_clients_in_turn_not_by_the_luck_of_a_hash(start_server, tokens_file):
    """Ten keep-alive clients on two workers: five each. A client stays with the worker that got it,
    so an uneven split (the kernel's SO_REUSEPORT hash made 7 and 3 as often as not) left the busier
    worker's clients waiting while the other had time to spare."""
    server = start_server("--tokens", str(tokens_file), "--workers", "2")
    port = int(server.base.rsplit(":", 1)[1].split("/")[0])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    clients = [httpx.Client(base_url=server.base, headers=auth, timeout=10) for _ in range(10)]
    try:
        for client in clients:  # each opens its connection and keeps it
            assert client.get("/metadata").status_code == 200
        workers = _children(server.process.pid)
        assert sorted(_connections_held(pid, port) for pid in workers) == [5, 5]
        assert _connections_held(server.process.pid, port) == 0  # the parent hands them on
        for client in clients[0:8:2]:  # four of one worker's clients leave (the clients came in turn)
            client.close()
        assert _wait_until(lambda: sorted(_connections_held(pid, port) for pid in workers) == [1, 5])
        for _ in range(4):  # the next four go to that worker
            clients.append(httpx.Client(base_url=server.base, headers=auth, timeout=10))
            assert clients[-1].get("/metadata").status_code == 200
        assert sorted(_connections_held(pid, port) for pid in workers) == [5, 5]
    finally:
        for client in clients:
            client.close()


def test_workers_end_when_their_parent_is_killed_outright(start_server, tokens_file):
    """SIGKILL reaches no handler: the workers learn it from the connection channel closing, and
    do not stay behind serving a port nobody accepts on any more."""
    server = start_server("--tokens", str(tokens_file), "--workers", "2")
    workers = _children(server.process.pid)
    server.process.kill()
    server.process.wait(timeout=15)
    assert _wait_until(lambda: not any(_alive(pid) for pid in workers))


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_workers_on_a_taken_port_fail_once_with_a_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "FHIR_BRIDGE_DATA_DIR": str(tmp_path / "data")}
        env.pop("FHIR_BRIDGE_DATABASE_URL", None)
        done = subprocess.run([sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port), "--workers", "2"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr + done.stdout
