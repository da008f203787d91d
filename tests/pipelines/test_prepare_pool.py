"""Mapping and validating in worker processes (pipelines/prepare.py): an import that hands records
to spawned workers stores exactly what an import in one process stores, dirty input included, in
input order; workers that fail cost nothing (the importing process maps the rest itself)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.fhir.codec import loads_json
from fhir_bridge.pipelines.ingest import Ingest, SourceRecord
from fhir_bridge.pipelines.prepare import PreparePool, Recipe, prepare
from fhir_bridge.pipelines.resources import Caller
from fhir_bridge.pipelines.sources import build_adapter, ingest_for, run_import
from fhir_bridge.synth import generate

TRUST = Caller("RV3", "Example Mental Health NHS Foundation Trust")


@contextmanager
def rio_records(tmp_path: Path, validator, count: int, seed: int):
    """(adapter, records) of a synthetic RiO export, read with a store that is closed afterwards."""
    generate("rio", tmp_path / "export", count=count, seed=seed)
    bridge = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    try:
        adapter = build_adapter(bridge, "rio", "RV3")
        yield adapter, list(adapter.records([tmp_path / "export"]))
    finally:
        bridge.close()


def imported(tmp_path: Path, name: str, validator, export: Path, pool: PreparePool | None):
    bridge = Bridge(Settings(data_dir=tmp_path / name), validator=validator)
    adapter = build_adapter(bridge, "rio", "RV3")
    ingest = ingest_for(bridge, adapter, TRUST, pool=pool)
    ingest.parallel_after = 40  # the first 40 records here, the rest in the workers
    report = ingest.run(adapter.records([export]))
    return bridge, report


def contents(bridge: Bridge) -> dict[tuple[str, str], dict]:
    """Every stored resource but the Provenances (random ids), without server meta."""
    found = {}
    for resource_type in ("Patient", "ServiceRequest", "Encounter", "CareTeam", "QuestionnaireResponse"):
        for stored in bridge.repository.search(bridge.search_request(resource_type, [("_count", "5000")])).matches:
            body = dict(stored.resource)
            body["meta"] = {k: v for k, v in body.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
            found[resource_type, stored.resource_id] = body
    return found


def derived_rows(bridge: Bridge) -> dict[str, list[tuple]]:
    """Every index, score, person and care-access row, Provenances' aside (random ids)."""
    tables = ("search_token", "search_reference", "search_date", "search_string", "search_number",
              "resource_people", "care_relationships")
    with bridge.database.connect() as connection:
        found = {table: sorted(map(tuple, connection.exec_driver_sql(
            f"SELECT * FROM {table} WHERE resource_type != 'Provenance'").fetchall()), key=repr) for table in tables}
        found["dialog_scores"] = sorted(map(tuple, connection.exec_driver_sql("SELECT * FROM dialog_scores")), key=repr)
        found["person_attributes"] = sorted(map(tuple, connection.exec_driver_sql("SELECT * FROM person_attributes")))
    return found


def quarantine_of(bridge: Bridge) -> list[tuple[str, str, list]]:
    return sorted((e.location.split("/")[-1], e.reason, [i.get("diagnostics", "").split("/")[-1]
                                                         for i in loads_json(e.outcome)["issue"]])
                  for e in bridge.repository.quarantined())


def test_an_import_in_worker_processes_stores_what_one_process_stores(tmp_path, validator):
    manifest = generate("rio", tmp_path / "export", count=120, seed=5, dirty=True)
    assert manifest.faults()  # garbage, bad dates, ratings of 9 ... cross the process boundary too
    alone, alone_report = imported(tmp_path, "alone", validator, tmp_path / "export", None)
    pooled, pooled_report = imported(tmp_path, "pooled", validator, tmp_path / "export",
                                     PreparePool(Recipe(Settings(), "rio", "RV3"), workers=2, chunk=16))
    try:
        assert pooled_report.records_in == alone_report.records_in > 300
        assert pooled_report.counts == alone_report.counts and pooled_report.quarantined == alone_report.quarantined
        assert pooled_report.quarantined and pooled_report.balanced
        assert contents(pooled) == contents(alone)
        assert derived_rows(pooled) == derived_rows(alone)  # index, score and care-access rows too
        assert derived_rows(pooled)["dialog_scores"] and derived_rows(pooled)["search_reference"]
        assert quarantine_of(pooled) == quarantine_of(alone)
    finally:
        alone.close()
        pooled.close()


