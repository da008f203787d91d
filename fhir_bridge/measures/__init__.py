"""Outcome measures. DIALOG: item table from the conformance data, scoring, change, extraction."""
from fhir_bridge.measures.change import (
    DialogChange,
    ItemChange,
    MEANINGFUL_SQOL_CHANGE,
    change_between,
    pair_first_latest,
)
from fhir_bridge.measures.dialog import DEFAULT_MIN_ANSWERED, DialogScore, ItemScore, ScoreProblem, score_dialog
from fhir_bridge.measures.dialog_items import (
    DialogDefinition,
    DialogDomain,
    RatingItem,
    build_dialog_definition,
    load_dialog_definition,
)
from fhir_bridge.measures.extract import SCORE_PROFILE, extract_observations

__all__ = [
    "DEFAULT_MIN_ANSWERED",
    "MEANINGFUL_SQOL_CHANGE",
    "SCORE_PROFILE",
    "DialogChange",
    "DialogDefinition",
    "DialogDomain",
    "DialogScore",
    "ItemChange",
    "ItemScore",
    "RatingItem",
    "ScoreProblem",
    "build_dialog_definition",
    "change_between",
    "extract_observations",
    "load_dialog_definition",
    "pair_first_latest",
    "score_dialog",
]
