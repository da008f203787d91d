"""HL7 v2 messages: parse (python-hl7), read fields in IG notation, split batch files, build ACKs.

python-hl7 parses an ORU in about a millisecond where hl7apy takes about twenty (bench/formats.py
measures both), so every inbound path (files, MLLP) parses here with python-hl7; hl7apy stays for
building and validating outbound messages. python-hl7 checks almost nothing, so ``parse_message``
does the checks a feed needs before mapping (an MSH first, sane encoding characters, segment ids)
and turns every failure into an ``InputError`` that the caller quarantines or answers with AR.

Field paths follow the IG notation: ``PID-3``, ``PID-3.1``, ``PID-3.4.2`` (subcomponent),
``PID-3[2].1`` (second repetition, 1-based). MSH fields are numbered as in the standard: MSH-1 is
the field separator, MSH-2 the encoding characters.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, Literal

import hl7
from hl7.util import unescape as _unescape

from fhir_bridge.errors import InputError

__all__ = [
    "Message",
    "Segment",
    "parse_message",
    "message_segments",
    "encoding_characters",
    "message_type",
    "control_id",
    "field",
    "repetitions",
    "Repetition",
    "segments",
    "split_batch",
    "build_ack",
    "decode",
]

Message = hl7.Message
Segment = hl7.Segment
AckCode = Literal["AA", "AE", "AR"]

_LINE_BREAK = re.compile(r"\r\n|\n|\r")
# A segment id is three upper-case letters or digits (Z-segments included)
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_PATH = re.compile(r"([A-Z][A-Z0-9]{2})-(\d+)(?:\[(\d+)\])?(?:\.(\d+))?(?:\.(\d+))?\Z")
# Wrappers of batch files; they carry no patient data
_BATCH_WRAPPERS = ("FHS", "BHS", "BTS", "FTS")
_SEGMENT_START = re.compile(r"[A-Z][A-Z0-9]{2}[^A-Za-z0-9\s]")  # a segment id, then the field separator
# MLLP framing bytes left in files captured from the wire
_FRAMING = str.maketrans("", "", "\x0b\x1c\ufeff")  # and a byte-order mark
# The same, for reading files as bytes (split_batch)
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\n|\r")
_BATCH_WRAPPER_BYTES = tuple(w.encode() for w in _BATCH_WRAPPERS)
_SEGMENT_START_BYTES = re.compile(_SEGMENT_START.pattern.encode())
_FRAMING_BYTES = b"\x0b\x1c"
_BOM = "\ufeff".encode()
_CHUNK_BYTES = 1 << 20


def decode(data: bytes) -> str:
    """HL7 from English trusts is ASCII, UTF-8 or Windows-1252 (MSH-18 is rarely filled in)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_message(text: str | bytes) -> Message:
    """Parse one message; segments may be separated by CR, LF or CRLF."""
    segments_text = message_segments(text)
    try:
        return hl7.parse("\r".join(segments_text))
    except hl7.ParseException as exc:  # defensive: the checks above should catch what it refuses
        raise InputError(f"unparseable HL7 message: {exc}") from exc


def message_segments(text: str | bytes) -> list[str]:
    """The segment texts of one message, checked as `parse_message` checks them, without building
    python-hl7's tree (most of the cost of reading a message): for readers that split the text
    themselves. InputError names what is wrong."""
    if isinstance(text, bytes):
        text = decode(text)
    segments_text = [s for s in _LINE_BREAK.split(text.translate(_FRAMING).strip()) if s.strip()]
    if not segments_text:
        raise InputError("empty HL7 message")
    if not segments_text[0].startswith("MSH"):
        where = next((i for i, s in enumerate(segments_text, 1) if s.startswith("MSH")), None)
        if where is None:
            raise InputError("no MSH segment: not an HL7 v2 message", location="segment 1")
        raise InputError(f"message does not start with MSH (found at segment {where})", location="segment 1")
    _check_encoding_characters(segments_text[0])
    separator = segments_text[0][3]
    for number, segment in enumerate(segments_text[1:], 2):
        if not _SEGMENT_ID.match(segment.split(separator, 1)[0]):
            raise InputError(f"segment {number} has no valid segment id: {segment[:20]!r}",
                             location=f"segment {number}")
    return segments_text


def encoding_characters(msh: str) -> tuple[str, str]:
    """(separators, escape) of a checked MSH segment, as python-hl7 holds them: separators are
    segment (CR), field, repetition, component, subcomponent."""
    return "\r" + msh[3] + msh[5] + msh[4] + msh[7], msh[6]


