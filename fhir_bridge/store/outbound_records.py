"""The repository's outbound table: what was exported or sent to each peer, per resource version, and
the selection of DIALOG responses still to send. A mixin of `Repository`, which stays the only
code that touches a database connection.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update

from fhir_bridge.store import schema
from fhir_bridge.store.types import Stored

_out, _res, _scores = schema.outbound_messages, schema.resources, schema.dialog_scores
# A version in one of these states needs nothing more: the peer took it (AA) or the file holds it.
DONE_STATES = ("accepted", "written")
_CHUNK = 500


@dataclass(frozen=True)
class OutboundMessage:
    peer: str
    resource_type: str
    resource_id: str
    version_id: int
    control_id: str
    state: str            # pending | accepted | error | rejected | written | invalid
    attempts: int
    last_attempt: int     # microseconds since the epoch, UTC
    sent: int | None = None
    ack_code: str | None = None
    detail: str | None = None


class OutboundMixin:
    if TYPE_CHECKING:
        def _reading(self) -> AbstractContextManager[Connection]: ...
        def _writing(self) -> AbstractContextManager[Connection]: ...
        def _fetch_stored(self, keys: list[tuple[str, str]], connection: Connection | None = None) -> list[Stored]: ...

    def dialog_responses_to_send(self, peer: str, *, exclude_recorder: str | None = None, since: int | None = None,
                                 subject_id: str | None = None, include_done: bool = False) -> Iterator[Stored]:
        """Current DIALOG responses (completed or amended), oldest change first, whose current
        version `peer` has not taken yet (all of them with `include_done`). `exclude_recorder`
        ("system|value", compared without case) leaves out those its recording organisation made;
        `since` (microseconds) keeps versions written at or after it; `subject_id` one Patient's."""
        query = (select(_res.c.resource_id)
                 .join(_scores, _scores.c.response_id == _res.c.resource_id)
                 .where(_res.c.resource_type == "QuestionnaireResponse", _res.c.deleted.is_(False),
                        _scores.c.status.in_(("completed", "amended"))))
        if exclude_recorder:
            query = query.where(or_(_scores.c.recording_organization.is_(None),
                                    func.upper(_scores.c.recording_organization) != exclude_recorder.upper()))
        if since is not None:
            query = query.where(_res.c.last_updated >= since)
        if subject_id is not None:
            query = query.where(_scores.c.subject_type == "Patient", _scores.c.subject_id == subject_id)
        if not include_done:
            query = query.where(~exists().where(
                _out.c.peer == peer, _out.c.resource_type == _res.c.resource_type,
                _out.c.resource_id == _res.c.resource_id, _out.c.version_id == _res.c.version_id,
                _out.c.state.in_(DONE_STATES)))
        with self._reading() as connection:
            ids = list(connection.scalars(query.order_by(_res.c.last_updated, _res.c.resource_id)))
        # Bodies a chunk at a time: the selection may be a whole store's history on a first run.
        for start in range(0, len(ids), _CHUNK):
            yield from self._fetch_stored([("QuestionnaireResponse", i) for i in ids[start:start + _CHUNK]])

    def outbound_message(self, peer: str, resource_type: str, resource_id: str, version_id: int) -> OutboundMessage | None:
        with self._reading() as connection:
            row = connection.execute(select(_out).where(_version_is(peer, resource_type, resource_id, version_id))).mappings().first()
        return OutboundMessage(**row) if row else None

    def outbound_messages(self, peer: str | None = None, *, resource_id: str | None = None) -> list[OutboundMessage]:
        query = select(_out).order_by(_out.c.last_attempt, _out.c.resource_id, _out.c.version_id)
        if peer is not None:
            query = query.where(_out.c.peer == peer)
        if resource_id is not None:
            query = query.where(_out.c.resource_id == resource_id)
        with self._reading() as connection:
            return [OutboundMessage(**r) for r in connection.execute(query).mappings()]

    def record_outbound(self, message: OutboundMessage) -> None:
        """Insert or replace the row of (peer, resource, version)."""
        values = message.__dict__
        key = _version_is(message.peer, message.resource_type, message.resource_id, message.version_id)
        with self._writing() as connection:
            changed = connection.execute(update(_out).where(key).values(
                {k: v for k, v in values.items() if k not in ("peer", "resource_type", "resource_id", "version_id")}
            )).rowcount
            if not changed:
                connection.execute(insert(_out), values)

    def taken_earlier_version(self, peer: str, resource_type: str, resource_id: str, version_id: int) -> bool:
        """Whether `peer` took an earlier version of the resource: a new one is then a correction."""
        query = select(exists().where(_out.c.peer == peer, _out.c.resource_type == resource_type,
                                      _out.c.resource_id == resource_id, _out.c.version_id < version_id,
                                      _out.c.state.in_(DONE_STATES)))
        with self._reading() as connection:
            return bool(connection.scalar(query))


def _version_is(peer: str, resource_type: str, resource_id: str, version_id: int):
    return and_(_out.c.peer == peer, _out.c.resource_type == resource_type, _out.c.resource_id == resource_id,
                _out.c.version_id == version_id)
