"""The values that cross the store's boundary (no SQLAlchemy, no FastAPI in here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00.")  # the second last formatted, and its text


def instant(microseconds: int) -> str:
    """Integer microseconds since the epoch -> FHIR instant with millisecond precision, UTC.
    A bulk write stamps thousands of versions within a second: the date and time are formatted once
    a second (one tuple, replaced whole, so threads never see half of it)."""
    global _last_second
    second, micro = divmod(microseconds, 1_000_000)
    last, text = _last_second
    if second != last:
        text = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, text)
    return f"{text}{micro // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as the store holds it."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: int          # microseconds since epoch, UTC
    deleted: bool
    resource: dict | None      # with meta.versionId and meta.lastUpdated; None for a deletion
    method: str = "PUT"        # how this version came to be (history Bundle.entry.request.method)

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def last_updated_instant(self) -> str:
        return instant(self.last_updated)

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.resource_id}/_history/{self.version_id}"


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: Stored
    created: bool              # True for a create (201), False for an update (200)
    unchanged: bool = False    # an update whose content equals the current version: no new version


@dataclass(slots=True)  # not frozen: an import makes one per resource, and a frozen init costs 3x
class Precomputed:
    """What an import worker process computed from a resource as it mapped it, which the store
    reuses where the resource written still holds what it was computed from (UnitOfWork.put_many):
    a DIALOG response's scores (ScoreRows.scores; reused if the answers are the same) and the index
    rows of the parameters that read one top-level element (Indexer.local_rows; reused for each
    element that is still the very object the worker's result was read into)."""
    resource: dict
    scores: dict | None = None
    index_rows: list | None = None


@dataclass
class SearchResult:
    total: int | None          # None when the caller asked not to count (_total=none)
    matches: list[Stored]      # the page, in order
    included: list[Stored] = field(default_factory=list)  # _include / _revinclude
    offset: int = 0
    count: int = 0
