"""FHIR date text -> microseconds since the epoch, remembered for texts met again."""
from __future__ import annotations

import pytest

from fhir_bridge.fhir.dates import to_microseconds

DAY = 86_400_000_000


@pytest.mark.parametrize(("text", "expected"), [
    ("1970", 0),
    ("1970-02", 31 * DAY),
    ("1970-01-02", DAY),
    ("1970-01-01T01:00:00Z", 3_600_000_000),
    ("1970-01-01T01:00:00+01:00", 0),
    ("1970-01-01T00:00:00.5", 500_000),  # no offset: UTC
    ("1970-13-01", None),
    ("not a date", None),
    ("197", None),
    (1970, None),
])
def test_to_microseconds(text, expected):
    assert to_microseconds(text) == expected
    assert to_microseconds(text) == expected  # as remembered
