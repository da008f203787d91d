"""Reads FHIR resources from files: JSON, XML, NDJSON (one resource per line), or stdin (`-`).

Each resource comes out as a `Record` with a label saying where it came from (`file`, `file:3`
for an NDJSON line). A record that cannot be read carries the error instead of a resource, so a
batch goes on past it and the caller reports it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.fhir.codec import parse_resource_bytes
from fhir_bridge.fhir.model import StructureModel

NDJSON_SUFFIXES = {".ndjson", ".jsonl"}


@dataclass(frozen=True)
class Record:
    label: str
    resource: dict | None
    error: BridgeError | None = None


def read_records(paths: list[str], model: StructureModel) -> Iterator[Record]:
    for name in paths:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            yield Record(name, None, InputError(f"cannot read {name}: {exc.strerror or exc}"))
            continue
        label = "<stdin>" if name == "-" else name
        if Path(name).suffix.lower() in NDJSON_SUFFIXES or _looks_like_ndjson(data):
            yield from _ndjson(label, data)
            continue
        try:
            yield Record(label, parse_resource_bytes(data, model))
        except BridgeError as exc:
            yield Record(label, None, exc)


def _looks_like_ndjson(data: bytes) -> bool:
    """More than one non-empty line, each a JSON object: NDJSON whatever the file is called."""
    lines = [line for line in data.strip().splitlines() if line.strip()]
    return len(lines) > 1 and all(line.lstrip().startswith(b"{") and line.rstrip().endswith(b"}") for line in lines)


def _ndjson(label: str, data: bytes) -> Iterator[Record]:
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label}:{number}"
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield Record(where, None, InputError(f"line {number} is not valid JSON: {exc}"))
            continue
        if not isinstance(resource, dict):
            yield Record(where, None, InputError(f"line {number} is not a JSON object"))
            continue
        yield Record(where, resource)
