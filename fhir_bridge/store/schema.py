"""The database schema: current resources, full history, search index rows, DIALOG score rows.

SQLAlchemy Core tables, one definition for SQLite and PostgreSQL. Times are integer microseconds
since the Unix epoch (UTC): exact, sortable and compared the same way by both databases.
Bodies are the resource's FHIR JSON as bytes (orjson), meta.versionId/lastUpdated included.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, MetaData, SmallInteger,
                        String, Table, Text)

from fhir_bridge.store.outcome_fields import DIALOG_DOMAINS  # the score rows' columns, named by domain

metadata = MetaData()


def _key() -> list[Column]:
    return [Column("resource_type", String(64), nullable=False), Column("resource_id", String(64), nullable=False)]


resources = Table(
    "resources", metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),   # microseconds since epoch, UTC
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", LargeBinary, nullable=True),             # None once deleted
    Index("ix_resources_type_updated", "resource_type", "last_updated"),
)

history = Table(
    "resource_history", metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),             # POST | PUT | PATCH | DELETE
    Column("body", LargeBinary, nullable=True),
    Index("ix_history_updated", "last_updated"),
    Index("ix_history_type_updated", "resource_type", "last_updated"),
)

# -- search index: one row per indexed value, rewritten with every version ---------------------------
token_index = Table(
    "search_token", metadata, *_key(),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=False),
    Index("ix_token_lookup", "resource_type", "param", "code", "system"),
    Index("ix_token_owner", "resource_type", "resource_id"),
)

reference_index = Table(
    "search_reference", metadata, *_key(),
    Column("param", String(64), nullable=False),
    Column("target_type", String(64), nullable=True),  # for relative references Type/id
    Column("target_id", String(64), nullable=True),
    Column("url", String(1024), nullable=True),        # absolute URLs and canonicals (url|version kept whole)
    # (version 9) one index for every lookup by target, whoever asks: a search by value, a reverse
    # include, a merge's referrers (target_id leads: it alone is nearly unique); `:missing` and
    # URL values use ix_reference_url's leading (resource_type, param)
    Index("ix_reference_target", "target_id", "target_type", "resource_type", "param"),
    Index("ix_reference_url", "resource_type", "param", "url"),
    Index("ix_reference_owner", "resource_type", "resource_id"),
)

date_index = Table(
    "search_date", metadata, *_key(),
    Column("param", String(64), nullable=False),
    Column("low", BigInteger, nullable=False),   # the value as a range [low, high], microseconds UTC
    Column("high", BigInteger, nullable=False),
    Index("ix_date_lookup", "resource_type", "param", "low", "high"),
    Index("ix_date_owner", "resource_type", "resource_id"),
)

string_index = Table(
    "search_string", metadata, *_key(),
    Column("param", String(64), nullable=False),
    Column("normalized", String(512), nullable=False),  # lower case, accents and punctuation folded
    Column("exact", String(512), nullable=False),
    Index("ix_string_lookup", "resource_type", "param", "normalized"),
    Index("ix_string_owner", "resource_type", "resource_id"),
)

number_index = Table(
    "search_number", metadata, *_key(),
    Column("param", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_number_lookup", "resource_type", "param", "value"),
    Index("ix_number_owner", "resource_type", "resource_id"),
)

INDEX_TABLES = {"token": token_index, "reference": reference_index, "date": date_index,
                "string": string_index, "number": number_index}

# -- one compact row per stored DIALOG response: what reports and submissions read ------------------
dialog_scores = Table(
    "dialog_scores", metadata,
    Column("response_id", String(64), primary_key=True),
    Column("subject_type", String(64), nullable=True),
    Column("subject_id", String(64), nullable=True),
    Column("questionnaire", String(255), nullable=False),
    Column("authored", BigInteger, nullable=True),        # microseconds UTC
    Column("authored_text", String(40), nullable=True),   # as recorded, with its precision and offset
    Column("status", String(32), nullable=False),
    Column("purpose", String(32), nullable=True),          # prom | care-planning
    Column("timepoint", String(32), nullable=True),        # assessment | review | discharge | other
    Column("recording_organization", String(255), nullable=True),
    Column("author", String(255), nullable=True),
    *[Column(f"rating_{d}", SmallInteger, nullable=True) for d in DIALOG_DOMAINS],   # 1-7, None if not rated
    *[Column(f"help_{d}", Boolean, nullable=True) for d in DIALOG_DOMAINS],          # more help wanted
    Column("not_applicable", Text, nullable=False, default=""),  # domains answered 8, comma separated
    Column("sqol_mean", Float, nullable=True),
    Column("sqol_answered", SmallInteger, nullable=False),
    Column("treatment_satisfaction_mean", Float, nullable=True),
    Column("treatment_satisfaction_answered", SmallInteger, nullable=False),
    Column("dissatisfied_count", SmallInteger, nullable=False),
    # (version 5) what outcome reports group and filter by: the referral (ServiceRequest) the DIALOG
    # is basedOn, whose performer is the team; a possible-duplicate tag (store/outcome_fields.py)
    Column("referral_id", String(64), nullable=True),
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    Index("ix_scores_subject", "subject_type", "subject_id", "authored"),
    Index("ix_scores_authored", "authored"),
)

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", BigInteger, nullable=False),
    Column("description", Text, nullable=False),
)

# -- ingestion (schema version 2): runs, quarantined records, identity reviews --------------------------
import_runs = Table(
    "import_runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("source", String(32), nullable=False),      # rio | hl7 | vcse | dialog-app ...
    Column("started", BigInteger, nullable=False),
    Column("finished", BigInteger, nullable=True),     # None while running, or after a crash
    Column("report", LargeBinary, nullable=True),      # the run report (JSON), written at the end
)

quarantine = Table(
    "quarantine", metadata,
    Column("entry_id", String(64), primary_key=True),  # deterministic: the same bad record twice is one entry
    Column("run_id", String(64), nullable=False),
    Column("source", String(32), nullable=False),
    Column("location", String(512), nullable=False),   # file:line, message control id ...
    Column("reason", String(64), nullable=False),      # short, for counting: mapping | validation | identity ...
    Column("raw", LargeBinary, nullable=False),        # the record exactly as received
    Column("outcome", LargeBinary, nullable=False),    # OperationOutcome (JSON) saying why
    Column("created", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),       # open | resolved (stored by a retry)
    # (version 3) JSON the source adapter wrote with the record: what, with `raw`, rebuilds it
    # alone for `quarantine retry` (a CSV row's header line ...); None: input that was not readable
    Column("context", Text, nullable=True),
    Column("resolved_run", String(64), nullable=True),  # (version 3) the run that stored it, or read its file again
    Index("ix_quarantine_state", "state", "source"),
)

identity_reviews = Table(
    "identity_reviews", metadata,
    Column("review_id", String(64), primary_key=True),  # deterministic per source person
    Column("source", String(32), nullable=False),
    Column("source_key", String(255), nullable=False),  # the source's own id of the person
    Column("reason", Text, nullable=False),
    Column("candidates", Text, nullable=False),         # comma-separated Patient ids that might be them
    Column("waiting", LargeBinary, nullable=False),     # the mapped resources (JSON) held until resolved
    Column("created", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),        # open | linked | new
    Column("patient_id", String(64), nullable=True),    # the resolution
    Index("ix_reviews_state", "state"),
)

INGEST_TABLES = (import_runs, quarantine, identity_reviews)

# -- outbound (schema version 4): each message exported or sent to a peer, per resource version -----------
outbound_messages = Table(
    "outbound_messages", metadata,
    Column("peer", String(255), primary_key=True),        # mllp:host:port | file:<receiving ODS code>
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("control_id", String(20), nullable=False),     # MSH-10: the same for every resend of a version
    Column("state", String(16), nullable=False),          # pending (no ACK yet) | accepted | error | rejected | written | invalid
    Column("attempts", Integer, nullable=False),          # above 1: resent (after a lost ACK, an AE ...)
    Column("last_attempt", BigInteger, nullable=False),
    Column("sent", BigInteger, nullable=True),            # when the peer accepted it (AA) or the file was written
    Column("ack_code", String(2), nullable=True),         # AA | AE | AR as the peer answered
    Column("detail", Text, nullable=True),                # the ACK's text, or why it could not be built or sent
    Index("ix_outbound_state", "peer", "state"),
)

OUTBOUND_TABLES = (outbound_messages,)

# -- outcome reports (schema version 5): a person's subgroup attributes, one row per Patient, -----------
# rewritten with every version, so reports group by them in SQL instead of parsing Patient bodies
person_attributes = Table(
    "person_attributes", metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("gender", String(16), nullable=True),           # Patient.gender
    Column("ethnic_category", String(8), nullable=True),   # UK Core ethnic category code (A ... Z, 99)
    Column("birth_date", Integer, nullable=True),          # YYYYMMDD: age = (as_of - birth_date) // 10000 in SQL
)

REPORT_TABLES = (person_attributes,)

# -- care access (schema version 6): whom each resource is about, and which partner may see whom ---------
# Derived on every write like the index rows (fhir_bridge.pipelines.care_relationships says what
# counts), so a search filters by care relationship in SQL: counts and pages stay right.
resource_people = Table(
    "resource_people", metadata, *_key(),
    Column("patient_id", String(64), nullable=False),     # a Patient the resource is about ("?" unresolved)
    Index("ix_people_owner", "resource_type", "resource_id", "patient_id"),
)

care_relationships = Table(
    "care_relationships", metadata, *_key(),               # the resource that records it (CareTeam, Patient ...)
    Column("patient_id", String(64), nullable=False),
    Column("partner", String(64), nullable=False),         # ODS code of the partner organisation
    Column("kind", String(16), nullable=False),            # custodian | care-team | referral | episode | consent
    Column("ends", BigInteger, nullable=True),             # microseconds UTC (end of the period); None: open
    Index("ix_care_partner", "partner", "patient_id"),
    Index("ix_care_owner", "resource_type", "resource_id"),
)

ACCESS_TABLES = (resource_people, care_relationships)

# -- submissions (schema version 7): each MHSDS-style file made, so a resubmission of a period shows ----
submissions = Table(
    "submissions", metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("dataset", String(32), nullable=False),         # mhsds
    Column("provider", String(16), nullable=False),        # ODS code
    Column("period", String(7), nullable=False),           # YYYY-MM
    Column("created", BigInteger, nullable=False),         # microseconds since epoch, UTC
    Column("created_by", String(255), nullable=False),     # who ran it
    Column("file_name", Text, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("content_sha256", String(64), nullable=False),  # without the creation time: equal = the same data
    Column("counts", Text, nullable=False),                # JSON: rows per table, records left out
    Column("settings", Text, nullable=False),              # JSON: which DIALOG entries were submitted
    Index("ix_submissions_period", "dataset", "provider", "period"),
)

SUBMISSION_TABLES = (submissions,)
