"""One record of a source, as its adapter read it: what the import pipeline maps, links, stores or
quarantines. A module of its own, importing nothing of the store: an import's worker processes
unpickle records and map them, and need not load the store's code and SQLAlchemy to do it."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SourceRecord"]


@dataclass(frozen=True)
class SourceRecord:
    source: str        # rio | hl7 | vcse | dialog-app ...
    location: str      # where it came from: file:line, an MLLP message control id ...
    raw: bytes         # exactly as received: quarantine keeps it, retry maps it again
    data: object       # what the adapter decoded (a CSV row, a parsed message ...)
    source_key: str | None = None  # the source's own id of the person, for identity reviews
    # JSON the adapter needs, besides `raw`, to rebuild this record alone (`record_from_entry`);
    # quarantine keeps it. None for input that could not be read: there is nothing to retry.
    context: str | None = None
    # The record's own name in its source (its mapping's `record-key`: an assessment id ...): the
    # same record fixed there and imported again closes the quarantine entries it left.
    record_key: str | None = None
