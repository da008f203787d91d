"""Mapping and validating source records: the part of an import that needs nothing but the record.

`prepare` maps one record with its source's mapping and validates what it mapped. It reads no
store and no state of the import run, so it gives the same result in any process, and a large
import runs it in worker processes (`PreparePool`) while the main process links people and stores:
on this project's 2-core machines that is most of the difference between one core and two.

What needs the run (which Patient a RiO client was stored as, a merge, a DIALOG+ session) stays
in the main process: pipelines/ingest.py.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import orjson

from fhir_bridge.errors import BridgeError
from fhir_bridge.pipelines.bulk_gc import BULK_THRESHOLD
from fhir_bridge.fhir.outcome import Issue
from fhir_bridge.store.types import Precomputed

__all__ = ["Prepared", "prepare", "PreparePool", "Recipe"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Prepared:
    """A record mapped (or why it could not be) and what validating the mapped resources found."""

    mapped: object | None                                  # the adapter's Mapped; None if mapping raised
    mapping_errors: list[Issue] = field(default_factory=list)  # non-empty: quarantined as "mapping"
    invalid: list[Issue] = field(default_factory=list)     # non-empty: quarantined as "validation"


def prepare(record, mapper: Callable, validator) -> Prepared:
    """Map `record` and validate each mapped resource; never raises for bad data or a mapping bug."""
    try:
        mapped = mapper(record)
    except BridgeError as exc:
        return Prepared(None, [Issue("error", exc.code, exc.message, exc.expression)])
    except Exception as exc:  # noqa: BLE001 - a mapping bug must not stop the batch or lose the record
        return Prepared(None, [Issue("error", "exception", f"mapping failed: {exc!r}")])
    errors = [i for i in mapped.problems if i.is_error]
    if errors or not mapped.resources:
        return Prepared(mapped, errors or [Issue("error", "not-found", "the record mapped to nothing")])
    for resource in mapped.resources:
        result = validator.validate(resource)
        if not result.valid:
            where = f"{resource.get('resourceType')}/{resource.get('id')}"
            return Prepared(mapped, invalid=[Issue(i.severity, i.code, f"{where}: {i.message}", i.expression)
                                             for i in result.errors])
    return Prepared(mapped)


@dataclass(frozen=True)
class Recipe:
    """What a worker process needs to map and validate as the importing process does: the same
    Settings (profiles, terminology, mapping files) and the source adapter's name and organisation."""

    settings: object
    source: str
    organization: str


# -- worker processes ------------------------------------------------------------------------------
_worker: tuple[Callable, object, object, object] | None = None  # (mapper, validator, score rows, indexer), once per worker
_failed: BridgeError | None = None  # why the worker could not start (a broken mapping file ...)


def _start_worker(recipe: Recipe) -> None:
    """Build the worker's engine and validator. A configuration error is kept, not raised: raised
    in an initializer it printed a traceback per worker before the importing process, which loads
    the same files, said what is wrong; the worker's first chunk fails with it instead, and the
    importing process maps the rest itself (PreparePool._results)."""
    global _failed
    _exit_with_parent()
    try:
        _build_worker(recipe)
    except BridgeError as exc:
        _failed = exc


def _build_worker(recipe: Recipe) -> None:
    from fhir_bridge.mapping import MappingEngine, load_mappings
    from fhir_bridge.measures import load_dialog_definition
    from fhir_bridge.pipelines.score_rows import ScoreRows
    from fhir_bridge.pipelines.source_adapters import adapter_factory
    from fhir_bridge.store.indexer import Indexer
    from fhir_bridge.store.search_parameters import SearchParameterRegistry
    from fhir_bridge.validation import Validator

    global _worker
    validator = Validator.load(recipe.settings)
    engine = MappingEngine(load_mappings(recipe.settings.mappings_dir, validator.terminology), validator.terminology)
    adapter = adapter_factory(recipe.source)(engine, recipe.organization, None)
    # Scores and index rows as the store makes them (bridge.py), for the importing process to reuse
    settings = recipe.settings
    score_rows = ScoreRows(load_dialog_definition(settings.profiles_dir, settings.terminology_dir), settings.min_answered)
    indexer = Indexer(SearchParameterRegistry.load(validator.package), base_url=settings.base_url, model=validator.model)
    _worker = (adapter.map, validator, score_rows, indexer)
    # What was just loaded lives as long as the worker: the collector need not walk it again; and
    # the worker does nothing but bulk work (pipelines/bulk_gc.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(BULK_THRESHOLD, *gc.get_threshold()[1:])


