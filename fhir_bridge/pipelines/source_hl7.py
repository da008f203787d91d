"""The HL7 v2 source: files (one message, messages back to back, batches) and live MLLP messages
(read here, received and acknowledged by pipelines/hl7_feed.py).

A message's text is decoded by `decode_text` into a plain dict the mapping engine walks (shape in
mappings/hl7/README.md); the message type picks the mapping file; `Ingest` does the rest. A message
that cannot be parsed, or whose type is not imported, becomes a record that fails to map, so it is
quarantined with its reason, never dropped.

Reading a file only splits each message into segments and checks its header (`Hl7Message`); the
fields are decoded when the record is mapped. A large import maps in worker processes while the
importing process, the one every record waits on, reads, links and stores: decoding there was a
fifth of a replay's time in that process, and the decoded dict many times the text to send over.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from hl7.util import unescape

from fhir_bridge.errors import BridgeError, InputError
from fhir_bridge.formats.hl7v2 import Message, encoding_characters, message_segments, split_batch
from fhir_bridge.mapping import MappingEngine
from fhir_bridge.pipelines.merge_request import MergeRequest
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.pipelines.source_records import (Mapped, NotRetryable, Unreadable, raise_if_unreadable,
                                                   record_context, retry_context, unreadable)

# Message type (MSH-9.1, MSH-9.2) -> mapping name.
MERGE_MAPPING = "hl7-adt-merge"
MAPPINGS = {
    ("ADT", "A28"): "hl7-adt-person",
    ("ADT", "A31"): "hl7-adt-person",
    ("ADT", "A08"): "hl7-adt-person",
    ("ADT", "A40"): MERGE_MAPPING,
    ("ORU", "R01"): "hl7-oru-dialog",
}

# v2.4 fields of type TS/DT that the mappings read. The `date` transform knows ISO dates but not
# HL7's YYYYMMDD[HHMM[SS]], so the decoder rewrites these (and only these: a 10-digit NHS number
# must never look like a time) to `YYYY-MM-DD HH:MM:SS`. Values that do not fit are left as sent,
# so the transform reports them and the message is quarantined.
TIMESTAMP_FIELDS = frozenset({"MSH-7", "EVN-2", "EVN-6", "PID-7", "PID-29", "OBR-7", "OBR-8", "OBR-14",
                              "OBX-14", "OBX-19"})
# YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ]: a TS may stop at any part (a birth date known to the month)
_TS = re.compile(r"(\d{4})(?:(\d\d)(?:(\d\d)(?:(\d\d)(\d\d)(\d\d)?(?:\.\d{1,4})?)?)?)?([+-]\d{4})?\Z")
OBSERVATIONS_BY_CODE = "OBX-by-code"


class _Encoding(NamedTuple):
    """What python-hl7's unescape reads of a message: its separators and escape character."""

    separators: str
    esc: str


def hl7_record(message: Message) -> dict[str, Any]:
    """One parsed message as a plain dict (see `decode_text`)."""
    return _record([str(segment) for segment in message], _Encoding(message.separators, message.esc))


class Hl7Message(Mapping):
    """One message as a record: `decode_text`'s dict, decoded when first read. Pickled (to an
    import's worker process) as its segments, so it is decoded where it is mapped."""

    __slots__ = ("segments", "encoding", "_fields")

    def __init__(self, segments: list[str], encoding: _Encoding):
        self.segments = segments
        self.encoding = encoding
        self._fields: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            self._fields = _record(self.segments, self.encoding)
        return self._fields

    def person_key(self) -> str | None:
        """The sender's id of the person (first PID-3), read from the PID segment alone."""
        pid = next((text for text in self.segments if text[:3] == "PID"), None)
        return None if pid is None else _person_key(_segment_fields(pid, "PID", self.encoding))

    def __getitem__(self, key: str) -> Any:
        return self.fields()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields())

    def __len__(self) -> int:
        return len(self.fields())

    def __reduce__(self):
        return Hl7Message, (self.segments, self.encoding)


def decode_text(text: str) -> dict[str, Any]:
    """One message's text as a plain dict (documented in mappings/hl7/README.md), checked as
    `parse_message` checks it but read straight from the text: python-hl7's tree, built and turned
    back into text, was half the cost of a message. InputError when it is not a message.

    - `"PID-5.1"`: fields and components of the FIRST segment with each id, by IG name, first
      repetition (`"PID-7"` is the whole field, `"PID-5.1"` a component, `"PID-3.4.2"` a subcomponent);
    - `"PID-3~"`: every repetition of a field, each a dict with the same keys (`"PID-3.4"` ...);
    - `"OBX"`: every segment with that id, in message order, each a dict of its own fields;
    - `"OBX-by-code"`: the OBX segments grouped by OBX-3.1, so a mapping can ask for an observation
      by its code (a code sent twice gives two elements: nothing is silently dropped).
    """
    return read_message(text).fields()


def read_message(text: str) -> Hl7Message:
    """A message's segments and separators, checked as `decode_text` checks them, fields not yet
    decoded; InputError when it is not a message."""
    segments = message_segments(text)
    return Hl7Message(segments, _Encoding(*encoding_characters(segments[0])))


def _record(segments: list[str], encoding: _Encoding) -> dict[str, Any]:
    record: dict[str, Any] = {}
    by_code: dict[str, list[dict[str, Any]]] = {}
    for text in segments:
        segment_id = text[:3]
        fields = _segment_fields(text, segment_id, encoding)
        if segment_id not in record:
            record.update(fields)
        record.setdefault(segment_id, []).append(fields)
        if segment_id == "OBX" and fields.get("OBX-3.1"):
            by_code.setdefault(fields["OBX-3.1"], []).append(fields)
    record[OBSERVATIONS_BY_CODE] = by_code
    return record


