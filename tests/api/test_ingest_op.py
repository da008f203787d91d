"""POST [base]/$ingest: a partner pushes an export file; the import pipeline runs as that partner."""
from __future__ import annotations

import base64

from tests.api.helpers import expect
from tests.conftest import REPO, synthetic_exports

APP_CSV = (REPO / "tests" / "golden" / "dialog-app" / "complete-session" / "input.csv").read_bytes()


def parameters(source: str, *files: tuple[str, bytes]) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "source", "valueCode": source},
        *[{"name": "file", "valueAttachment": {"contentType": "text/csv", "title": title,
                                                "data": base64.b64encode(data).decode()}} for title, data in files]]}


def value(result: dict, name: str):
    return next(p for p in result["parameter"] if p["name"] == name)


def test_an_uploaded_app_export_runs_through_the_pipeline(client, auth, bridge):
    result = expect(client.post("/fhir/$ingest", json=parameters("dialog-app", ("export.csv", APP_CSV)),
                                headers=auth), 200)
    assert value(result, "in")["valueInteger"] == 2
    assert value(result, "quarantined")["valueInteger"] == 2  # the app export cannot identify people: review
    outcome = value(result, "outcome")["resource"]
    assert any("identity-review" in i["diagnostics"] for i in outcome["issue"])
    assert len(bridge.repository.reviews()) == 2
    [run] = [r for r in bridge.repository.runs() if r["run_id"] == value(result, "run")["valueString"]]
    assert run["source"] == "dialog-app" and run["finished"] is not None


def test_an_uploads_quarantined_rows_are_located_by_its_file_name_and_kept_once(client, auth, bridge):
    """Not by the temporary folder it was written to: that name means nothing to the partner, and
    changed with every upload, so the same bad row sent twice was two open entries."""
    bad = APP_CSV.decode("utf-8-sig").replace("Friendships Rank", "Friends Rank", 1).encode()
    for _ in range(2):
        expect(client.post("/fhir/$ingest", json=parameters("dialog-app", ("export.csv", bad)), headers=auth), 200)
    entries = bridge.repository.quarantined(source="dialog-app")
    assert sorted(e.location for e in entries) == ["$ingest/RV3/export.csv:2", "$ingest/RV3/export.csv:3"]
    assert all("$ingest/RV3/export.csv:" in e.outcome.decode() and "/tmp" not in e.outcome.decode() for e in entries)


def test_one_partners_upload_neither_shares_nor_resolves_anothers_entries(client, auth, token_for, bridge, tmp_path):
    """Two partners' uploads of a file of one name are two files: the same fault is an entry each,
    and a whole export from one does not resolve the other's missing-file entry."""
    from fhir_bridge.synth import generate

    generate("rio", tmp_path / "rio", count=3, seed=8)
    whole = [("file", (p.name, p.read_bytes(), "text/csv")) for p in sorted((tmp_path / "rio").glob("*.csv"))]
    partial = [f for f in whole if f[1][0] != "dialog_assessments.csv"]
    other = token_for("system/*.*", "access/all-people", partner="RX1", name="Another trust")
    for headers in (auth, other):
        expect(client.post("/fhir/$ingest", data={"source": "rio"}, files=partial, headers=headers), 200)
    assert sorted(e.location for e in bridge.repository.quarantined(source="rio")) == [
        "$ingest/RV3/dialog_assessments.csv", "$ingest/RX1/dialog_assessments.csv"]
    result = expect(client.post("/fhir/$ingest", data={"source": "rio"}, files=whole, headers=other), 200)
    assert value(result, "quarantined")["valueInteger"] == 0
    assert [e.location for e in bridge.repository.quarantined(source="rio")] == ["$ingest/RV3/dialog_assessments.csv"]


def test_a_binary_upload_with_source_in_the_url(client, auth):
    binary = {"resourceType": "Binary", "contentType": "text/csv", "data": base64.b64encode(APP_CSV).decode()}
    result = expect(client.post("/fhir/$ingest?source=dialog-app", json=binary, headers=auth), 200)
    assert value(result, "in")["valueInteger"] == 2


def test_a_binary_upload_is_read_as_what_it_holds_json_zip_or_hl7(client, auth, tmp_path):
    """A Binary has no file name: a VCSE export's JSON form was read as CSV and quarantined whole."""
    exports = synthetic_exports(tmp_path, 6, hl7=3, vcse=4, rio=3)
    for source, data in [("vcse", (exports["vcse"] / "sessions.json").read_bytes()),
                         ("hl7", exports["hl7"].read_bytes()), ("rio", exports["rio.zip"].read_bytes())]:
        binary = {"resourceType": "Binary", "contentType": "application/octet-stream",
                  "data": base64.b64encode(data).decode()}
        result = expect(client.post(f"/fhir/$ingest?source={source}", json=binary, headers=auth), 200)
        said = [i["diagnostics"] for i in value(result, "outcome")["resource"]["issue"]]
        assert value(result, "created")["valueInteger"] > 0, (source, said)
        assert not any("quarantined: mapping" in line for line in said), (source, said)  # read, not refused


