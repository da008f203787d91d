import random

import pytest

from fhir_bridge.identifiers import (
    is_valid_nhs_number,
    is_valid_sctid,
    nhs_number_check_digit,
    nhs_number_problem,
    normalise_nhs_number,
    sctid_problem,
    verhoeff_check_digit,
)

# The eleven DIALOG item concepts (MHSDS order), from the NHS Digital reference tables.
DIALOG_SCTIDS = [
    "1037651000000100", "1037661000000102", "1037671000000109", "1037681000000106",
    "1037691000000108", "1037701000000108", "1037711000000105", "1037721000000104",
    "1037731000000102", "1037741000000106", "1037751000000109",
]


def _with_check_digit(first_nine: str) -> str | None:
    check = nhs_number_check_digit(first_nine)
    return None if check is None else first_nine + str(check)


def _generated_nhs_numbers(count: int) -> list[str]:
    rng = random.Random(20240501)
    numbers: list[str] = []
    while len(numbers) < count:
        number = _with_check_digit("".join(rng.choice("0123456789") for _ in range(9)))
        if number and len(set(number)) > 1:
            numbers.append(number)
    return numbers


# --- NHS numbers -------------------------------------------------------------------------------

def test_published_example_nhs_number_is_valid():
    assert nhs_number_problem("9434765919") is None


@pytest.mark.parametrize("number", _generated_nhs_numbers(200))
def test_numbers_generated_with_a_correct_check_digit_are_valid(number):
    assert is_valid_nhs_number(number)


def test_every_wrong_final_digit_is_a_mismatch_naming_the_expected_digit():
    for digit in "012345678":
        assert nhs_number_problem("943476591" + digit) == "check digit mismatch (expected 9)"


@pytest.mark.parametrize("digit", "0123456789")
def test_all_same_digit_rejected_even_where_the_checksum_passes(digit):
    assert nhs_number_problem(digit * 10) == "all the same digit"


def test_check_digit_ten_rejected_whatever_the_last_digit():
    rng = random.Random(7)
    first_nines = [s for s in ("".join(rng.choice("0123456789") for _ in range(9)) for _ in range(2000))
                   if nhs_number_check_digit(s) is None]
    assert first_nines, "the generator should hit some check-digit-10 prefixes"
    for first_nine in first_nines[:20]:
        for last in "0123456789":
            assert nhs_number_problem(first_nine + last) == "check digit is 10"


@pytest.mark.parametrize("value", ["", "943476591", "94347659190", "94347659AB", "９４３４７６５９１９"])
def test_wrong_length_or_non_digits(value):
    assert nhs_number_problem(value) == "not 10 digits"


@pytest.mark.parametrize("value", ["943 476 5919", "943-476-5919", " 9434765919"])
def test_spaces_and_dashes_are_reported_not_silently_accepted(value):
    assert nhs_number_problem(value) == "contains spaces or dashes"
    assert nhs_number_problem(normalise_nhs_number(value)) is None


def test_normalise_strips_only_spaces_and_dashes():
    assert normalise_nhs_number("943 476-5919\t") == "9434765919"
    assert normalise_nhs_number("943.476.5919") == "943.476.5919"


# --- SNOMED CT identifiers ---------------------------------------------------------------------

@pytest.mark.parametrize("sctid", DIALOG_SCTIDS)
def test_dialog_item_concepts_are_valid(sctid):
    assert sctid_problem(sctid) is None


@pytest.mark.parametrize("sctid", ["138875005", "404684003", "22298006", "900000000000207008",
                                   "718466001", "979641000000103", "1091071000000100"])
def test_well_known_concepts_are_valid(sctid):
    assert is_valid_sctid(sctid)


def test_spreadsheet_truncated_copies_fail_the_check_digit():
    assert sctid_problem("1037651000000101") == "Verhoeff check digit mismatch (expected 0)"
    # "...000100" is right for mental health only; the other items' truncated copies all fail.
    for sctid in DIALOG_SCTIDS[1:]:
        assert not is_valid_sctid(sctid[:-3] + "100"), sctid


def test_verhoeff_catches_every_single_digit_error():
    sctid = "1037711000000105"
    for position in range(len(sctid)):
        for digit in "0123456789":
            corrupted = sctid[:position] + digit + sctid[position + 1:]
            if corrupted != sctid and corrupted[0] != "0":
                assert not is_valid_sctid(corrupted), corrupted


def test_verhoeff_catches_adjacent_transpositions():
    sctid = "1037661000000102"
    for position in range(len(sctid) - 1):
        swapped = sctid[:position] + sctid[position + 1] + sctid[position] + sctid[position + 2:]
        if swapped != sctid:
            assert not is_valid_sctid(swapped), swapped


def test_verhoeff_check_digit_completes_known_ids():
    for sctid in DIALOG_SCTIDS:
        assert verhoeff_check_digit(sctid[:-1]) == int(sctid[-1])


def test_verhoeff_check_digit_rejects_non_digits():
    with pytest.raises(ValueError):
        verhoeff_check_digit("12a4")


@pytest.mark.parametrize(("value", "reason"), [
    ("", "not all digits"),
    ("1037651 000000100", "not all digits"),
    ("1.03765E+15", "not all digits"),
    ("10005", "not 6 to 18 digits"),
    ("1" * 19, "not 6 to 18 digits"),
    ("0138875005", "leading zero"),
    ("138875065", "unknown partition identifier 06"),
    ("1037651000000200", "unknown partition identifier 20"),
])
def test_malformed_sctids(value, reason):
    assert sctid_problem(value) == reason