def test_workers_that_cannot_start_cost_nothing(tmp_path, validator, caplog, capfd):
    """A worker that dies (here: it cannot even build its adapter) is not an import that fails:
    the importing process maps the records the workers did not; and the worker prints no
    traceback (the importing process, which reads the same files, says what is wrong)."""
    generate("rio", tmp_path / "export", count=60, seed=6)
    broken = Recipe(Settings(), "no-such-source", "RV3")
    alone, alone_report = imported(tmp_path, "alone", validator, tmp_path / "export", None)
    pooled, pooled_report = imported(tmp_path, "pooled", validator, tmp_path / "export",
                                     PreparePool(broken, workers=1, chunk=16))
    try:
        assert pooled_report.counts == alone_report.counts and pooled_report.balanced
        assert contents(pooled) == contents(alone)
        assert "mapping the rest in this process" in caplog.text
        assert "Traceback" not in capfd.readouterr().err
    finally:
        alone.close()
        pooled.close()


def test_small_inputs_never_use_workers(tmp_path, validator, monkeypatch):
    """Below `parallel_after` records the pool maps nothing (it is shut down unused); and
    `run_import` does not even start workers for an input under a megabyte."""
    class Refusing(PreparePool):
        def prepared(self, records, fallback):
            raise AssertionError("a small import used worker processes")

    started = []
    monkeypatch.setattr(PreparePool, "start", lambda self: started.append(self))
    bridge = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    try:
        generate("rio", tmp_path / "export", count=5, seed=7)
        adapter = build_adapter(bridge, "rio", "RV3")
        report = ingest_for(bridge, adapter, TRUST, pool=Refusing(Recipe(Settings(), "rio", "RV3"), 1)).run(
            adapter.records([tmp_path / "export"]))
        assert report.balanced and report.counts["created"] == report.records_in
        assert len(started) == 1
        again = run_import(bridge, "rio", [tmp_path / "export"], organization="RV3", caller=TRUST, quarantine_dir=None,
                           workers=2)
        assert again.counts["unchanged"] == again.records_in and len(started) == 1
    finally:
        bridge.close()


@pytest.mark.parametrize("share", [4, 0])
def test_the_importing_process_prepares_records_while_it_would_wait(tmp_path, validator, share):
    """While the chunk it needs next is not back from a worker (here: the worker is still starting),
    the importing process prepares the records after it itself; every record comes back once, in
    input order, prepared as anywhere else. With `share=0` it only waits."""
    with rio_records(tmp_path, validator, count=40, seed=8) as (adapter, records):
        here = []

        def fallback(record):
            here.append(record)
            return prepare(record, adapter.map, validator)

        pool = PreparePool(Recipe(Settings(), "rio", "RV3"), workers=1, chunk=16, share=share)
        got = list(pool.prepared(records, fallback))
        assert [id(record) for record, _ in got] == [id(record) for record in records]
        first = pool.window * pool.chunk  # submitted to the worker before anything else
        if share:
            assert here and all(record not in records[:first] for record in here)
        else:
            assert here == []
        alone = [prepare(record, adapter.map, validator) for record in records]
        assert [(p.mapped.resources if p.mapped else None, p.mapping_errors, p.invalid) for _, p in got] == \
            [(p.mapped.resources if p.mapped else None, p.mapping_errors, p.invalid) for p in alone]


