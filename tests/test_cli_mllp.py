"""`fhir-bridge mllp` as a real process: a synthetic ORU^R01 over TCP is stored, then answered AA."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

from fhir_bridge.formats.hl7v2 import control_id, parse_message, split_batch
from fhir_bridge.formats.mllp import MllpDecoder, frame
from fhir_bridge.synth import generate
from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_listener_process_imports_a_dialog_and_acks_aa(tmp_path):
    generate("hl7", tmp_path / "feed", count=3, seed=2)
    feed = next((tmp_path / "feed").rglob("*.hl7")).read_bytes()
    oru = next(text for _, text in split_batch(feed) if "ORU^R01" in text.split("\r", 1)[0])
    port = free_port()
    env = {**os.environ, "FHIR_BRIDGE_DATA_DIR": str(tmp_path / "data")}
    env.pop("FHIR_BRIDGE_DATABASE_URL", None)
    log = tmp_path / "mllp.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "fhir_bridge", "mllp", "--port", str(port),
                                    "--organization", "RV3"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        with sock:
            sock.sendall(frame(oru.encode()))
            decoder, acks = MllpDecoder(), []
            while not acks:
                acks = decoder.feed(sock.recv(65536))
        msa = next(s for s in acks[0].decode().split("\r") if s.startswith("MSA")).split("|")
        assert msa[1:3] == ["AA", control_id(parse_message(oru))], acks[0]
    finally:
        process.terminate()
        process.wait(timeout=15)
    output = log.read_text()
    assert re.search(r"MLLP listener: 127\.0\.0\.1:\d+", output) and "Traceback" not in output
