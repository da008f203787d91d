"""Build HL7 v2 messages with hl7apy and validate them strictly before they leave.

Knows no FHIR: the caller gives segments as plain values by field number (`SegmentValues`), this
module escapes them, puts them into hl7apy's message tree (which checks every value against its
datatype as it is set) and validates the whole message at VALIDATION_LEVEL.STRICT. hl7apy's
validator raises only its first error and merely writes length and table warnings to a report
file; here every error AND warning makes the message invalid, all of them named in one
`Unprocessable` (a value the receiver would truncate, or a code outside the HL7 table, is not
something to send to an EPR). hl7apy is slow to parse (see hl7v2.py) but building and checking one
ORU costs a few milliseconds, which an outbound feed can afford.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message, Segment
from hl7apy.exceptions import HL7apyException, MaxChildLimitReached
from hl7apy.validation import Validator

from fhir_bridge.errors import ConfigurationError, Unprocessable

__all__ = ["Components", "SegmentValues", "build_message", "check_structure", "escape"]

# One repetition of a field: component number -> text, or -> {subcomponent number -> text}
Components = dict[int, "str | dict[int, str]"]

_LINE_BREAK = re.compile(r"\r\n|\n|\r")


@dataclass
class SegmentValues:
    """One segment to build: its id, the groups it sits in (outermost first, as hl7apy names them,
    e.g. ("ORU_R01_PATIENT_RESULT", "ORU_R01_PATIENT")) and its fields by number, each a list of
    repetitions. Values are plain text: `build_message` escapes them."""

    segment_id: str
    groups: tuple[str, ...] = ()
    fields: dict[int, list[Components]] = field(default_factory=dict)


def escape(text: str) -> str:
    """HL7 escape sequences for the default delimiters |^~\\&; line breaks become spaces (only FT
    fields may carry \\.br\\, and none of ours is FT)."""
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    text = text.replace("&", "\\T\\").replace("~", "\\R\\")
    return _LINE_BREAK.sub(" ", text)


def build_message(structure: str, version: str, segments: list[SegmentValues], *, what: str = "message") -> str:
    """The message as ER7 text, segments separated by CR (no trailing CR, no MLLP framing).
    Unprocessable, naming `what` and every problem, when hl7apy refuses a value or the message."""
    message = _new_message(structure, version, what)
    problems: list[str] = []
    counts: dict[str, int] = {}
    for values in segments:
        counts[values.segment_id] = counts.get(values.segment_id, 0) + 1
        where = f"{values.segment_id}[{counts[values.segment_id]}]" if values.segment_id != "MSH" else "MSH"
        try:
            segment = message.msh if values.segment_id == "MSH" else _add_segment(message, values)
        except HL7apyException as exc:
            raise Unprocessable(f"{what}: cannot place segment {values.segment_id} in {structure}: {exc}") from exc
        for number, repetitions in sorted(values.fields.items()):
            _set_field(segment, values.segment_id, number, repetitions, where, problems)
    if not problems:
        problems = _validation_problems(message)
    if problems:
        raise Unprocessable(f"{what} is not a valid HL7 v{version} {structure}: " + "; ".join(problems))
    return message.to_er7()


def check_structure(structure: str, version: str, placements: list[tuple[tuple[str, ...], str, list[int]]]) -> None:
    """For loaders: every (groups, segment id, field numbers) can be placed in `structure`.
    ConfigurationError naming the first that cannot."""
    message = _new_message(structure, version, "structure check", error=ConfigurationError)
    for groups, segment_id, numbers in placements:
        try:
            segment = message.msh if segment_id == "MSH" else _add_segment(message, SegmentValues(segment_id, groups))
            for number in numbers:
                try:
                    segment.add_field(f"{segment_id}_{number}")
                except MaxChildLimitReached:  # there already (hl7apy fills MSH-7 and MSH-12 itself)
                    pass
        except HL7apyException as exc:
            place = "/".join((*groups, segment_id))
            raise ConfigurationError(f"{place} is not part of HL7 v{version} {structure}: {exc}") from exc


def _new_message(structure: str, version: str, what: str, error: type = Unprocessable) -> Message:
    try:
        return Message(structure, version=version, validation_level=VALIDATION_LEVEL.STRICT)
    except HL7apyException as exc:
        raise error(f"{what}: hl7apy knows no message structure {structure} in version {version}: {exc}") from exc


def _add_segment(message: Message, values: SegmentValues) -> Segment:
    """Reuse the last instance of each enclosing group; the innermost one is new when its last
    instance already holds this segment (each OBX gets its own ORU_R01_OBSERVATION group)."""
    parent: Message | Group = message
    for depth, name in enumerate(values.groups):
        existing = [c for c in parent.children if c.name == name]
        innermost = depth == len(values.groups) - 1
        reuse = existing and not (innermost and any(c.name == values.segment_id for c in existing[-1].children))
        parent = existing[-1] if reuse else parent.add_group(name)
    return parent.add_segment(values.segment_id)


def _set_field(segment: Segment, segment_id: str, number: int, repetitions: list[Components], where: str,
               problems: list[str]) -> None:
    name = f"{segment_id}_{number}"
    for index, components in enumerate(repetitions):
        text = _er7(components)
        if not text:
            continue
        try:
            if index == 0:
                # setattr replaces a field hl7apy filled in itself (MSH-7, MSH-12) or adds it
                setattr(segment, name.lower(), text)
            else:
                segment.add_field(name).value = text
        except (HL7apyException, ValueError) as exc:
            problems.append(f"{where} {segment_id}-{number}: {text!r}: {exc}")


def _er7(components: Components) -> str:
    if not components:
        return ""
    parts = [""] * max(components)
    for number, value in components.items():
        if isinstance(value, dict):
            subs = [""] * max(value) if value else []
            for sub, text in value.items():
                subs[sub - 1] = escape(text)
            parts[number - 1] = "&".join(subs)
        else:
            parts[number - 1] = escape(value)
    return "^".join(parts).rstrip("^")


def _validation_problems(message: Message) -> list[str]:
    """Every error and warning hl7apy's strict validation finds (it raises only the first error;
    the full list, warnings included, exists only as its report file)."""
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-hl7-") as folder:
        report = Path(folder) / "validation.txt"
        try:
            Validator.validate(message, report_file=str(report))
        except HL7apyException:
            pass  # the same error is in the report, next to the others
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    return [line.strip() for line in lines if line.strip()]