def test_a_pool_that_broke_before_a_chunk_was_handed_over_costs_nothing(tmp_path, validator):
    """A worker killed between two chunks breaks the pool: handing it the next chunk raises at once.
    That chunk and the rest are prepared here, in order, like those of a worker that died with them."""
    with rio_records(tmp_path, validator, count=10, seed=9) as (adapter, records):
        pool = PreparePool(Recipe(Settings(), "rio", "RV3"), workers=1, chunk=8, share=0)
        pool.start()
        pool._executor.submit(int).result()  # the worker is up ...
        [worker] = pool._executor._processes
        os.kill(worker, signal.SIGKILL)      # ... and killed
        deadline = time.monotonic() + 20
        while not pool._executor._broken and time.monotonic() < deadline:
            time.sleep(0.05)
        here = []

        def fallback(record):
            here.append(record)
            return prepare(record, adapter.map, validator)

        got = list(pool.prepared(records, fallback))
        assert [id(record) for record, _ in got] == [id(record) for record in records] == [id(r) for r in here]


def test_a_worker_that_dies_while_the_importing_process_shares_costs_no_record_twice(tmp_path, validator):
    """The worker dies while the importing process is preparing records after its chunks: what was
    prepared here is kept, the worker's chunks and the rest are prepared here, each record once, in order."""
    with rio_records(tmp_path, validator, count=20, seed=10) as (adapter, records):
        pool = PreparePool(Recipe(Settings(), "rio", "RV3"), workers=1, chunk=8, share=4)
        here = []

        def fallback(record):
            if not here:  # the first record shared while the worker starts: the worker is killed
                for worker in pool._executor._processes:
                    os.kill(worker, signal.SIGKILL)
            here.append(record)
            return prepare(record, adapter.map, validator)

        got = list(pool.prepared(records, fallback))
        assert [id(record) for record, _ in got] == [id(record) for record in records]
        assert sorted(map(id, here)) == sorted(map(id, records))  # every record here, once

@pytest.mark.parametrize("mapper, reason", [
    (lambda record: (_ for _ in ()).throw(ValueError("a bug")), "mapping failed: ValueError('a bug')"),
    (lambda record: type("M", (), {"resources": [], "problems": []})(), "the record mapped to nothing"),
])
def test_prepare_never_raises(mapper, reason, validator):
    prepared = prepare(SourceRecord("x", "f:1", b"", None), mapper, validator)
    assert prepared.mapped is None or prepared.mapped.resources == []
    assert [i.message for i in prepared.mapping_errors] == [reason]


def test_an_invalid_mapped_resource_is_reported_not_raised(validator):
    bad = {"resourceType": "Patient", "id": "p1", "gender": "sometimes"}
    prepared = prepare(SourceRecord("x", "f:1", b"", None),
                       lambda record: type("M", (), {"resources": [bad], "problems": []})(), validator)
    assert not prepared.mapping_errors and prepared.invalid
    assert prepared.invalid[0].message.startswith("Patient/p1: ")


def test_the_mllp_path_prepares_in_its_own_process(tmp_path, validator):
    """`Ingest.one` (one message, acknowledged after its commit) never uses a pool."""
    bridge = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    try:
        organization = {"resourceType": "Organization", "id": "o1", "name": "Example Wellbeing"}
        mapped = type("M", (), {"resources": [organization], "problems": []})
        ingest = Ingest(bridge, "x", lambda record: mapped(), TRUST, pool=PreparePool(Recipe(Settings(), "rio", "RV3"), 1))
        assert ingest.one(SourceRecord("x", "mllp:1", b"", None)) == "created"
    finally:
        bridge.close()