def _check_encoding_characters(msh: str) -> None:
    if len(msh) < 8:
        raise InputError("MSH segment too short to hold the encoding characters", location="MSH-2")
    separator = msh[3]
    end = msh.find(separator, 4)
    encoding = msh[4:end] if end >= 0 else msh[4:]
    chars = separator + encoding
    # 4 characters (component, repetition, escape, subcomponent); v2.7+ adds a 5th (truncation)
    if (
        len(encoding) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise InputError(f"bad encoding characters in MSH-1/MSH-2: {chars!r}", location="MSH-2")


def segments(msg: Message, segment_id: str) -> list[Segment]:
    """Every segment with this id, in message order (an empty list when there is none)."""
    return [s for s in msg if s[0][0] == segment_id]


def field(target: Message | Segment, path: str) -> str:
    """The value at ``path`` ('' when absent). Leaves are unescaped; a path that stops above the
    leaves (``PID-3``) returns the text with its separators, as it was sent.

    On a Message the first segment with the id is read; pass a Segment to read a given one.
    """
    segment_id, number, repetition, component, subcomponent = _parse_path(path)
    segment = _segment(target, segment_id)
    if segment is None:
        return ""
    if segment_id == "MSH" and number <= 2:  # the separators themselves: never unescaped
        return str(segment[number])
    # segment[0] is the segment id, so field n is segment[n] (MSH included: MSH-1 is segment[1])
    node = _child(segment[number], repetition or 1) if number < len(segment) else ""
    if component is not None:
        node = _child(node, component)
        if subcomponent is not None:
            node = _child(node, subcomponent)
    text = str(node)
    return _unescape(segment, text) if _is_leaf(node, segment) else text


def repetitions(target: Message | Segment, path: str) -> Iterator[Repetition]:
    """The repetitions of a field (``PID-3``), for example every identifier of a patient."""
    segment_id, number, repetition, component, _ = _parse_path(path)
    if repetition is not None or component is not None:
        raise ValueError(f"repetitions() takes a field path like 'PID-3', not {path!r}")
    segment = _segment(target, segment_id)
    if segment is None or number >= len(segment):
        return
    node = segment[number]
    if not str(node):
        return
    if isinstance(node[0], str):  # no repetition separator: python-hl7 stores the text directly
        yield Repetition(node[0], segment)
        return
    for rep in node:
        yield Repetition(rep, segment)


class Repetition:
    """One repetition of a field: ``get(1)`` for component 1, ``get(4, 2)`` for CX-4.2."""

    __slots__ = ("_node", "_segment")

    def __init__(self, node: object, segment: Segment) -> None:
        self._node, self._segment = node, segment

    def get(self, component: int = 1, subcomponent: int | None = None) -> str:
        node = _child(self._node, component)
        if subcomponent is not None:
            node = _child(node, subcomponent)
        text = str(node)
        return _unescape(self._segment, text) if _is_leaf(node, self._segment) else text

    def __str__(self) -> str:
        return str(self._node)


def _parse_path(path: str) -> tuple[str, int, int | None, int | None, int | None]:
    match = _PATH.match(path)
    if not match:
        raise ValueError(f"not an HL7 field path: {path!r} (expected e.g. 'PID-3[2].1')")
    seg, num, rep, comp, sub = match.groups()
    ints = [int(x) if x is not None else None for x in (rep, comp, sub)]
    if int(num) < 1 or any(x is not None and x < 1 for x in ints):
        raise ValueError(f"HL7 positions are 1-based: {path!r}")
    return seg, int(num), ints[0], ints[1], ints[2]


def _segment(target: Message | Segment, segment_id: str) -> Segment | None:
    if isinstance(target, hl7.Segment):
        if target[0][0] != segment_id:
            raise ValueError(f"path names {segment_id} but the segment is {target[0][0]}")
        return target
    return next((s for s in target if s[0][0] == segment_id), None)


def _child(node: object, position: int) -> object:
    """python-hl7 collapses a level that has no separator into plain text; this walks both shapes."""
    if isinstance(node, str):
        return node if position == 1 else ""
    return node[position - 1] if position <= len(node) else ""  # type: ignore[index]


def _is_leaf(node: object, segment: Segment) -> bool:
    return isinstance(node, str) or not any(sep in str(node) for sep in segment.separators[1:])


def message_type(msg: Message) -> tuple[str, str]:
    """MSH-9.1 and MSH-9.2, e.g. ('ORU', 'R01')."""
    return field(msg, "MSH-9.1"), field(msg, "MSH-9.2")


def control_id(msg: Message) -> str:
    """MSH-10: the id an ACK must echo in MSA-2."""
    return field(msg, "MSH-10")


def split_batch(data: bytes | BinaryIO) -> Iterator[tuple[int, str]]:
    """Split a file (its bytes, or the open file: read a chunk at a time, so a feed of any size
    takes the memory of one message) into message texts, numbered from 1, segments joined by CR.

    Accepts a single message, messages back to back, FHS/BHS ... BTS/FTS batches and files
    captured from MLLP. Lines that are not segments (garbage) are never dropped and never cost a
    good message: garbage between messages (before the first MSH, or directly before an MSH) is
    yielded as a text of its own, so parsing it fails and it is quarantined; garbage followed by
    more segments of the same message stays in that message, which is then quarantined whole
    rather than imported truncated. Each text is decoded on its own (`decode`): one Windows-1252
    message does not turn the UTF-8 of the others into mojibake.
    """
    index, current, garbage = 0, [], []
    for line in _lines(data):
        if not line.strip() or line[:3] in _BATCH_WRAPPER_BYTES:
            continue
        if not _SEGMENT_START_BYTES.match(line):
            garbage.append(line)
            continue
        if line.startswith(b"MSH"):
            for text in (current, garbage):
                if text:
                    index += 1
                    yield index, decode(b"\r".join(text))
            current, garbage = [], []
        elif garbage:
            current += garbage  # inside a message: it goes to quarantine with it
            garbage = []
        current.append(line)
    for text in (current, garbage):
        if text:
            index += 1
            yield index, decode(b"\r".join(text))


def _lines(data: bytes | BinaryIO) -> Iterator[bytes]:
    """The lines of a file (CR, LF or CRLF), MLLP framing and byte-order marks taken out. CR and LF
    are single bytes in UTF-8 and Windows-1252 alike, so lines are split before decoding."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    rest = b""
    while chunk := source.read(_CHUNK_BYTES):
        lines = _LINE_BREAK_BYTES.split(rest + chunk)
        rest = lines.pop()  # maybe cut short: completed by the next chunk (a CR LF cut in two
        for line in lines:  # gives an empty line, which is skipped like any other)
            yield line.translate(None, _FRAMING_BYTES).replace(_BOM, b"")
    yield rest.translate(None, _FRAMING_BYTES).replace(_BOM, b"")


def build_ack(
    original: Message | str | bytes | None,
    code: AckCode,
    text: str = "",
    *,
    now: datetime,
    error_code: str = "207",
    ack_control_id: str | None = None,
) -> str:
    """An ACK for ``original`` (segments joined by CR, no MLLP framing).

    ``original`` may be raw text that failed to parse (AR): its MSH is then read as far as it
    can be, so MSA-2 still echoes the control id when the sender's header was intact. For AE and
    AR an ERR segment carries ``error_code`` (HL7 table 0357: 207 application internal error,
    101 required field missing, 102 data type error, 200 unsupported message type ...) in both
    the v2.4 layout (ERR-1) and the v2.5 one (ERR-3, ERR-4 severity, ERR-8 user message).
    """
    header = _header_of(original)
    sending_app, sending_fac, receiving_app, receiving_fac = (header.get(i, "") for i in (3, 4, 5, 6))
    trigger = header.get(9, "").split("^")[1:2]
    original_id = header.get(10, "")
    processing_id = header.get(11, "") or "P"
    version = header.get(12, "") or "2.4"
    msg_type = f"ACK^{trigger[0]}^ACK" if trigger and trigger[0] else "ACK"
    # Control ids are unique per sender, so one derived from the original is unique too (MSH-10 is ST 20)
    own_id = ack_control_id or f"ACK{original_id}"[:20]
    stamp = now.strftime("%Y%m%d%H%M%S") + (now.strftime("%z") if now.tzinfo else "")
    text = _escape(text)
    lines = [
        # Sending and receiving application/facility swapped: the ACK goes back to the sender
        f"MSH|^~\\&|{receiving_app}|{receiving_fac}|{sending_app}|{sending_fac}|{stamp}||"
        f"{msg_type}|{own_id}|{processing_id}|{version}",
        f"MSA|{code}|{original_id}|{text}",
    ]
    if code != "AA":
        description = _escape(_ERROR_NAMES.get(error_code, ""))
        severity = "E"
        lines.append(
            f"ERR|^^^{error_code}&{description}&HL70357||{error_code}^{description}^HL70357|{severity}||||{text}"
        )
    return "\r".join(lines)


_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


def _header_of(original: Message | str | bytes | None) -> dict[int, str]:
    """MSH-3 to MSH-12 by number, as sent (escapes kept), component separators re-encoded as '^'.

    Read from the text, so a parsed message and one that failed to parse give the same ACK."""
    if original is None:
        return {}
    if isinstance(original, hl7.Message):
        text = str(original)
    else:
        text = decode(original) if isinstance(original, bytes) else original
    first = _LINE_BREAK.split(text.translate(_FRAMING).lstrip(), 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return {}
    separator, component = first[3], first[4]
    values = first.split(separator)
    # values[0] is "MSH", values[1] the encoding characters: MSH-n is values[n - 1]
    return {n: values[n - 1].replace(component, "^") for n in range(3, min(len(values) + 1, 13))}


def _escape(text: str) -> str:
    """Escape the default delimiters (the ACK is always built with |^~\\&) and flatten line breaks."""
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    text = text.replace("&", "\\T\\").replace("~", "\\R\\")
    return _LINE_BREAK.sub(" ", text)
