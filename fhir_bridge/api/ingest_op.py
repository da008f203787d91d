"""`POST [base]/$ingest`: a partner pushes an export file over HTTP; the same pipeline as
`fhir-bridge import` runs on it, as the partner (its token's ODS code is the organisation).

Input: a Parameters resource with `source` (valueCode) and one or more `file` (valueAttachment
with base64 `data` and a `title`), a Binary resource with `?source=`, or a multipart/form-data
upload (a `source` field, or `?source=`, and one or more files), what `curl -F` sends. The files
of one upload are one export (a RiO export's extracts go together). Output: Parameters with the
run id, the counts and an OperationOutcome (the run report).
"""
from __future__ import annotations

import base64
import binascii
import tempfile
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhir_bridge.api import context as ctx
from fhir_bridge.api.auth import authorize
from fhir_bridge.api.capability import register_operation
from fhir_bridge.errors import InputError
from fhir_bridge.fhir.outcome import Issue, operation_outcome
from fhir_bridge.pipelines.input_files import name_for
from fhir_bridge.pipelines.sources import SOURCE_NAMES, run_import

router = APIRouter(prefix=ctx.FHIR_BASE)
WRITES = ("Patient", "QuestionnaireResponse")  # what an import stores (Provenance is the server's own record)
register_operation("*", "ingest", "https://fhir-bridge.example.org/OperationDefinition/ingest")


@router.post("/$ingest")
async def ingest(request: Request) -> Response:
    who = ctx.caller(request, WRITES[0], "write")
    for resource_type in WRITES[1:]:
        authorize(who, resource_type, "write")
    data = await ctx.read_body(request)
    content_type = request.headers.get("content-type") or ""

    def read() -> tuple[str, list[tuple[str, bytes]]]:
        # off the event loop: a 28 MB multipart body took ~0.5 s to parse, every other request waiting
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            source, files = _form(data, content_type, request.query_params.get("source"))
        else:
            source, files = _inputs(ctx.parse_resource(request, data), request.query_params.get("source"))
        return source, _named(source, files)

    source, files = await run_in_threadpool(read)
    bridge = ctx.state(request).bridge

    def run():
        with tempfile.TemporaryDirectory(prefix="fhir-bridge-ingest-") as folder:
            paths = []
            for name, data in files:
                paths.append(Path(folder) / name)
                paths[-1].write_bytes(data)
            if source == "rio" and len(paths) > 1:  # a RiO export's extracts go together (a zip is one)
                paths = [Path(folder)]
            # located by partner: one partner's upload must neither share nor resolve another's entries
            return run_import(bridge, source, paths, organization=who.partner, caller=who,
                              quarantine_dir=bridge.settings.data_dir / "quarantine",
                              shown={Path(folder): f"$ingest/{who.partner}"})

    report = await run_in_threadpool(run)
    summary = report.to_json()
    issues = [Issue("information", "informational",
                    f"{summary['in']} records in: {summary['created']} created, {summary['updated']} updated, "
                    f"{summary['unchanged']} unchanged, {summary['quarantined']} quarantined")]
    issues += [Issue("warning", "processing", f"{n} record(s) quarantined: {reason}")
               for reason, n in sorted(report.quarantined.items())]
    counts = [{"name": key, "valueInteger": summary[key]}
              for key in ("in", "created", "updated", "unchanged", "quarantined")]
    result = {"resourceType": "Parameters", "parameter": [
        {"name": "run", "valueString": report.run_id}, *counts,
        {"name": "outcome", "resource": operation_outcome(issues)}]}
    return ctx.render(request, result)


def _named(source: str, files: list[tuple[str | None, bytes]]) -> list[tuple[str, bytes]]:
    """Each file under its own name only (no folder of the sender's choosing); one sent without a
    usable name is named for what its bytes are (a zip, JSON, HL7 or CSV). Two files of one name
    are refused: the name is what tells an export's extracts apart, and one would be lost."""
    named, seen = [], set()
    for number, (title, data) in enumerate(files, 1):
        name = Path(title).name if title else ""
        name = name if name not in ("", ".", "..") else name_for(source, data, f"file-{number}")
        if name.casefold() in seen:
            raise InputError(f"Two files named {name!r} in one upload: send each extract once")
        seen.add(name.casefold())
        named.append((name, data))
    return named


def _inputs(body: dict, source_param: str | None) -> tuple[str, list[tuple[str | None, bytes]]]:
    if body.get("resourceType") == "Binary":
        if not source_param:
            raise InputError("A Binary upload needs ?source= (one of " + ", ".join(sorted(SOURCE_NAMES)) + ")")
        return source_param, [(None, _decoded(body.get("data"), "Binary.data"))]
    if body.get("resourceType") != "Parameters":
        raise InputError("$ingest takes a Parameters (source, file) or a Binary resource")
    source = source_param
    files = []
    for i, p in enumerate(body.get("parameter", [])):
        if p.get("name") == "source":
            source = p.get("valueCode") or p.get("valueString")
        elif p.get("name") == "file":
            attachment = p.get("valueAttachment") or {}
            files.append((attachment.get("title"),
                          _decoded(attachment.get("data"), f"Parameters.parameter[{i}].valueAttachment.data")))
    if not source:
        raise InputError("$ingest needs a source (one of " + ", ".join(sorted(SOURCE_NAMES)) + ")")
    if not files:
        raise InputError("$ingest needs at least one file (valueAttachment with base64 data)")
    return source, files


def _form(data: bytes, content_type: str, source_param: str | None) -> tuple[str, list[tuple[str | None, bytes]]]:
    """A multipart/form-data upload (its size already limited): the `source` field and the files."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data)
    if not message.is_multipart():
        raise InputError("The multipart/form-data body could not be read (its boundary is missing or wrong)")
    source, files = source_param, []
    for part in message.iter_parts():
        field, filename = part.get_param("name", header="content-disposition"), part.get_filename()
        content = part.get_payload(decode=True) or b""
        if filename is not None:
            files.append((filename, content))
        elif field == "source":
            source = content.decode("utf-8", "replace").strip()
    if not source:
        raise InputError("$ingest needs a source (one of " + ", ".join(sorted(SOURCE_NAMES)) + "): a 'source' "
                         "field or ?source=")
    if not files:
        raise InputError("$ingest needs at least one file (a form field with a file name)")
    return source, files


def _decoded(data: object, where: str) -> bytes:
    if type(data) is not str:
        raise InputError(f"{where} must be base64 text", expression=where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where} is not valid base64", expression=where) from exc