def test_workers_end_when_the_importing_process_is_killed(tmp_path):
    """`kill -9` of an import leaves no worker process behind waiting for work."""
    script = tmp_path / "importer.py"
    script.write_text(
        "import time\n"
        "from fhir_bridge.config import Settings\n"
        "from fhir_bridge.pipelines.prepare import PreparePool, Recipe\n"
        "if __name__ == '__main__':\n"
        "    pool = PreparePool(Recipe(Settings(), 'rio', 'RV3'), 1)\n"
        "    pool.start()\n"
        "    pool._executor.submit(int).result()  # the worker is up\n"
        "    print(*pool._executor._processes, flush=True)\n"
        "    time.sleep(120)\n")
    importer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        [worker] = [int(pid) for pid in importer.stdout.readline().split()]
        assert Path(f"/proc/{worker}").exists()
        importer.send_signal(signal.SIGKILL)
        importer.wait(10)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{worker}").exists() and _state(worker) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{worker}").exists() or _state(worker) == "Z"  # gone (or only awaiting init's reaping)
    finally:
        importer.kill()
        if worker is not None and Path(f"/proc/{worker}").exists():
            os.kill(worker, signal.SIGKILL)  # this test's own leftover, if it failed


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_clean_result_travels_as_json_and_anything_else_as_it_is():
    """What a worker sends back (pipelines/prepare.py `_compact`): a record mapped and validated
    without a word travels as its resources' JSON and arrives equal; one with a warning, a merge, a
    session or a fault arrives as it was made."""
    from datetime import date

    from fhir_bridge.fhir.outcome import Issue
    from fhir_bridge.pipelines.prepare import Prepared, _compact, _expanded
    from fhir_bridge.pipelines.source_records import Mapped

    resources = [{"resourceType": "Patient", "id": "p", "birthDate": "1990-01-02", "active": True,
                  "extension": [{"url": "u", "valueDecimal": 0.1}, {"url": "v", "valueInteger": -3}]}]
    clean = Prepared(Mapped(resources))
    assert type(_compact(clean)) is bytes
    assert _expanded([_compact(clean)]) == [clean]
    kept = [Prepared(Mapped(resources, problems=[Issue("warning", "value", "odd")])),
            Prepared(Mapped(resources, session={"resourceType": "Parameters"})),
            Prepared(None, [Issue("error", "exception", "mapping failed")]),
            Prepared(Mapped(resources), invalid=[Issue("error", "value", "bad")]),
            Prepared(Mapped([{**resources[0], "birthDate": date(1990, 1, 2)}]))]  # JSON would make it text
    assert [_compact(p) for p in kept] == kept
    assert _expanded([_compact(p) for p in kept]) == kept


def test_run_import_over_a_megabyte_maps_in_workers_and_stores_what_one_process_stores(tmp_path, validator,
                                                                                      monkeypatch):
    """`run_import` of a large input (here the threshold is lowered) starts its worker pool and
    stores what an import in one process stores, quarantine included."""
    from fhir_bridge.pipelines import sources

    generate("rio", tmp_path / "export", count=150, seed=8, dirty=True)  # past PARALLEL_AFTER records
    pools = []
    start = PreparePool.start
    monkeypatch.setattr(PreparePool, "start", lambda self: (pools.append(self), start(self))[1])
    monkeypatch.setattr(sources, "PARALLEL_BYTES", 0)
    stores = {}
    for name, workers in (("alone", 0), ("pooled", 1)):
        stores[name] = bridge = Bridge(Settings(data_dir=tmp_path / name), validator=validator)
        report = run_import(bridge, "rio", [tmp_path / "export"], organization="RV3", caller=TRUST,
                            quarantine_dir=None, workers=workers)
        assert report.balanced
    try:
        assert len(set(map(id, pools))) == 1 and pools[0].workers == 1
        assert contents(stores["pooled"]) == contents(stores["alone"])
        assert quarantine_of(stores["pooled"]) == quarantine_of(stores["alone"])
    finally:
        for bridge in stores.values():
            bridge.close()


def test_a_clean_dialog_response_travels_with_its_scores():
    """A worker scores the DIALOG responses it mapped (ScoreRows.scores) and sends the scores with
    them; the importing process gets each response paired with its scores, other resources with none."""
    from fhir_bridge.measures import load_dialog_definition
    from fhir_bridge.pipelines.prepare import Prepared, _compact, _expanded
    from fhir_bridge.pipelines.score_rows import ScoreRows
    from fhir_bridge.pipelines.source_records import Mapped

    settings = Settings()
    score_rows = ScoreRows(load_dialog_definition(settings.profiles_dir, settings.terminology_dir), {})
    response = loads_json((Path(__file__).resolve().parents[2] / "examples" / "dialog-questionnaire-response"
                           / "valid-prom-assessment-complete.json").read_bytes())
    patient = {"resourceType": "Patient", "id": "p"}
    [arrived] = _expanded([_compact(Prepared(Mapped([patient, response])), score_rows)])
    assert arrived.mapped.resources == [patient, response]
    [for_patient, for_response] = arrived.mapped.precomputed
    assert for_patient.resource is arrived.mapped.resources[0] and for_patient.scores is None
    assert for_response.resource is arrived.mapped.resources[1]
    assert for_response.scores == score_rows.scores(response) and for_response.scores["sqol_answered"] > 0
    [plain] = _expanded([_compact(Prepared(Mapped([patient])))])
    assert plain == Prepared(Mapped([patient]))

    class Failing:
        def scores(self, resource):
            raise ValueError("odd answers")

    [unscored] = _expanded([_compact(Prepared(Mapped([patient, response])), Failing())])
    assert unscored == Prepared(Mapped([patient, response]))  # the store scores it, as without a worker


