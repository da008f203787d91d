"""`fhir-bridge serve` and `fhir-bridge token` in process: uvicorn.run is replaced by a probe that
drives the app the command built, while its database is open."""
from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import uvicorn
from click.testing import CliRunner

from fhir_bridge.api.auth import TokenStore
from fhir_bridge.cli import main
from tests.api.helpers import OutcomeCheckingClient, expect


@pytest.fixture
def serve(tmp_path: Path, monkeypatch) -> Callable:
    """serve(*args, probe=fn) -> (CliRunner result, uvicorn.run keyword arguments); fn(client, dev_token)."""
    issued: list[str] = []
    real_dev_token = TokenStore.with_dev_token.__func__

    def remembering_dev_token(cls):
        store, token = real_dev_token(cls)
        issued.append(token)
        return store, token

    monkeypatch.setattr(TokenStore, "with_dev_token", classmethod(remembering_dev_token))

    def run(*args: str, probe: Callable | None = None):
        seen: dict = {}

        def fake_run(app, **kwargs):
            seen.update(kwargs)
            if probe:
                with OutcomeCheckingClient(app) as client:
                    probe(client, issued[-1] if issued else None)

        monkeypatch.setattr(uvicorn, "run", fake_run)
        env = {"FHIR_BRIDGE_DATA_DIR": str(tmp_path / "data"), "FHIR_BRIDGE_DATABASE_URL": None,
               "FHIR_BRIDGE_TOKENS_FILE": None}
        result = CliRunner().invoke(main, ["serve", *args], env=env)
        assert "Traceback" not in result.output, result.output
        return result, seen

    return run


def test_serve_prints_base_url_database_and_a_working_dev_token(serve, tmp_path):
    def probe(client, token):
        expect(client.get("/fhir/Patient/nobody"), 401)
        expect(client.get("/fhir/Patient/nobody", headers={"Authorization": f"Bearer {token}"}), 404)

    result, run = serve("--port", "8123", probe=probe)
    assert result.exit_code == 0, result.output
    assert run["host"] == "127.0.0.1" and run["port"] == 8123 and run["workers"] == 1
    assert "http://127.0.0.1:8123/fhir" in result.output
    assert f"database: sqlite:///{tmp_path / 'data' / 'fhir-bridge.db'}" in result.output
    assert (tmp_path / "data" / "fhir-bridge.db").exists()


def test_serve_with_a_tokens_file_prints_no_token(serve, tmp_path):
    line = CliRunner().invoke(main, ["token", "--partner", "RV3", "--scope", "system/*.read"]).output.splitlines()
    token, entry = line[1], orjson.loads(line[-1])
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_bytes(orjson.dumps({"tokens": [entry]}))

    def probe(client, dev_token):
        assert dev_token is None
        expect(client.get("/fhir/Patient/nobody", headers={"Authorization": f"Bearer {token}"}), 404)
        expect(client.post("/fhir/Patient", json={"resourceType": "Patient"},
                           headers={"Authorization": f"Bearer {token}"}), 403)

    result, _ = serve("--tokens", str(tokens_file), probe=probe)
    assert result.exit_code == 0, result.output
    assert f"tokens: {tokens_file}" in result.output and "development token" not in result.output


def test_serve_insecure_dev_warns_loudly_and_needs_no_token(serve):
    def probe(client, _token):
        expect(client.get("/fhir/Patient/nobody"), 404)

    result, _ = serve("--insecure-dev", probe=probe)
    assert result.exit_code == 0, result.output
    assert "AUTHENTICATION IS OFF" in result.output and "development token" not in result.output


def test_serve_max_body_bytes_limits_requests(serve):
    def probe(client, _token):
        expect(client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "x" * 200}), 413)

    result, _ = serve("--insecure-dev", "--max-body-bytes", "100", probe=probe)
    assert result.exit_code == 0, result.output


def test_serve_keeps_what_it_built_at_start_out_of_the_collectors_walks_while_it_runs(serve):
    """A full collection walked the whole startup heap with every request waiting (50-70 ms)."""
    frozen: list[int] = []

    def probe(client, token):
        frozen.append(gc.get_freeze_count())
        expect(client.get("/fhir/metadata", headers={"Authorization": f"Bearer {token}"}), 200)

    result, _ = serve(probe=probe)
    assert result.exit_code == 0, result.output
    assert frozen[0] > 10_000  # the modules, the app, the validator: not a handful of objects
    assert gc.get_freeze_count() == 0  # thawed when the server stops


def test_insecure_dev_and_a_tokens_file_exclude_each_other(serve, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text('{"tokens": []}')
    result, run = serve("--insecure-dev", "--tokens", str(tokens_file))
    assert result.exit_code == 2 and not run


def test_a_broken_tokens_file_is_a_sentence_not_a_trace(serve, tmp_path):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text('{"tokens": [{"sha256": "abc", "partner": "X", "scopes": []}]}')
    result, run = serve("--tokens", str(tokens_file))
    assert result.exit_code == 3 and not run
    assert f"tokens file {tokens_file}" in result.output


def test_seed_examples_stores_the_valid_examples_once(serve):
    def probe(client, _token):
        for path in ("Patient/example-patient-01", "QuestionnaireResponse/dialog-prom-assessment-01",
                     "QuestionnaireResponse/dialog-ndjson-01", "Observation/dialog-sqol-mean-01",
                     "CarePlan/dialog-plus-plan-01"):
            expect(client.get(f"/fhir/{path}"), 200)
        expect(client.get("/fhir/QuestionnaireResponse/invalid-dialog-ndjson-04-rating-9"), 404)

    result, _ = serve("--insecure-dev", "--seed-examples", probe=probe)
    assert result.exit_code == 0, result.output
    assert "seeded 16 example resources" in result.output
    assert "example skipped: bundle-dialog.json" in result.output   # a transaction, not a stored type
    again, _ = serve("--insecure-dev", "--seed-examples")
    assert "examples not seeded: the database already holds" in again.output


def test_token_prints_a_token_and_the_entry_holding_its_hash(tmp_path):
    result = CliRunner().invoke(main, ["token", "--partner", "RV3", "--name", "East London NHS FT",
                                       "--scope", "system/*.read", "--scope", "system/QuestionnaireResponse.write"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    token, entry = lines[1], orjson.loads(lines[-1])
    assert token not in lines[-1]
    assert entry["partner"] == "RV3" and entry["name"] == "East London NHS FT"
    assert entry["scopes"] == ["system/*.read", "system/QuestionnaireResponse.write"]
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_bytes(orjson.dumps({"tokens": [entry]}))
    caller = TokenStore.load(tokens_file).authenticate(f"Bearer {token}", None)
    assert caller.partner == "RV3" and "system/*.read" in caller.scopes


@pytest.mark.parametrize("scope", ["user/*.read", "system/Patient.delete", "system/.read"])
def test_token_refuses_a_scope_it_cannot_grant(scope):
    result = CliRunner().invoke(main, ["token", "--partner", "RV3", "--scope", scope])
    assert result.exit_code == 2 and "is not system/" in result.output
