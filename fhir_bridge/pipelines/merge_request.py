"""What an HL7 ADT^A40 merge message asks, as its adapter mapped it; pipelines/patient_merge.py
stores it. Apart from the merge itself, which needs the store, so that an import's worker
processes can map a merge message without loading the store."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MergeRequest"]


@dataclass(frozen=True)
class MergeRequest:
    """What a merge message says, as mapped: the surviving person's Patient (PID) and the
    identifiers of the person merged away (MRG-1), each with `use: old`."""

    survivor: dict
    merged_identifiers: list[dict]
