"""Prebuilt statements run straight on the database driver's cursor.

A DIALOG+ session or an import batch runs a dozen prebuilt statements (a current row by its key, a
person's plans, their care relationships) whose own work in SQLite is a few microseconds, while
SQLAlchemy's execution path around each (compiled-cache lookup, expanding IN lists, parameter
processing, result objects) costs several times that: on this path a session takes ~15% less CPU.
A `DriverStatement` is compiled once per dialect, and per length of each of its IN lists, to the
driver's SQL; it runs on the DBAPI connection of the SQLAlchemy Connection in hand, inside its
transaction. Driver errors become SQLAlchemy's exceptions (IntegrityError ...), as on the usual
path, and `before_cursor_execute` listeners still see every statement.

    rows = CURRENT.rows(connection, {"owner_type": "Patient", "owner_id": "p1"})   # named tuples
"""
from __future__ import annotations

from collections import namedtuple

from sqlalchemy import Connection, exc
from sqlalchemy.sql import ClauseElement

__all__ = ["DriverStatement", "IN_CHUNK", "run_driver_sql"]

# Values per IN (...) list in one statement, whichever way it runs: well under every SQLite build's
# bound-parameter limit, and few distinct lengths for a DriverStatement to plan.
IN_CHUNK = 500
_PLANS_PER_STATEMENT = 256  # distinct IN-list lengths remembered per statement and dialect


class DriverStatement:
    def __init__(self, statement: ClauseElement):
        self.statement = statement
        columns = getattr(statement, "selected_columns", None)
        self._row = namedtuple("Row", [c.key for c in columns]) if columns is not None else None
        # dialect name -> (Compiled, its IN-list names, the values of its literals: `type = 'Patient'` binds one)
        self._compiled: dict[str, tuple[object, tuple[str, ...], dict]] = {}
        # (dialect name, IN-list lengths) -> (sql, the parameter names in order (None: pass a dict), IN-list names, literals)
        self._plans: dict[tuple, tuple[str, list[str] | None, tuple[str, ...], dict]] = {}

    def rows(self, connection: Connection, parameters: dict) -> list:
        sql, args = self._bound(connection, parameters)
        cursor = run_driver_sql(connection, sql, args)
        return list(map(self._row._make, cursor.fetchall()))

    def first(self, connection: Connection, parameters: dict):
        found = self.rows(connection, parameters)
        return found[0] if found else None

    def execute_many(self, connection: Connection, parameter_sets: list[dict]) -> None:
        """An executemany (an UPDATE for many rows): its statement has no IN lists."""
        if not parameter_sets:
            return
        sql, names, _, literals = self._plan(connection, parameter_sets[0])
        if literals:
            parameter_sets = [{**literals, **p} for p in parameter_sets]
        args = [[p[name] for name in names] for p in parameter_sets] if names is not None else parameter_sets
        run_driver_sql(connection, sql, args, many=True)

    def _bound(self, connection: Connection, parameters: dict) -> tuple[str, object]:
        sql, names, expanding, literals = self._plan(connection, parameters)
        if expanding or literals:
            parameters = {**literals, **parameters}
            for name in expanding:
                for i, value in enumerate(parameters.pop(name), 1):
                    parameters[f"{name}_{i}"] = value
        return sql, ([parameters[name] for name in names] if names is not None else parameters)

    def _plan(self, connection: Connection, parameters: dict) -> tuple[str, list[str] | None, tuple[str, ...], dict]:
        dialect = connection.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            found = self._compiled[dialect.name] = (
                compiled, tuple(n for n, b in compiled.binds.items() if b.expanding),
                {n: b.effective_value for n, b in compiled.binds.items() if not b.required})
        compiled, expanding, literals = found
        key = (dialect.name, *(len(parameters[name]) for name in expanding))
        plan = self._plans.get(key)
        if plan is None:
            state = compiled.construct_expanded_state({**literals, **parameters}) if expanding else None
            sql = state.statement if state is not None else compiled.string
            positions = (state.positiontup if state is not None else compiled.positiontup)
            plan = (sql, list(positions) if positions is not None else None, expanding, literals)
            if len(self._plans) < _PLANS_PER_STATEMENT:
                self._plans[key] = plan
        return plan


def run_driver_sql(connection: Connection, sql: str, args: object, *, many: bool = False):
    """Run `sql` on the driver's cursor of `connection` (in its transaction); the cursor."""
    cursor = connection.connection.driver_connection.cursor()
    if connection.dispatch.before_cursor_execute:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, args, None, many)
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except connection.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(sql, args, error, connection.dialect.loaded_dbapi.Error,
                                      dialect=connection.dialect) from error
    return cursor

