"""Named transforms: each turns one source value into FHIR or raises MappingProblem, never guesses."""
from __future__ import annotations

import pytest

from fhir_bridge.mapping.transforms import REGISTRY, MappingProblem, build_transform


def run(name: str, value, **arguments):
    return build_transform(name, arguments)(value)


@pytest.mark.parametrize("raw, expected", [
    ("06/02/2024", "2024-02-06"),
    ("2024-02-06", "2024-02-06"),
    (" 6/2/2024 ", "2024-02-06"),
    ("06/02/2024 10:15", "2024-02-06T10:15:00+00:00"),        # GMT in February
    ("2024-07-06T10:15:30", "2024-07-06T10:15:30+01:00"),     # BST in July
    ("2024-07-06T10:15:30Z", "2024-07-06T10:15:30+00:00"),
    ("20240206", "2024-02-06"),
    ("1999-11", "1999-11"),                                   # partial dates stay partial
    ("1999", "1999"),
])
def test_date_formats_become_fhir_date_or_datetime(raw, expected):
    assert run("date", raw) == expected


@pytest.mark.parametrize("raw", ["31/02/2024", "2024-13-01", "yesterday", "06/02/2024 25:00",
                                 "199911", "1999-13", "2024021"])  # strptime alone reads 199911 as 1999-01-01
def test_bad_dates_are_problems(raw):
    with pytest.raises(MappingProblem, match="date|time"):
        run("date", raw)


def test_nhs_number_is_normalised_and_checked():
    assert run("nhs_number", "943 476 5919") == "9434765919"
    with pytest.raises(MappingProblem, match="check digit"):
        run("nhs_number", "9434765918")
    with pytest.raises(MappingProblem, match="same digit"):
        run("nhs_number", "1111111111")


def test_text_transforms():
    assert run("upper", "rat") == "RAT"
    assert run("lower", "Pemberton, Rosa") == "pemberton, rosa"
    assert run("trim", "  x ") == "x"
    assert run("split", "Call GP; ;join gym;") == ["Call GP", "join gym"]
    assert run("split", "a|b", separator="|") == ["a", "b"]
    assert run("split", " ; ") is None
    assert run("integer", " 42 ") == 42
    with pytest.raises(MappingProblem):
        run("integer", "4.2")


@pytest.mark.parametrize("raw, expected", [("Y", "Y"), ("yes", "Y"), ("1", "Y"), ("N", "N"), ("No", "N"), ("0", "N")])
def test_yes_no_defaults(raw, expected):
    assert run("yes_no", raw) == expected


def test_yes_no_with_the_apps_own_codes():
    # The DIALOG+ app writes 2 = yes, 1 = no: with those arguments "1" means no, not yes.
    assert run("yes_no", "2", yes=["2"], no=["1"]) == "Y"
    assert run("yes_no", "1", yes=["2"], no=["1"]) == "N"
    with pytest.raises(MappingProblem, match="not a yes/no"):
        run("yes_no", "3", yes=["2"], no=["1"])


def test_yes_no_rejects_overlapping_arguments():
    with pytest.raises(ValueError):
        build_transform("yes_no", {"yes": ["1"], "no": ["1"]})


@pytest.mark.parametrize("raw, expected", [("1", "1"), ("7", "7"), (" 4 ", "4"), ("3.0", "3"), ("8", "8")])
def test_dialog_rating(raw, expected):
    assert run("dialog_rating", raw) == expected


@pytest.mark.parametrize("raw", ["0", "9", "3.5", "good", "-1"])
def test_dialog_rating_never_turns_a_bad_value_into_a_score(raw):
    with pytest.raises(MappingProblem, match="not a DIALOG rating"):
        run("dialog_rating", raw)


def test_name_last_first():
    assert run("name_last_first", "Pemberton,  Rosa May ") == {"family": "Pemberton", "given": ["Rosa", "May"]}
    assert run("name_last_first", "Pemberton,") == {"family": "Pemberton"}
    assert run("name_last_first", "Rosa Pemberton") == {"text": "Rosa Pemberton"}


def test_unknown_argument_is_a_type_error_for_the_loader_to_report():
    with pytest.raises(TypeError):
        build_transform("upper", {"locale": "en"})
    assert set(REGISTRY) >= {"date", "nhs_number", "yes_no", "dialog_rating", "name_last_first", "split"}
