"""Bulk inserts handed straight to the database driver.

A write stores a dozen narrow rows per resource (history, index, score, care-access rows). Through
SQLAlchemy's `insert()` each row's parameters are processed in Python one by one, which costs about
a third as much again as SQLite's own insert; the driver's executemany with tuples in column order
does not (on the driver's cursor: driver_statements.py). One INSERT text per table and dialect,
built once from the schema (its own names only).
"""
from __future__ import annotations

from operator import itemgetter

from sqlalchemy import Connection, Table

from fhir_bridge.store.driver_statements import run_driver_sql

__all__ = ["BulkInsert"]


class BulkInsert:
    def __init__(self, dialect: str, tables: tuple[Table, ...]):
        placeholder = "%s" if dialect == "postgresql" else "?"
        self._statements: dict[str, tuple[itemgetter, dict[str, object], str]] = {}
        self._owned: dict[str, itemgetter] = {}  # tables led by (resource_type, resource_id): the rest
        for table in tables:
            columns = [column.name for column in table.columns]
            defaults = {c.name: c.default.arg if c.default is not None and c.default.is_scalar else None
                        for c in table.columns}
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))})"
            # itemgetter of one name gives the value, not a 1-tuple: every table here has several
            self._statements[table.name] = (itemgetter(*columns), defaults, sql)
            if columns[:2] == ["resource_type", "resource_id"] and len(columns) > 3:
                self._owned[table.name] = itemgetter(*columns[2:])

    def __call__(self, connection: Connection, table: Table, rows: list[dict]) -> None:
        """Insert `rows` (dicts by column name; a column left out takes its default, else NULL)."""
        if not rows:
            return
        values, defaults, sql = self._statements[table.name]
        try:
            parameters = [values(row) for row in rows]
        except KeyError:  # some rows leave columns out
            parameters = [values({**defaults, **row}) for row in rows]
        run_driver_sql(connection, sql, parameters, many=True)

    def owned(self, connection: Connection, table: Table, owned: list[tuple[str, str, list[dict]]]) -> None:
        """Insert each owner's rows into a table led by (resource_type, resource_id): `owned` is
        (resource_type, resource_id, rows without those two) per owner, so that no row is copied
        into a new dict just to carry its owner (an import batch writes ~10,000 index rows)."""
        values = self._owned[table.name]
        try:
            parameters = [(rtype, rid, *values(row)) for rtype, rid, rows in owned for row in rows]
        except KeyError:  # some rows leave columns out: as __call__ does
            parameters = None
        if parameters is None:
            self(connection, table, [{**row, "resource_type": rtype, "resource_id": rid}
                                     for rtype, rid, rows in owned for row in rows])
        elif parameters:
            run_driver_sql(connection, self._statements[table.name][2], parameters, many=True)
