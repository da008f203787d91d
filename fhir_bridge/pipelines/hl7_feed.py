"""A live HL7 v2 feed over MLLP (`fhir-bridge mllp`, and `serve` when configured): each message
stored through the import pipeline and answered with an ACK. Apart from the HL7 adapter
(source_hl7.py), which only reads and maps, so that an import's worker processes do not load
the listener and the store."""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Callable

import orjson

from fhir_bridge.api.mllp_listener import MllpListener, Verdict
from fhir_bridge.errors import BridgeError
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines.care_access import operator_caller
from fhir_bridge.pipelines.ingest import STATUSES, Ingest, quarantine_entry_id
from fhir_bridge.pipelines.source_hl7 import Hl7Source
from fhir_bridge.pipelines.source_record import SourceRecord
from fhir_bridge.pipelines.source_records import Unreadable

__all__ = ["MllpFeed", "serve_mllp"]

# An AE's text for a message held for identity review, whatever made the match unsafe (no NHS number
# and only a weaker match, an NHS number or an identifier held by several people ...): the review
# names the reason to the person resolving it.
REVIEW_TEXT = ("the person could not be matched safely: the message waits for a person to link it "
               "(fhir-bridge identity review), nothing lost")


class MllpFeed:
    """`MllpListener`'s handler: stores one message through `ingest.one`: AA once stored (or already
    stored: a resend after a lost ACK is `unchanged`), AE with the quarantine reason otherwise. A
    message the listener rejects (AR: it cannot be parsed) is kept in quarantine, raw, as the same
    bytes in a file are."""

    def __init__(self, ingest: Ingest, source: Hl7Source):
        self.ingest, self.source = ingest, source
        # The listener runs each connection's messages in worker threads: one message at a time
        # across all connections, so two senders naming the same new person cannot both create a
        # Patient, and the run report's counters are not raced.
        self._one_at_a_time = threading.Lock()

    def __call__(self, text: str) -> Verdict:
        record = self.source.record("mllp", text)
        if not isinstance(record.data, Unreadable):  # located by its control id, as the sender knows it
            record = replace(record, location=f"mllp:{record.data.get('MSH-10', '')}")
        status = self._store(record)
        if status in STATUSES:
            return Verdict("AA")
        reason = status.partition(":")[2]
        detail = REVIEW_TEXT if reason == "identity-review" else _first_issue(self.ingest, record)
        return Verdict("AE", f"{reason}: {detail}" if detail else reason)

    def keep_rejected(self, text: str) -> None:
        self._store(self.source.record("mllp", text))

    def _store(self, record: SourceRecord) -> str:
        with self._one_at_a_time:
            self.ingest.report.records_in += 1
            return self.ingest.one(record)


def _first_issue(ingest: Ingest, record: SourceRecord) -> str:
    """The first issue of the quarantine entry just written for `record`, so the sender sees why."""
    entry = ingest.bridge.repository.quarantine_entry(quarantine_entry_id(record))
    if entry is None:  # held for an identity review: nothing is wrong with the message itself
        return ""
    issues = loads_json(entry.outcome).get("issue", [])
    return issues[0].get("diagnostics", "") if issues else ""


async def serve_mllp(bridge, host: str, port: int, organization: str, *,
                     ready: Callable[[tuple[str, int]], None] | None = None,
                     idle_timeout: float = 300.0) -> None:
    """`fhir-bridge mllp`: listen on host:port until cancelled; every message is imported as
    `organization` (the sending trust's ODS code). `ready` gets the bound address (port 0 picks one)."""
    engine = MappingEngine(load_mappings(bridge.settings.mappings_dir, bridge.terminology), bridge.terminology)
    source = Hl7Source(engine, organization, bridge)
    ingest = Ingest(bridge, source.name, source.map, operator_caller(organization))  # the trust's own feed
    feed = MllpFeed(ingest, source)
    listener = MllpListener(feed, idle_timeout=idle_timeout, keep_rejected=feed.keep_rejected)
    try:
        address = await listener.start(host, port)
    except OSError as exc:  # port taken, address not on this machine: a sentence, not a traceback
        raise BridgeError(f"cannot listen for MLLP on {host}:{port}: {exc.strerror or exc}") from exc
    # One run per listener lifetime, so `quarantine list` and the run report name what it received
    bridge.repository.start_run(ingest.report.run_id, source.name, ingest.report.started)
    if ready is not None:
        ready(address)
    try:
        await listener.serve_forever()
    finally:
        await listener.stop()
        ingest.report.finished = ingest.clock()
        bridge.repository.finish_run(ingest.report.run_id, ingest.report.finished, orjson.dumps(ingest.report.to_json()))
