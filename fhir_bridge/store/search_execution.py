"""Running a SearchRequest: a mixin for Repository, the only class that touches a database connection.

The host class provides `_reading()` (a context manager yielding a connection inside one read
transaction) and `_fetch_stored(keys, connection)` (current versions of keys, in order). The count,
the page and its includes are read in that one transaction, so they agree with each other.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from fhir_bridge.store.search import SearchRequest, build_includes, build_search
from fhir_bridge.store.types import SearchResult, Stored

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["SearchMixin"]


class SearchMixin:
    if TYPE_CHECKING:
        def _reading(self) -> AbstractContextManager[Connection]: ...

        def _fetch_stored(self, keys: list[tuple[str, str]], connection: Connection | None = None) -> list[Stored]: ...

    def search(self, request: SearchRequest) -> SearchResult:
        """The page of matches, their includes and the total (None with _total=none; with
        _summary=count, or _count=0, the total alone)."""
        ids_statement, count_statement = build_search(request)
        result = SearchResult(total=None, matches=[], offset=request.offset, count=request.count)
        count_only = request.summary == "count" or request.count == 0
        with self._reading() as connection:
            if request.total != "none" or count_only:
                result.total = connection.scalar(count_statement)
            if count_only or (result.total is not None and request.offset >= result.total):
                return result
            keys = [(row.resource_type, row.resource_id) for row in connection.execute(ids_statement)]
            result.matches = self._fetch_stored(keys, connection)
            included = _new_keys((tuple(row) for statement in build_includes(request, keys)
                                  for row in connection.execute(statement)), set(keys))
            result.included = self._fetch_stored(included, connection)
        return result


def _new_keys(found: Iterable[tuple[str, str]], seen: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keys in the order found, each once, none already among the matches."""
    out = []
    for key in found:
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out
