"""Care-access rows in SQL: writing them with each version, the predicate that keeps a search,
history or include to what one partner may see, and the look-ups the access policy makes.

`AccessScope(partner, now)`: what a partner organisation sees at `now` (microseconds UTC). A
resource is visible to it when every person the resource is about (resource_people) is one the
partner has a relationship with that has not ended (care_relationships). Resources about nobody
(a Practitioner, a Questionnaire) are visible to every partner.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_bridge.store import schema
from fhir_bridge.store.care_access_rows import ODS, people_of, relationships_of
from fhir_bridge.store.driver_statements import DriverStatement, IN_CHUNK

__all__ = ["AccessScope", "visible", "AccessRowWriter", "people_of_keys", "related_people", "rebuild"]

_people, _rels, _resources = schema.resource_people, schema.care_relationships, schema.resources


@dataclass(frozen=True)
class AccessScope:
    partner: str
    now: int


def visible(type_column, id_column, scope: AccessScope) -> ColumnElement[bool]:
    """SQL: the resource keyed by these columns is visible within `scope` (no person it is about
    lacks a current relationship with the partner)."""
    related = (select(1).where(_rels.c.patient_id == _people.c.patient_id, _rels.c.partner == scope.partner,
                               or_(_rels.c.ends.is_(None), _rels.c.ends >= scope.now))
               .correlate(_people).exists())
    hidden = (select(1).where(_people.c.resource_type == type_column, _people.c.resource_id == id_column, ~related)
              .correlate(type_column.table).exists())
    return ~hidden


# Built once: building a select and computing its cache key per call cost more than running it.
_PEOPLE_OF_TYPE = select(_people.c.resource_id, _people.c.patient_id).where(
    _people.c.resource_type == bindparam("rtype"), _people.c.resource_id.in_(bindparam("ids", expanding=True)))
_RELATED = DriverStatement(select(_rels.c.patient_id).distinct().where(  # every session asks, twice
    _rels.c.partner == bindparam("partner"), _rels.c.patient_id.in_(bindparam("ids", expanding=True)),
    or_(_rels.c.ends.is_(None), _rels.c.ends >= bindparam("now"))))
_ORGANIZATION_BODY = select(_resources.c.body).where(
    _resources.c.resource_type == "Organization", _resources.c.resource_id == bindparam("org_id"),
    _resources.c.deleted.is_(False))


def people_of_keys(connection: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The people each stored resource is about (absent: about nobody)."""
    found: dict[tuple[str, str], set[str]] = {}
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        for start in range(0, len(ids), IN_CHUNK):
            for rid, patient in connection.execute(_PEOPLE_OF_TYPE, {"rtype": rtype, "ids": ids[start:start + IN_CHUNK]}):
                found.setdefault((rtype, rid), set()).add(patient)
    return found


def related_people(connection: Connection, scope: AccessScope, patient_ids: Iterable[str]) -> set[str]:
    """Those of `patient_ids` the partner has a current relationship with."""
    wanted = sorted(set(patient_ids))
    if not wanted:
        return set()
    rows = _RELATED.rows(connection, {"partner": scope.partner, "ids": wanted, "now": scope.now})
    return {row[0] for row in rows}


