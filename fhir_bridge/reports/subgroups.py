"""How people are grouped in pooled reports: the subgroup dimensions and their strata.

Ethnic categories are pooled into the five broad groups NHS England's mental health statistics
publish (a code-level split would suppress almost every cell); ages are taken at the period's end
in the bands those publications use.
"""
from __future__ import annotations

from fhir_bridge.store.outcome_queries import DIMENSIONS, NOT_RECORDED

__all__ = ["AGE_BANDS", "DIMENSIONS", "ETHNIC_GROUPS", "NOT_RECORDED", "stratum_label"]

AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "under 18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55-64"), (65, "65 and over"))

# UK Core / MHSDS ethnic category (A ... S, Z, 99) -> broad group.
ETHNIC_GROUPS: dict[str, str] = {
    **dict.fromkeys("ABC", "White"),
    **dict.fromkeys("DEFG", "Mixed"),
    **dict.fromkeys("HJKL", "Asian or Asian British"),
    **dict.fromkeys("MNP", "Black or Black British"),
    **dict.fromkeys("RS", "Other ethnic groups"),
    "Z": "Not stated", "99": "Not known",
}

ODS_PREFIX = "https://fhir.nhs.uk/Id/ods-organization-code|"


def stratum_label(dimension: str, stratum: str) -> str:
    """What a person reads for a stratum: an ODS code rather than its system URL."""
    if dimension == "organisation" and stratum.startswith(ODS_PREFIX):
        return stratum[len(ODS_PREFIX):]
    return stratum
