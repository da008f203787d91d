"""Prebuilt statements on the driver's cursor (store/driver_statements.py) give what SQLAlchemy's
own execution gives, on SQLite and PostgreSQL: the same rows for IN lists of every length (each
length its own SQL), errors as SQLAlchemy's exceptions, every statement seen by listeners."""
from __future__ import annotations

import pytest
from sqlalchemy import bindparam, event, exc, insert, select

from fhir_bridge.store import schema
from fhir_bridge.store.database import Database
from fhir_bridge.store.driver_statements import DriverStatement, run_driver_sql

_rows = schema.resources
BY_IDS = select(_rows.c.resource_id, _rows.c.version_id, _rows.c.deleted).where(
    _rows.c.resource_type == bindparam("kind"), _rows.c.resource_id.in_(bindparam("ids", expanding=True))
).order_by(_rows.c.resource_id)
PATIENTS_BY_IDS = select(_rows.c.resource_id, _rows.c.version_id, _rows.c.deleted).where(  # a literal binds a value
    _rows.c.resource_type == "Patient", _rows.c.resource_id.in_(bindparam("ids", expanding=True))
).order_by(_rows.c.resource_id)


def fill(database: Database, n: int) -> None:
    with database.connect(write=True) as connection, connection.begin():
        connection.execute(insert(_rows), [{"resource_type": "Patient", "resource_id": f"p{k:02d}", "version_id": k + 1,
                                             "last_updated": k, "deleted": k % 3 == 0, "body": b"{}"}
                                            for k in range(n)])


@pytest.mark.parametrize("ids", [[], ["p01"], ["p02", "p05", "nobody"], [f"p{k:02d}" for k in range(20)]])
def test_rows_are_what_sqlalchemy_returns_for_in_lists_of_any_length(database: Database, ids: list[str]):
    fill(database, 20)
    with database.connect() as connection, connection.begin():
        expected = [tuple(row) for row in connection.execute(BY_IDS, {"kind": "Patient", "ids": ids})]
        assert len(expected) == len([i for i in ids if i != "nobody"])
        for statement, parameters in ((DriverStatement(BY_IDS), {"kind": "Patient", "ids": ids}),
                                      (DriverStatement(PATIENTS_BY_IDS), {"ids": ids})):
            for _ in range(2):  # the second time from the remembered SQL
                got = statement.rows(connection, parameters)
                assert [(r.resource_id, r.version_id, bool(r.deleted)) for r in got] == \
                    [(i, v, bool(d)) for i, v, d in expected]
            assert statement.first(connection, {**parameters, "ids": ["nobody"]}) is None


def test_driver_errors_are_sqlalchemys_and_listeners_see_each_statement(database: Database):
    fill(database, 2)
    seen: list[tuple[str, bool]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement.split()[0], executemany))

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        with database.connect(write=True) as connection, connection.begin():
            DriverStatement(BY_IDS).rows(connection, {"kind": "Patient", "ids": ["p01"]})
            sql = f"INSERT INTO resources (resource_type, resource_id, version_id, last_updated, deleted, body) " \
                  f"VALUES ({', '.join([connection.dialect.paramstyle == 'qmark' and '?' or '%s'] * 6)})"
            with pytest.raises(exc.IntegrityError):
                run_driver_sql(connection, sql, [("Patient", "p01", 1, 0, False, b"{}")], many=True)
    finally:
        event.remove(database.engine, "before_cursor_execute", note)
    assert ("SELECT", False) in seen and ("INSERT", True) in seen
