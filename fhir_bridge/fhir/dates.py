"""FHIR date/dateTime/instant text -> integer microseconds since the epoch (UTC)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# Texts converted lately: an import batch asks for each DIALOG response's `authored` four times
# (its score row, the recording-burden checks before and after it is written). Bounded.
_CONVERTED: dict[str, int | None] = {}
_CONVERTED_LIMIT = 10_000
_UNSEEN = object()


def to_microseconds(value: object) -> int | None:
    """The start of the value's range; a dateTime without an offset is taken as UTC. None when
    the text is not a FHIR date/dateTime/instant."""
    if type(value) is not str or len(value) < 4:
        return None
    converted = _CONVERTED.get(value, _UNSEEN)  # one lookup: another thread may clear it meanwhile
    if converted is not _UNSEEN:
        return converted
    if len(_CONVERTED) >= _CONVERTED_LIMIT:
        _CONVERTED.clear()
    converted = _CONVERTED[value] = _to_microseconds(value)
    return converted


def _to_microseconds(value: str) -> int | None:
    text = value.replace("Z", "+00:00")
    try:
        if len(text) == 4:
            dt = datetime(int(text), 1, 1, tzinfo=timezone.utc)
        elif len(text) == 7:
            dt = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=timezone.utc)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return (dt - EPOCH) // timedelta(microseconds=1)  # exact: no float rounding
