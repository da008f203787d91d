"""FHIR date/dateTime/instant text -> integer microseconds since the epoch (UTC)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_microseconds(value: object) -> int | None:
    """The start of the value's range; a dateTime without an offset is taken as UTC. None when
    the text is not a FHIR date/dateTime/instant."""
    if type(value) is not str or len(value) < 4:
        return None
    return _to_microseconds(value)


# Texts converted lately: an import batch asks for each DIALOG response's `authored` four times
# (its score row, the recording-burden checks before and after it is written).
@lru_cache(maxsize=10_000)
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
