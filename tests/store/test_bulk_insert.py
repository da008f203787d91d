"""Bulk inserts on the driver (store/bulk_insert.py), on SQLite and PostgreSQL: rows given as dicts,
and index rows given per owner, land as SQLAlchemy's own insert would write them."""
from __future__ import annotations

from sqlalchemy import select

from fhir_bridge.store import schema
from fhir_bridge.store.bulk_insert import BulkInsert
from fhir_bridge.store.database import Database

_tokens, _strings = schema.token_index, schema.string_index


def _stored(database: Database, table) -> list[tuple]:
    with database.connect() as connection, connection.begin():
        return sorted(tuple(row) for row in connection.execute(select(table)))


def test_rows_per_owner_land_with_their_owner_in_column_order(database: Database):
    insert = BulkInsert(database.dialect, tuple(schema.INDEX_TABLES.values()))
    with database.connect(write=True) as connection, connection.begin():
        insert.owned(connection, _tokens, [
            ("Patient", "p1", [{"code": "female", "system": None, "param": "gender"},   # keys in any order
                               {"param": "identifier", "system": "https://nhs", "code": "9434765919"}]),
            ("Encounter", "e1", [{"param": "status", "system": None, "code": "finished"}]),
            ("Encounter", "e2", []),
        ])
    assert _stored(database, _tokens) == [
        ("Encounter", "e1", "status", None, "finished"),
        ("Patient", "p1", "gender", None, "female"),
        ("Patient", "p1", "identifier", "https://nhs", "9434765919"),
    ]


def test_a_row_per_owner_without_some_columns_gets_their_defaults_as_dict_rows_do(database: Database):
    insert = BulkInsert(database.dialect, tuple(schema.INDEX_TABLES.values()))
    with database.connect(write=True) as connection, connection.begin():
        insert.owned(connection, _tokens, [("Patient", "p1", [{"param": "gender", "code": "male"}])])
        insert.owned(connection, _strings, [("Patient", "p1", [])])  # nothing to write: no statement
    assert _stored(database, _tokens) == [("Patient", "p1", "gender", None, "male")]
    assert _stored(database, _strings) == []