def _exit_with_parent() -> None:
    """A worker whose importing process is killed ends too (left alone it would wait for work
    forever: it holds its task queue's write end itself, so it never sees the queue close)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _prepare_chunk(records: list) -> list[Prepared | bytes]:
    if _worker is None:
        raise _failed or RuntimeError("the import worker did not start")
    mapper, validator, score_rows, indexer = _worker
    return [_compact(prepare(record, mapper, validator), score_rows, indexer) for record in records]


# What orjson would write as something else (a datetime as text, a dataclass as an object) raises instead.
_EXACT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _not_json(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


# A chunk's results travel back pickled, and the importing process unpickled them at ~26 us a record
# (nested dicts, dataclasses), a tenth of its own work; a record that mapped and validated cleanly
# (nearly all) travels as its resources' JSON instead, read back with orjson at ~6 us, with what the
# importing process, the busier one, would otherwise compute from them and reuses where linking
# left them as they were: the DIALOG responses' scores (ScoreRows.scores: a few numbers) and the
# index rows of the parameters that read one top-level element (Indexer.local_rows). Nothing in
# the importing process changes these resources in place (linking makes new dicts where it
# changes something: source_rio.py `_point`, patient_links.py `repointed`), which is what lets
# the store tell an element the worker indexed by its identity.
def _compact(prepared: Prepared, score_rows=None, indexer=None) -> Prepared | bytes:
    from fhir_bridge.pipelines.source_records import Mapped
    mapped = prepared.mapped
    if prepared.mapping_errors or prepared.invalid or type(mapped) is not Mapped or mapped.problems \
            or mapped.merge is not None or mapped.session is not None:
        return prepared
    scores = _scores(mapped.resources, score_rows)
    index_rows = [indexer.local_rows(r) for r in mapped.resources] if indexer is not None else None
    try:  # anything orjson would turn into something else (a datetime, a dataclass) raises: as it is
        return orjson.dumps([mapped.resources, scores, index_rows], default=_not_json, option=_EXACT)
    except TypeError:
        return prepared


def _scores(resources: list[dict], score_rows) -> list[dict | None] | None:
    if score_rows is None:
        return None
    try:
        return [score_rows.scores(r) for r in resources]
    except Exception:  # noqa: BLE001 - odd answers: the store scores the response itself, as without a worker
        return None


def _expanded(results: list[Prepared | bytes]) -> list[Prepared]:
    return [_mapped(*orjson.loads(r)) if type(r) is bytes else r for r in results]


def _mapped(resources: list[dict], scores: list[dict | None] | None, index_rows: list[list] | None) -> Prepared:
    from fhir_bridge.pipelines.source_records import Mapped
    if scores is None and index_rows is None:
        return Prepared(Mapped(resources))
    scores, index_rows = scores or [None] * len(resources), index_rows or [None] * len(resources)
    return Prepared(Mapped(resources, precomputed=[Precomputed(*done) for done in zip(resources, scores, index_rows)]))


def _ready() -> None:
    """A task that only makes sure a worker has started (spawned, engine and validator built)."""


class PreparePool:
    """`prepare` over a stream of records in worker processes, results in input order.

    Workers are spawned (not forked: the importing process may hold database connections and
    threads) and build their own mapping engine and validator from the `Recipe`. Records go in
    chunks; at most `window` chunks are in flight, so memory stays flat however long the input.

    The caller shares the work: when the next chunk it needs is not ready, it prepares the next
    `share` records itself (`fallback`) rather than wait, in their place in the order. With one
    worker beside the importing process (2 cores), storing takes less time than preparing, so
    otherwise the importing process would idle for a third of the run."""

    def __init__(self, recipe: Recipe, workers: int, *, chunk: int = 250, window: int | None = None,
                 share: int = 25):
        self.recipe = recipe
        self.workers = workers
        self.chunk = chunk
        # Eight chunks at least (2,000 records, a few MB of results): a worker that loses its core
        # for a moment (2 cores, and more threads than that) is still ahead when it gets it back,
        # so the importing process, the busier one, seldom maps records itself (with 3 it mapped
        # 1,450-2,300 of a 68,990-record RiO import, with 8 1,250: the ones before a worker is up).
        self.window = window or max(8, 3 * workers)
        self.share = share  # records the caller prepares at a time while it would wait; 0: never
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Spawn the workers now (each takes about a second to build its engine and validator), so
        they are ready when the caller has records for them."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker, initargs=(self.recipe,))
            for _ in range(self.workers):
                self._executor.submit(_ready)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def prepared(self, records: Iterable, fallback: Callable[[object], Prepared]) -> Iterator[tuple[object, Prepared]]:
        """(record, Prepared) for each record, in order. Chunks are submitted as soon as this is
        called, not at the first next(). If the workers fail (one killed, out of memory), `fallback`
        prepares the rest here. The workers are shut down when the records are done."""
        self.start()
        stream = _Stream(self, iter(records), fallback)
        stream.fill()
        return self._results(stream)

    def _results(self, stream: "_Stream") -> Iterator[tuple[object, Prepared]]:
        try:
            while stream.in_flight:
                stream.share()
                chunk, future, at_worker = stream.in_flight.popleft()
                stream.at_workers -= at_worker
                try:
                    results = _expanded(future.result())
                except Exception as exc:  # noqa: BLE001 - a dead worker must not cost the import
                    _log.warning("import worker processes failed (%r); mapping the rest in this process", exc)
                    queued = list(stream.in_flight)
                    stream.in_flight.clear()
                    for records, results in [(chunk, None), *((c, _done(f)) for c, f, _ in queued)]:
                        # chunks prepared already (here, or by a worker before it died) are not redone
                        yield from zip(records, results) if results is not None else \
                            ((record, stream.fallback(record)) for record in records)
                    for record in stream.records:
                        yield record, stream.fallback(record)
                    return
                stream.fill()
                yield from zip(chunk, results)
        finally:
            self.close()


def _done(future: Future) -> list[Prepared] | None:
    """A chunk's results if its future finished without failing, else None."""
    return _expanded(future.result()) if future.done() and future.exception() is None else None


