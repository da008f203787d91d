"""Dates, dateTimes and times: partial precision, timezones, JSON strings, arithmetic."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import evaluate


@pytest.mark.parametrize(("expr", "expected"), [
    # same precision: an ordinary comparison
    ("@2020-01-01 < @2020-01-02", [True]),
    ("@2020-01 = @2020-01", [True]),
    ("@2020-01-01T10:00:00Z > @2020-01-01T09:59:59Z", [True]),
    # different precision: decided when an earlier component differs, else unknown (empty)
    ("@2020 < @2021-06", [True]),
    ("@2020-03 > @2020-02-28", [True]),
    ("@2020 < @2020-06", []),
    ("@2020 = @2020-01", []),
    ("@2020-01-01 = @2020-01-01T00:00:00Z", []),
    ("@2020-01-01 < @2020-01-01T10:00:00Z", []),
    ("@2020-01-01 < @2020-01-02T10:00:00Z", [True]),
    # seconds and milliseconds are one precision
    ("@2020-01-01T10:00:00 = @2020-01-01T10:00:00.000", [True]),
    ("@2020-01-01T10:00:00.5 > @2020-01-01T10:00:00", [True]),
    # timezones are normalised before comparing
    ("@2020-01-01T10:00:00+02:00 = @2020-01-01T08:00:00Z", [True]),
    ("@2020-01-01T10:00:00+02:00 < @2020-01-01T09:00:00Z", [True]),
    ("@2020-01-01T00:30:00+01:00 < @2020-01-01", [True]),
    # equivalence: different precision is simply not equivalent
    ("@2020 ~ @2020-01", [False]),
    ("@2020-01-01 ~ @2020-01-01", [True]),
    ("@T10:00 < @T10:30", [True]),
    ("@T10 < @T10:30", []),
    ("@T10:00:00 = @T10:00", []),
])
def test_precision_and_timezones(expr, expected):
    assert evaluate(expr, {}) == expected


def test_precision_matches_fhirpathpy(oracle):
    # Not compared: `@2020-01-01 = @2020-01-01T00:00:00Z`, false in fhirpathpy but empty per
    # the spec ("if one input has a value for the precision and the other does not ... empty").
    for expr in ["@2020 < @2020-06", "@2020 < @2021-06", "@2020-01-01T00:30:00+01:00 < @2020-01-01",
                 "@2020-01-01T10:00:00+02:00 = @2020-01-01T08:00:00Z", "@2020 ~ @2020-01", "@2020-01-02 > @2020-01-01"]:
        assert evaluate(expr, {}) == oracle(expr, {}), expr


PATIENT = {"resourceType": "Patient", "birthDate": "1980-05-17", "deceasedDateTime": "2021-03-04T10:15:00+01:00"}


@pytest.mark.parametrize(("expr", "expected"), [
    ("birthDate < @2000-01-01", [True]),
    ("birthDate = @1980-05-17", [True]),
    ("birthDate > @1980-04", [True]),
    ("birthDate > @1980-05", []),
    ("birthDate < today()", [True]),
    ("birthDate < now()", [True]),
    ("deceased > @2021-03-04T09:00:00Z", [True]),
    ("deceased < @2021-03-04T09:30:00Z", [True]),
    ("deceased > birthDate", [True]),
    ("birthDate.toDate() = @1980-05-17", [True]),
    ("birthDate + 18 years < today()", [True]),
    ("birthDate + 18 years", ["1998-05-17"]),
    ("@2020-01-31 + 1 month", ["2020-02-29"]),
    ("@2020-03-01 - 1 day", ["2020-02-29"]),
    ("@2020-01-01T23:30:00Z + 45 minutes", ["2020-01-02T00:15:00Z"]),
    ("@T23:00 + 2 hours", ["01:00"]),
    ("@2019-02-28 + 1 'a'", ["2020-02-28"]),
])
def test_json_date_strings_compare_and_compute_as_dates(expr, expected):
    assert evaluate(expr, PATIENT) == expected


def test_two_json_date_strings_compare_as_dates():
    period = {"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-01T09:00:00Z"}
    assert evaluate("start <= end", period) == [True]  # 08:00Z before 09:00Z, though "10" > "09"
    assert evaluate("start <= end", {"start": "2020", "end": "2020-06"}) == []
    assert evaluate("start <= end", {"start": "beta", "end": "alpha"}) == [False]  # plain strings


def test_today_and_now():
    assert evaluate("today()", {}) == [date.today().isoformat()]
    assert evaluate("today() = @" + date.today().isoformat(), {}) == [True]
    assert evaluate("now() > today() - 1 day", {}) == [True]
    assert evaluate("now().toDate() <= today() + 1 day", {}) == [True]
    assert evaluate("today() + 1 day", {}) == [(date.today() + timedelta(days=1)).isoformat()]


def test_conversions():
    assert evaluate("'2020-02-03'.toDate()", {}) == ["2020-02-03"]
    assert evaluate("'2020-02-03T10:00:00Z'.toDate()", {}) == ["2020-02-03"]
    assert evaluate("'2020-02-03'.toDateTime() < @2020-02-03T10:00:00Z", {}) == []
    assert evaluate("'2020-02-30'.toDate()", {}) == []
    assert evaluate("'not a date'.convertsToDate()", {}) == [False]
    assert evaluate("'14:30'.toTime() = @T14:30", {}) == [True]
    assert evaluate("@2020-02-03.toString()", {}) == ["2020-02-03"]


def test_incomparable_values_are_an_error():
    with pytest.raises(FhirPathError, match="cannot compare"):
        evaluate("@2020-01-01 < 5", {})
    with pytest.raises(FhirPathError, match="cannot compare"):
        evaluate("@T10:00 < @2020-01-01", {})
    with pytest.raises(FhirPathError, match="cannot compare"):
        evaluate("birthDate < 'yesterday'.length()", PATIENT)