def _segment_fields(segment: str, segment_id: str, encoding: _Encoding) -> dict[str, Any]:
    # A few string splits per field: decoding runs once per message, MLLP and file replay alike.
    fields: dict[str, Any] = {}
    separators = encoding.separators  # CR, field, repetition, component, subcomponent
    texts = segment.split(separators[1])
    # texts[0] is the id; MSH-1 is the field separator itself, so MSH-n is texts[n - 1]
    offset, first = (1, 3) if segment_id == "MSH" else (0, 1)
    for number in range(first, len(texts) + offset):
        text = texts[number - offset]
        if not text:
            continue
        name = f"{segment_id}-{number}"
        reps = [_repetition(rep, name, encoding) for rep in text.split(separators[2])]
        fields.update(reps[0])
        fields[name + "~"] = reps
    return fields


def _repetition(text: str, name: str, encoding: _Encoding) -> dict[str, str]:
    """`name` -> the whole repetition, `name.c` -> each component, `name.c.s` -> subcomponents."""
    component_sep, subcomponent_sep = encoding.separators[3], encoding.separators[4]
    escape = encoding.esc

    def leaf(value: str) -> str:
        return unescape(encoding, value) if escape and escape in value else value

    components = text.split(component_sep)
    values = {name: leaf(text) if len(components) == 1 and subcomponent_sep not in text else text}
    for c, component in enumerate(components, 1):
        if subcomponent_sep in component:
            subs = component.split(subcomponent_sep)
            values[f"{name}.{c}"] = component
            for s, sub in enumerate(subs, 1):
                values[f"{name}.{c}.{s}"] = leaf(sub)
        else:
            values[f"{name}.{c}"] = leaf(component)
    if name in TIMESTAMP_FIELDS:
        for key in (name, f"{name}.1"):
            values[key] = _timestamp(values[key])
    return values


def _timestamp(value: str) -> str:
    match = _TS.match(value.strip())
    if not match:
        return value
    year, month, day, hour, minute, second, offset = match.groups()
    if day is None:  # a partial date stays partial: FHIR dates may be YYYY or YYYY-MM
        return year if month is None else f"{year}-{month}"
    text = f"{year}-{month}-{day}"
    if hour is None:
        return text
    clock = f"{hour}:{minute}:{second or '00'}"
    if offset:  # an explicit offset wins over the transform's Europe/London default
        return f"{text}T{clock}{offset[:3]}:{offset[3:]}"
    return f"{text} {clock}"


class Hl7Source:
    """HL7 v2 files: each message one record, located `file:message-number`."""

    name = "hl7"

    def __init__(self, engine: MappingEngine, organization: str, bridge=None):
        self.engine = engine
        self.parameters = {"organization": organization}
        self.bridge = bridge
        self._context = record_context(organization=organization)  # the raw message is all a retry needs

    def records(self, paths: list[Path]) -> Iterator[SourceRecord]:
        for path in _files(paths):
            try:
                with path.open("rb") as feed:  # read as it is imported: a year's feed in one file is fine
                    number = 0
                    for number, text in split_batch(feed):
                        yield self.record(f"{path}:{number}", text)
                if number == 0:  # blank, or batch wrappers with no message in them
                    yield unreadable(self.name, f"{path}:1", InputError("empty HL7 file", location=str(path)), b"",
                                     file=str(path))
            except OSError as exc:
                yield unreadable(self.name, str(path), InputError(f"cannot read {path}: {exc.strerror}"), b"",
                                 file=str(path))

    def record(self, location: str, text: str) -> SourceRecord:
        """One message's record (read from its text, also when the MLLP listener parsed it); its
        fields are decoded when it is mapped (`Hl7Message`)."""
        raw = text.encode("utf-8")
        try:
            message = read_message(text)
        except BridgeError as exc:
            return unreadable(self.name, location, exc, raw)
        return SourceRecord(self.name, location, raw, message, message.person_key(), self._context)

    def record_from_entry(self, entry) -> SourceRecord:
        """A quarantined message, parsed again for a retry (NotRetryable when it could not be)."""
        retry_context(entry)
        record = self.record(entry.location, entry.raw.decode("utf-8", "replace"))
        if isinstance(record.data, Unreadable):  # it parsed when imported: only a changed parser gets here
            raise NotRetryable(f"the message cannot be parsed: {record.data.error.message}")
        return record

    def map(self, record: SourceRecord) -> Mapped:
        raise_if_unreadable(record)
        data = record.data.fields()  # decoded here: in a worker process, for a large import
        kind = (data.get("MSH-9.1", ""), data.get("MSH-9.2", ""))
        mapping = MAPPINGS.get(kind)
        if mapping is None:
            raise InputError(f"message type {kind[0]}^{kind[1]} is not imported", location=record.location)
        result = self.engine.map(mapping, data, record.location, self.parameters)
        problems = [p.to_issue() for p in result.problems]
        if mapping == MERGE_MAPPING:
            # The survivor is validated like any ADT's Patient; the merged person is only identifiers.
            survivor, merged = result.resources
            return Mapped([survivor], problems, MergeRequest(survivor, merged.get("identifier", [])))
        return Mapped(result.resources, problems)


def _files(paths: list[Path]) -> Iterator[Path]:
    """Files as given; a folder gives every file under it, in name order (feeds land as one file
    per message or per batch, with any extension)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def _person_key(record: dict[str, Any]) -> str | None:
    """The sender's id of the person (first PID-3), for identity reviews."""
    value = record.get("PID-3.1")
    return f"{value}@{record.get('PID-3.4', '')}" if value else None