def test_a_multipart_upload_as_curl_sends_it_is_one_export(client, auth, tmp_path):
    """`curl -F source=rio -F file=@clients.csv -F file=@referrals.csv ...`: the files of one upload
    are one export (a RiO export's extracts only make sense together)."""
    from fhir_bridge.synth import generate

    generate("rio", tmp_path / "rio", count=4, seed=8)
    extracts = [("file", (p.name, p.read_bytes(), "text/csv")) for p in sorted((tmp_path / "rio").glob("*.csv"))]
    result = expect(client.post("/fhir/$ingest", data={"source": "rio"}, files=extracts, headers=auth), 200)
    assert value(result, "in")["valueInteger"] > len(extracts) and value(result, "quarantined")["valueInteger"] == 0
    generate("vcse", tmp_path / "vcse", count=3, seed=8)
    sessions = [("file", ("sessions.csv", (tmp_path / "vcse" / "sessions.csv").read_bytes(), "text/csv"))]
    result = expect(client.post("/fhir/$ingest?source=vcse", files=sessions, headers=auth), 200)
    assert value(result, "created")["valueInteger"] > 0
    sneaky = [("file", ("../../sessions.csv", sessions[0][1][1], "text/csv")), ("file", ("..", b"x", "text/csv"))]
    assert value(expect(client.post("/fhir/$ingest?source=vcse", files=sneaky, headers=auth), 200), "in")["valueInteger"]
    no_source = expect(client.post("/fhir/$ingest", files=sessions, headers=auth), 400)
    assert "source" in no_source["issue"][0]["diagnostics"]
    no_file = expect(client.post("/fhir/$ingest", data={"source": "vcse"}, files={"note": (None, "x")},
                                 headers=auth), 400)
    assert "file" in no_file["issue"][0]["diagnostics"]


def test_bad_requests_are_400_with_a_reason(client, auth):
    unknown = expect(client.post("/fhir/$ingest", json=parameters("spreadsheet", ("x.csv", APP_CSV)), headers=auth), 400)
    assert "unknown source" in unknown["issue"][0]["diagnostics"]
    broken = parameters("dialog-app", ("x.csv", APP_CSV))
    broken["parameter"][1]["valueAttachment"]["data"] = "not base64!"
    assert "base64" in expect(client.post("/fhir/$ingest", json=broken, headers=auth), 400)["issue"][0]["diagnostics"]
    no_file = {"resourceType": "Parameters", "parameter": [{"name": "source", "valueCode": "dialog-app"}]}
    expect(client.post("/fhir/$ingest", json=no_file, headers=auth), 400)
    # a RiO export read as one folder: a second clients.csv would be lost without a word
    twice = [("file", ("clients.csv", b"a", "text/csv")), ("file", ("exports/Clients.csv", b"b", "text/csv"))]
    said = expect(client.post("/fhir/$ingest?source=rio", files=twice, headers=auth), 400)["issue"][0]["diagnostics"]
    assert "Two files named 'Clients.csv'" in said


def test_a_file_sent_without_a_name_is_read_as_what_it_holds(client, auth, tmp_path):
    """An attachment without a title was named file-1.csv, so a VCSE export's JSON form was read as CSV."""
    from fhir_bridge.synth import generate

    generate("vcse", tmp_path / "vcse", count=3, seed=4)
    untitled = parameters("vcse", ("x", (tmp_path / "vcse" / "sessions.json").read_bytes()))
    del untitled["parameter"][1]["valueAttachment"]["title"]
    result = expect(client.post("/fhir/$ingest", json=untitled, headers=auth), 200)
    assert value(result, "quarantined")["valueInteger"] == 0 and value(result, "created")["valueInteger"] > 0


def test_ingest_needs_a_token_with_write_scopes(client, token_for):
    body = parameters("dialog-app", ("export.csv", APP_CSV))
    expect(client.post("/fhir/$ingest", json=body), 401)
    expect(client.post("/fhir/$ingest", json=body, headers=token_for("system/*.read")), 403)
    expect(client.post("/fhir/$ingest", json=body, headers=token_for("system/QuestionnaireResponse.write")), 403)
    both = token_for("system/QuestionnaireResponse.write", "system/Patient.write")
    expect(client.post("/fhir/$ingest", json=body, headers=both), 200)


def test_ingest_is_listed_in_the_capability_statement(client):
    metadata = expect(client.get("/fhir/metadata"), 200)
    assert {"name": "ingest", "definition": "https://fhir-bridge.example.org/OperationDefinition/ingest"} in \
        metadata["rest"][0].get("operation", [])


def test_an_upload_is_read_off_the_event_loop(client, auth, monkeypatch):
    """Parsing a large multipart or JSON body takes a while; on the event loop every other request
    would wait for it."""
    import asyncio

    from fhir_bridge.api import ingest_op

    loops = []
    real = ingest_op._named

    def named(source, files):
        try:
            loops.append(asyncio.get_running_loop())
        except RuntimeError:
            loops.append(None)
        return real(source, files)

    monkeypatch.setattr(ingest_op, "_named", named)
    expect(client.post("/fhir/$ingest", json=parameters("dialog-app", ("export.csv", APP_CSV)), headers=auth), 200)
    expect(client.post("/fhir/$ingest?source=dialog-app", files={"file": ("export.csv", APP_CSV)}, headers=auth), 200)
    assert loops == [None, None]