class _Stream:
    """One input's chunks in flight, in input order: the workers' (at most `window`) and the caller's."""

    def __init__(self, pool: PreparePool, records: Iterator, fallback: Callable[[object], Prepared]):
        self.pool = pool
        self.records = records
        self.fallback = fallback
        self.in_flight: deque[tuple[list, Future, bool]] = deque()  # (chunk, its results, at a worker?)
        self.at_workers = 0

    def fill(self) -> None:
        pool = self.pool
        while self.at_workers < pool.window:
            chunk = list(islice(self.records, pool.chunk))
            if not chunk:
                return
            try:
                future = pool._executor.submit(_prepare_chunk, chunk)
            except Exception as exc:  # noqa: BLE001 - the pool broke since the last result (a worker
                future = Future()     # killed): _results falls back when it reaches this chunk
                future.set_exception(exc)
            self.in_flight.append((chunk, future, True))
            self.at_workers += 1

    def share(self) -> None:
        """While the chunk needed next is not ready: prepare the records after the queue here, and
        queue them (a few chunks' worth at most: a hung worker must not make the queue grow for ever)."""
        head, share, done_here = self.in_flight[0][1], self.pool.share, 0
        while share and not head.done() and done_here < 4 * self.pool.chunk:
            chunk = list(islice(self.records, share))
            if not chunk:
                return
            here: Future = Future()
            here.set_result([self.fallback(record) for record in chunk])
            self.in_flight.append((chunk, here, False))
            done_here += len(chunk)
