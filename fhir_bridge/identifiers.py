"""Checks for UK identifiers: NHS numbers (modulus 11) and SNOMED CT identifiers (Verhoeff).

Pure functions on strings, no FHIR. A `*_problem` function returns None for a valid value, otherwise a
short human reason that an importer or validator can put in a report.
"""
from __future__ import annotations

import re

# NHS number: weights 10..2 on the first nine digits (NHS Data Dictionary).
_NHS_WEIGHTS = range(10, 1, -1)
_NHS_SEPARATORS = re.compile(r"[\s\-]")

# Verhoeff tables: multiplication in the dihedral group D5, the position permutation, and inverses.
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_VERHOEFF_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)

# SCTID partition identifiers (the two digits before the check digit): short form 0x, long form 1x
# (extension namespaces) for concept, description, relationship, subset, cross-map set and target.
SCTID_PARTITIONS = frozenset({"00", "01", "02", "03", "04", "05", "10", "11", "12", "13", "14", "15"})


def normalise_nhs_number(raw: str) -> str:
    """Strip the spaces and dashes people type ("943 476 5919", "943-476-5919"); nothing else."""
    return _NHS_SEPARATORS.sub("", raw)


def nhs_number_check_digit(first_nine: str) -> int | None:
    """The modulus-11 check digit for nine digits; None when it would be 10 (no valid number exists)."""
    check = 11 - sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True)) % 11
    if check == 10:
        return None
    return 0 if check == 11 else check


def nhs_number_problem(value: str) -> str | None:
    """None for a valid NHS number given as exactly ten digits, else why it is not one."""
    if _NHS_SEPARATORS.search(value) and normalise_nhs_number(value).isdigit():
        # Reported apart from "not 10 digits" so importers know normalise_nhs_number would fix it.
        return "contains spaces or dashes"
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return "not 10 digits"
    if len(set(value)) == 1:
        # All-same-digit numbers pass modulus 11 but are never issued.
        return "all the same digit"
    expected = nhs_number_check_digit(value[:9])
    if expected is None:
        return "check digit is 10"
    if int(value[9]) != expected:
        return f"check digit mismatch (expected {expected})"
    return None


def is_valid_nhs_number(value: str) -> bool:
    return nhs_number_problem(value) is None


def _verhoeff_checksum(digits: str, offset: int) -> int:
    check = 0
    for position, digit in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[(position + offset) % 8][int(digit)]]
    return check


def verhoeff_check_digit(digits: str) -> int:
    """The Verhoeff check digit to append to `digits` (which must all be decimal digits)."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a string of digits: {digits!r}")
    return _VERHOEFF_INV[_verhoeff_checksum(digits, offset=1)]


def sctid_problem(value: str) -> str | None:
    """None for a well-formed SNOMED CT identifier, else why it is not one.

    Checks the form only (the id may still not exist in any release). Catches the corruption seen in
    old NHS files, where spreadsheets truncated 18-digit ids to 15 significant digits ("...000100").
    """
    if not value.isascii() or not value.isdigit():
        return "not all digits"
    if not 6 <= len(value) <= 18:
        return "not 6 to 18 digits"
    if value[0] == "0":
        return "leading zero"
    partition = value[-3:-1]
    if partition not in SCTID_PARTITIONS:
        return f"unknown partition identifier {partition}"
    if _verhoeff_checksum(value, offset=0) != 0:
        return f"Verhoeff check digit mismatch (expected {verhoeff_check_digit(value[:-1])})"
    return None


def is_valid_sctid(value: str) -> bool:
    return sctid_problem(value) is None