class AccessRowWriter:
    """Derives and writes the rows of new versions inside a unit of work's connection."""

    _DELETE_PEOPLE = delete(_people).where(and_(_people.c.resource_type == bindparam("owner_type"),
                                                _people.c.resource_id == bindparam("owner_id")))
    _DELETE_RELS = delete(_rels).where(and_(_rels.c.resource_type == bindparam("owner_type"),
                                            _rels.c.resource_id == bindparam("owner_id")))

    def __init__(self, base_url: str | None, bulk_insert: Callable[[Connection, Table, list[dict]], None] | None = None):
        self.base_url = base_url
        # the repository's driver-level executemany (store/bulk_insert.py); SQLAlchemy's insert() without one
        self._insert = bulk_insert or (lambda connection, table, rows: connection.execute(insert(table), rows))

    def remove(self, connection: Connection, owners: list[dict], *, keep_people: bool) -> None:
        """Rows of replaced or deleted versions. A deletion keeps its people: its history stays theirs."""
        if not keep_people:
            connection.execute(self._DELETE_PEOPLE, owners)
        connection.execute(self._DELETE_RELS, owners)

    def same(self, connection: Connection, old: dict, new: dict) -> bool:
        """Whether two versions of a resource have the same rows (a Provenance's people come from its
        targets: never taken as the same)."""
        if new.get("resourceType") == "Provenance":
            return False
        nobody = lambda keys: set()  # noqa: E731 - only a Provenance asks
        if people_of(old, self.base_url, nobody) != people_of(new, self.base_url, nobody):
            return False
        ods = lambda org_id: _organization_ods(connection, org_id)  # noqa: E731
        return relationships_of(old, self.base_url, ods) == relationships_of(new, self.base_url, ods)

    def write(self, connection: Connection, resources: list[dict],
              known: dict[tuple[str, str], set[str]] | None = None, *, kept: set[tuple[str, str]] = frozenset()) -> None:
        """`known`: the people of what this transaction wrote already (filled in here too), so that a
        Provenance naming the resources of its piece of work is resolved without reading them back.
        `kept`: resources whose rows stay as they are (`same` as their old version's)."""
        # Provenance last: it is about whoever its targets (maybe written in this batch) are about.
        ordered = sorted(resources, key=lambda r: r.get("resourceType") == "Provenance")
        batch: dict[tuple[str, str], set[str]] = {} if known is None else known
        people_rows, rel_rows = [], []

        def target_people(keys: list[tuple[str, str]]) -> set[str]:
            found = {p for key in keys if key in batch for p in batch[key]}
            stored = people_of_keys(connection, [k for k in keys if k not in batch])
            return found | {p for people in stored.values() for p in people}

        def organization_ods(org_id: str) -> str | None:
            return _organization_ods(connection, org_id)

        for resource in ordered:
            key = (resource["resourceType"], resource["id"])
            people = people_of(resource, self.base_url, target_people)
            batch[key] = people
            if key in kept:
                continue
            owner = {"resource_type": key[0], "resource_id": key[1]}
            people_rows += [{**owner, "patient_id": p} for p in sorted(people)]
            rel_rows += [{**owner, **row} for row in relationships_of(resource, self.base_url, organization_ods)]
        if people_rows:
            self._insert(connection, _people, people_rows)
        if rel_rows:
            self._insert(connection, _rels, rel_rows)


def _organization_ods(connection: Connection, org_id: str) -> str | None:
    body = connection.scalar(_ORGANIZATION_BODY, {"org_id": org_id})
    if body is None:
        return None
    for identifier in orjson.loads(body).get("identifier") or ():
        if type(identifier) is dict and identifier.get("system") == ODS and type(identifier.get("value")) is str:
            return identifier["value"]
    return None


def rebuild(connection: Connection, base_url: str | None = None, chunk: int = 2000) -> int:
    """Every resource's rows again, from its latest body (a deleted one's last version): for data
    stored before the rows existed. Provenance last (it is about its targets' people). Returns how
    many resources were read."""
    connection.execute(delete(_people))
    connection.execute(delete(_rels))
    history, writer, count = schema.history, AccessRowWriter(base_url), 0
    deleted = {(r.resource_type, r.resource_id) for r in connection.execute(
        select(_resources.c.resource_type, _resources.c.resource_id).where(_resources.c.deleted.is_(True)))}
    for provenance in (False, True):
        is_provenance = history.c.resource_type == "Provenance"
        latest = (select(history.c.resource_type, history.c.resource_id, history.c.body)
                  .where(history.c.body.is_not(None), is_provenance if provenance else ~is_provenance)
                  .order_by(history.c.resource_type, history.c.resource_id, history.c.version_id.desc()))
        seen: set[tuple[str, str]] = set()
        live, gone = [], []
        for row in connection.execute(latest).all():
            key = (row.resource_type, row.resource_id)
            if key in seen:
                continue
            seen.add(key)
            count += 1
            (gone if key in deleted else live).append(orjson.loads(row.body))
            if len(live) >= chunk:
                writer.write(connection, live)
                live = []
        writer.write(connection, live)
        if gone:  # people only: a deleted resource records no relationship
            rows = [{"resource_type": b["resourceType"], "resource_id": b["id"], "patient_id": p}
                    for b in gone for p in people_of(b, base_url, lambda keys: set())]
            if rows:
                connection.execute(insert(_people), rows)
    return count
