"""Seeded synthetic people, the same person for the same (seed, index) in every source.

A person is a pure function of (seed, index) rather than the next draw of a shared stream, so the
VCSE and app generators can pick "person 17 of the RiO data" without replaying the RiO generator:
that is how the same person turns up in several sources for identity linking to find.
NHS numbers are in the 999 range that the NHS sets aside for testing, so nothing here can ever be
mistaken for a real patient's number.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from fhir_bridge.identifiers import nhs_number_check_digit

# Everyday names of people living in London; deliberately no famous combinations.
GIVEN_NAMES = (
    "Amira", "Ben", "Chloe", "Dev", "Ellie", "Femi", "Grace", "Hamza", "Isla", "Jamal", "Kasia",
    "Liam", "Maya", "Nikhil", "Olu", "Priya", "Rhys", "Sana", "Tom", "Usha", "Viktor", "Wen",
    "Yusuf", "Zara", "Aisha", "Bilal", "Carys", "Dominika", "Efe", "Farah", "Gareth", "Hana",
    "Ioana", "Joel", "Kemi", "Luca", "Mei", "Nadia", "Owen", "Precious", "Rafael", "Siobhan",
)
# Names that need more than ASCII: the Windows-1252 and UTF-8 quirks need them to show up.
ACCENTED_GIVEN_NAMES = ("Zoé", "Renée", "José", "Chloë", "Anaïs", "Sinéad", "Noël", "Márta")
FAMILY_NAMES = (
    "Adeyemi", "Begum", "Campbell", "Dabrowski", "Evans", "Fernandes", "Gallagher", "Hussain",
    "Ibrahim", "Jones", "Kowalski", "Lewis", "Mensah", "Nowak", "O'Connor", "Patel", "Quinn",
    "Rahman", "Santos", "Thompson", "Uddin", "Varga", "Walsh", "Xu", "Yilmaz", "Zielinski",
    "Ahmed", "Brown", "Chowdhury", "Da Silva", "Okafor", "Murphy", "Nguyen", "Popescu",
    "Singh", "Taylor", "Williams", "Achterberg-Lee",
)
# Outward codes of inner and outer London districts; the inward part is generated.
OUTWARD_CODES = (
    "E1", "E2", "E3", "E5", "E8", "E9", "E14", "E15", "E17", "N1", "N4", "N7", "N15", "N16",
    "N17", "SE1", "SE5", "SE8", "SE15", "SE22", "SW2", "SW9", "SW17", "W3", "W10", "W12",
    "NW5", "NW6", "NW10", "EC1V", "WC1N",
)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters postcodes use in the inward code
GENDERS = ("1", "2", "2", "1", "9", "X")  # MHSDS person stated gender; weights by repetition
ETHNIC_CATEGORIES = ("A", "A", "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N",
                     "P", "R", "S", "Z", "99")

_NHS_BODIES = 10 ** 6          # 999 + six digits + check digit
_NHS_STRIDE = 387_419          # coprime to 10**6: index -> body is a bijection, and looks unordered


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    given: str
    family: str
    birth_date: date
    postcode: str
    gender: str
    ethnic_category: str
    nhs_number: str  # "" when the number this index gets would have check digit 10

    @property
    def has_accent(self) -> bool:
        return not self.given.isascii()


def nhs_number_for(index: int, seed: int) -> str:
    """A valid 999-range NHS number unique per index below 10**6, or "" (1 index in 11)."""
    body = f"999{(index * _NHS_STRIDE + seed) % _NHS_BODIES:06d}"
    check = nhs_number_check_digit(body)
    # Skipping to another body would collide with another index; an unnumbered person is realistic.
    return "" if check is None else f"{body}{check}"


def person(seed: int, index: int) -> Person:
    rng = random.Random(f"{seed}/person/{index}")
    given = rng.choice(ACCENTED_GIVEN_NAMES) if rng.random() < 0.06 else rng.choice(GIVEN_NAMES)
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(66 * 365))
    inward = f"{rng.randrange(1, 10)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"
    return Person(
        index=index,
        given=given,
        family=rng.choice(FAMILY_NAMES),
        birth_date=born,
        postcode=f"{rng.choice(OUTWARD_CODES)} {inward}",
        gender=rng.choice(GENDERS),
        ethnic_category=rng.choice(ETHNIC_CATEGORIES),
        nhs_number=nhs_number_for(index, seed),
    )


def misspelt(name: str, rng: random.Random) -> str:
    """The given name with one typing slip (two letters swapped, or one dropped)."""
    if len(name) < 3:
        return name + name[-1]
    at = rng.randrange(1, len(name) - 1)
    swapped = name[:at] + name[at + 1] + name[at] + name[at + 2:]
    if rng.random() < 0.5 and swapped != name:  # swapping "ll" in "Ellie" would change nothing
        return swapped
    return name[:at] + name[at + 1:]
