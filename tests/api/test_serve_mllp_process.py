"""`fhir-bridge serve` with the MLLP listener configured, as a real process: a DIALOG sent with
python-hl7's MLLP client is ACKed AA and then readable over HTTP from the same process; a bad
message gets AE; SIGTERM stops both cleanly; a taken MLLP port is a sentence, not a traceback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from hl7.client import MLLPClient

from fhir_bridge.cli import main
from fhir_bridge.formats.hl7v2 import control_id, parse_message, split_batch
from fhir_bridge.synth import generate
from tests.conftest import REPO

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(tmp_path: Path, *args: str, env_extra: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")}
    env.update({"FHIR_BRIDGE_DATA_DIR": str(tmp_path / "data"), **env_extra})
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen([sys.executable, "-m", "fhir_bridge", "serve", *args], cwd=REPO, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    return process, log


def wait_until_up(process: subprocess.Popen, log: Path, base: str, mllp_port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}:\n{log.read_text()}"
        try:
            with socket.create_connection(("127.0.0.1", mllp_port), timeout=1):
                pass
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                return
        except (OSError, httpx.TransportError):
            time.sleep(0.1)
    raise AssertionError(f"the server did not come up within {START_TIMEOUT} s:\n{log.read_text()}")


def msa(ack: bytes) -> list[str]:
    return next(s for s in ack.decode().strip("\x0b\x1c\r").split("\r") if s.startswith("MSA")).split("|")


def a_dialog(tmp_path: Path) -> str:
    generate("hl7", tmp_path / "feed", count=3, seed=2)
    feed = (tmp_path / "feed" / "feed.hl7").read_bytes()
    return next(text for _, text in split_batch(feed) if "ORU^R01" in text.split("\r", 1)[0])


def test_serve_starts_the_mllp_listener_acks_after_commit_and_serves_what_it_stored(tmp_path):
    oru = a_dialog(tmp_path)
    http_port, mllp_port = free_port(), free_port()
    # The listener configured by the environment, as a service unit would set it
    process, log = start(tmp_path, "--port", str(http_port), "--insecure-dev",
                         env_extra={"FHIR_BRIDGE_MLLP_PORT": str(mllp_port), "FHIR_BRIDGE_MLLP_ORGANIZATION": "RV3"})
    base = f"http://127.0.0.1:{http_port}/fhir"
    try:
        wait_until_up(process, log, base, mllp_port)
        with MLLPClient("127.0.0.1", mllp_port) as client:
            accepted = msa(client.send_message(oru))
            # AA means committed: the response is there for the very next HTTP request
            found = httpx.get(f"{base}/QuestionnaireResponse", timeout=10).json()
            refused = msa(client.send_message(oru.replace("|ORU^R01^ORU_R01|", "|ADT^A99^ADT_A01|")))
        assert accepted[1:3] == ["AA", control_id(parse_message(oru))]
        [entry] = found["entry"]
        read = httpx.get(f"{base}/QuestionnaireResponse/{entry['resource']['id']}", timeout=10)
        assert read.status_code == 200 and read.json()["subject"]["reference"].startswith("Patient/")
        assert refused[1] == "AE" and "is not imported" in refused[3]  # the reason, HL7-escaped
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    output = log.read_text()
    assert code == 0, output
    assert f"MLLP listener: 127.0.0.1:{mllp_port} (feed of RV3)" in output
    assert f"http://127.0.0.1:{http_port}/fhir" in output and "Traceback" not in output


def test_with_workers_the_first_runs_the_listener_and_every_worker_reads_what_it_stored(tmp_path):
    oru = a_dialog(tmp_path)
    http_port, mllp_port = free_port(), free_port()
    process, log = start(tmp_path, "--port", str(http_port), "--insecure-dev", "--workers", "2",
                         "--mllp-port", str(mllp_port), "--mllp-organization", "RV3", env_extra={})
    base = f"http://127.0.0.1:{http_port}/fhir"
    try:
        wait_until_up(process, log, base, mllp_port)
        with MLLPClient("127.0.0.1", mllp_port) as client:
            assert msa(client.send_message(oru))[1] == "AA"
        clients = [httpx.Client(base_url=base, timeout=10) for _ in range(2)]
        try:  # two connections held at once: one on each worker
            assert [c.get("/QuestionnaireResponse").json()["total"] for c in clients] == [1, 1]
        finally:
            for c in clients:
                c.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()


def test_a_taken_mllp_port_stops_serve_with_a_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        mllp_port = taken.getsockname()[1]
        process, log = start(tmp_path, "--port", str(free_port()), "--insecure-dev", "--mllp-port", str(mllp_port),
                             "--mllp-organization", "RV3", env_extra={})
        code = process.wait(timeout=START_TIMEOUT)
    output = log.read_text()
    assert code == 2, output
    assert f"cannot listen for MLLP on 127.0.0.1:{mllp_port}" in output and "Traceback" not in output


def test_the_listener_needs_its_organisation_and_a_port_number(tmp_path):
    env = {"FHIR_BRIDGE_DATA_DIR": str(tmp_path / "data"), "FHIR_BRIDGE_MLLP_ORGANIZATION": None}
    missing = CliRunner().invoke(main, ["serve", "--mllp-port", "2575"], env=env)
    assert missing.exit_code == 2 and "--mllp-organization" in missing.output
    bad = CliRunner().invoke(main, ["serve"], env={**env, "FHIR_BRIDGE_MLLP_PORT": "twenty"})
    assert bad.exit_code == 2 and "FHIR_BRIDGE_MLLP_PORT must be a TCP port" in bad.output
    assert "Traceback" not in missing.output + bad.output
    blank = CliRunner().invoke(main, ["serve", "--mllp-port", "2575", "--mllp-organization", " "], env=env)
    assert blank.exit_code == 2 and "is not an ODS code" in blank.output
    listener = CliRunner().invoke(main, ["mllp", "--organization", " "], env=env)
    assert listener.exit_code == 2 and "is not an ODS code" in listener.output
