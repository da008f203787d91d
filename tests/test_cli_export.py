"""`fhir-bridge export hl7`: where the messages go, what it prints, exit codes, never a traceback."""
from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from fhir_bridge.bridge import Bridge
from fhir_bridge.cli import main
from fhir_bridge.config import Settings
from fhir_bridge.formats.hl7v2 import control_id, parse_message, split_batch
from fhir_bridge.pipelines.resources import Caller
from tests.conftest import REPO

CASE = REPO / "tests/golden/hl7-out-oru-dialog/prom-nhs-and-local-id"


def run(*args: str, env: dict | None = None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output
    return result


@pytest.fixture()
def data_dir(tmp_path, monkeypatch, validator):
    """A store holding one VCSE-recorded DIALOG for the EPR RAT."""
    monkeypatch.setenv("FHIR_BRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FHIR_BRIDGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("FHIR_BRIDGE_MLLP_PEER", raising=False)
    bridge = Bridge(Settings(data_dir=tmp_path / "data"), validator=validator)
    try:
        for name in ("patient", "response"):
            resource = json.loads((CASE / f"{name}.json").read_text())
            resource.pop("meta")
            with bridge.repository.unit_of_work() as uow:
                bridge.resources.put_validated(resource, Caller("NQX01"), uow=uow)
    finally:
        bridge.close()
    return tmp_path / "data"


def test_messages_go_to_a_new_file_once(data_dir, tmp_path):
    out = tmp_path / "oru.hl7"
    first = run("export", "hl7", "--receiving-organization", "RAT", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert f"export hl7 to file:RAT ({out}): 1 message = 1 written + 0 invalid" in first.output
    [(_, message)] = list(split_batch(out.read_bytes()))
    assert out.read_bytes().count(b"\r") == len(message.split("\r"))  # CR after every segment, no MLLP framing
    assert control_id(parse_message(message))

    exists = run("export", "hl7", "--receiving-organization", "RAT", "--out", str(out))
    assert exists.exit_code == 2 and "exists already" in exists.output

    again = run("export", "hl7", "--receiving-organization", "RAT", "--out", str(tmp_path / "second.hl7"))
    assert again.exit_code == 0 and "0 messages" in again.output


def test_standard_output_carries_only_the_messages(data_dir):
    result = run("export", "hl7", "--receiving-organization", "RAT", "--out", "-", "--since", "2000-01-01")
    assert result.exit_code == 0
    assert result.stdout.startswith("MSH|^~\\&|FHIR-BRIDGE|NQX01||RAT|") and "export hl7" not in result.stdout
    assert "1 message = 1 written" in result.stderr


def test_the_epr_s_own_responses_are_not_sent_back(data_dir):
    result = run("export", "hl7", "--receiving-organization", "NQX01", "--out", "-")
    assert result.exit_code == 0 and result.stdout == "" and "0 messages" in result.stderr


def test_an_unreachable_peer_is_a_clear_message_and_exit_69(data_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("export", "hl7", "--receiving-organization", "RAT", env={"FHIR_BRIDGE_MLLP_PEER": f"127.0.0.1:{port}"})
    assert result.exit_code == 69
    assert f"stopped: MLLP peer 127.0.0.1:{port} refused the connection" in result.output
    assert f"export hl7 to mllp:127.0.0.1:{port}: 0 messages" in result.output


@pytest.mark.parametrize("args, message", [
    ([], "say where the messages go"),
    (["--out", "x.hl7", "--to", "h:1"], "not both"),
    (["--to", "nowhere"], "is not HOST:PORT"),
    (["--out", "-", "--since", "yesterday"], "is not a FHIR date"),
])
def test_bad_options_are_explained(data_dir, args, message):
    result = run("export", "hl7", "--receiving-organization", "RAT", *args)
    assert result.exit_code == 2 and message in result.output


def test_a_refusal_is_reported_with_its_reason_and_exit_1(data_dir):
    from tests.pipelines.test_export_hl7 import ScriptedPeer

    peer = ScriptedPeer(["AE"])
    try:
        result = run("export", "hl7", "--receiving-organization", "RAT", "--to", f"127.0.0.1:{peer.port}")
    finally:
        peer.close()
    assert result.exit_code == 1
    assert "1 message = 0 accepted (AA) + 1 refused (AE) + 0 rejected (AR) + 0 invalid" in result.output
    assert "AE patient not known to the EPR" in result.output
