"""Inputs that arrive as bytes without a file name: an import's standard input (`-`) and a
`$ingest` Binary upload. The adapters tell a zip, a JSON file, an HL7 feed and a CSV file apart by
the file name's suffix, so these are written to a file named for what the bytes are.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from fhir_bridge.pipelines.source_records import Unreadable, record_context

__all__ = ["STDIN", "name_for", "shown_as", "stdin_as_file"]

STDIN = Path("-")
_SNIFF_BYTES = 4096
_ZIP = b"PK\x03\x04"


def name_for(source: str, start: bytes, stem: str = "upload") -> str:
    """A file name whose suffix says what `start` (the first bytes, or all) begins: a zip, JSON (a
    VCSE export's JSON form), an HL7 feed, else CSV."""
    start = start[:_SNIFF_BYTES]
    if start.startswith(_ZIP):
        return f"{stem}.zip"
    if source == "hl7":
        return f"{stem}.hl7"
    if start.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return f"{stem}.json"
    return f"{stem}.csv"


def shown_as(records: Iterable, names: dict[Path, str]) -> Iterator:
    """`records` with a temporary path shown as the name given (`stdin.csv:12`, not
    `/tmp/fhir-bridge-stdin-x1y2/stdin.csv:12`): in the location, which quarantine, reports and
    reviews show and which is part of a quarantine entry's id (the same bad row sent twice is one
    entry), and, for input that could not be read, in the reason and the file the entry names (a
    later import of the fixed input resolves it by that name)."""
    if not names:
        yield from records
        return
    prefixes = sorted(((str(path), name) for path, name in names.items()), key=lambda p: -len(p[0]))
    for record in records:
        for prefix, name in prefixes:
            if record.location.startswith(prefix):
                yield _renamed(record, prefix, name)
                break
        else:
            yield record


def _renamed(record, prefix: str, name: str):
    def shown(text: str) -> str:
        return text.replace(prefix, name)

    record = replace(record, location=shown(record.location))
    if isinstance(record.data, Unreadable):
        error = copy.copy(record.data.error)
        error.message = shown(error.message)
        error.args = (error.message,)
        context = json.loads(record.context) if record.context else None
        if context and isinstance(context.get("file"), str):
            context["file"] = shown(context["file"])
        record = replace(record, data=Unreadable(error),
                         context=record_context(**context) if context else record.context)
    return record


@contextmanager
def stdin_as_file(source: str, paths: list[Path]) -> Iterator[list[Path]]:
    """`paths` with `-` replaced by a temporary file holding standard input (copied a chunk at a
    time: a zip has to be read from its end, and a file is what every adapter reads), removed
    when the block ends. The file's name says what it holds (`stdin.csv`, `stdin.zip` ...)."""
    if STDIN not in paths:
        yield paths
        return
    stream = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-stdin-") as folder:
        start = stream.read(_SNIFF_BYTES)
        spooled = Path(folder) / name_for(source, start, "stdin")
        with spooled.open("wb") as out:
            out.write(start)
            shutil.copyfileobj(stream, out, 1 << 20)
        yield [spooled if path == STDIN else path for path in paths]