# store modules a worker uses for index rows and score fields: plain Python, no SQLAlchemy
_PURE_STORE_MODULES = {"fhir_bridge.store.outcome_fields", "fhir_bridge.store.indexer",
                       "fhir_bridge.store.search_parameters", "fhir_bridge.store.types"}


@pytest.mark.parametrize("source", ["rio", "hl7", "vcse", "dialog-app"])
def test_a_worker_maps_without_loading_the_store(source):
    """A worker imports what mapping, validating, scoring and indexing need, not the store
    (SQLAlchemy alone took a sixth of a second): it starts sooner, so the importing process maps
    fewer records itself while it waits. In a fresh interpreter, as a spawned worker is."""
    code = ("import sys\n"
            "from fhir_bridge.pipelines.prepare import _start_worker, Recipe\n"
            "from fhir_bridge.config import Settings\n"
            f"_start_worker(Recipe(Settings(), {source!r}, 'RV3'))\n"
            "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('fhir_bridge.store.')"
            f" and m not in {sorted(_PURE_STORE_MODULES)!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_run_that_fails_after_its_workers_started_leaves_none_behind(tmp_path, validator, monkeypatch):
    """`run_import` starts the workers before it builds its adapter (they take a moment to start);
    if what follows fails (here: the store refuses to open the run), they are shut down with it."""
    import multiprocessing

    from fhir_bridge.pipelines import sources

    generate("rio", tmp_path / "export", count=20, seed=9)
    monkeypatch.setattr(sources, "PARALLEL_BYTES", 0)
    bridge = Bridge(Settings(data_dir=tmp_path / "store"), validator=validator)
    started = []
    start = PreparePool.start
    monkeypatch.setattr(PreparePool, "start", lambda self: (started.append(self), start(self))[1])

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(bridge.repository, "start_run", refuse)
    try:
        with pytest.raises(OSError, match="disk full"):
            run_import(bridge, "rio", [tmp_path / "export"], organization="RV3", caller=TRUST, quarantine_dir=None,
                       workers=1)
        assert started and started[0]._executor is None
        assert multiprocessing.active_children() == []
    finally:
        bridge.close()


def test_a_broken_mapping_file_stops_the_run_with_one_clear_error(tmp_path, validator, monkeypatch, capfd):
    """The workers start before the importing process builds its adapter, and read the same
    mapping files: a broken one is the importing process's ConfigurationError, naming the file;
    the workers print no traceback of their own and none is left running."""
    import multiprocessing
    import shutil

    from fhir_bridge.errors import ConfigurationError
    from fhir_bridge.pipelines import sources

    generate("rio", tmp_path / "export", count=20, seed=9)
    mappings = tmp_path / "mappings"
    shutil.copytree(Settings().mappings_dir, mappings)
    broken = mappings / "rio" / "care-contact.yaml"
    broken.write_text(broken.read_text() + "\nlists: [unclosed\n")
    monkeypatch.setattr(sources, "PARALLEL_BYTES", 0)
    bridge = Bridge(Settings(data_dir=tmp_path / "store", mappings_dir=mappings), validator=validator)
    try:
        with pytest.raises(ConfigurationError, match="care-contact.yaml"):
            run_import(bridge, "rio", [tmp_path / "export"], organization="RV3", caller=TRUST, quarantine_dir=None,
                       workers=1)
        assert multiprocessing.active_children() == []
        assert "Traceback" not in capfd.readouterr().err
    finally:
        bridge.close()
