"""The outbound table: one row per peer and resource version, replaced as attempts go on; and a
database from before it (schema version 3) gains it in place."""
from __future__ import annotations

from sqlalchemy import inspect, insert

from fhir_bridge.store import schema
from fhir_bridge.store.migrations import MIGRATIONS, migrate
from fhir_bridge.store.outbound_records import OutboundMessage
from fhir_bridge.store.repository import Repository


class NoIndex:
    def rows(self, resource: dict) -> dict[str, list[dict]]:
        return {}


def message(state: str, attempts: int, version: int = 1, peer: str = "mllp:epr:2575") -> OutboundMessage:
    return OutboundMessage(peer, "QuestionnaireResponse", "qr-1", version, f"abc.{version}", state, attempts, 10 * attempts)


def test_a_version_has_one_row_per_peer_and_earlier_versions_make_a_correction(database):
    repo = Repository(database, NoIndex())
    repo.record_outbound(message("pending", 1))
    repo.record_outbound(message("accepted", 2))
    repo.record_outbound(message("written", 1, peer="file:RAT"))
    assert repo.outbound_message("mllp:epr:2575", "QuestionnaireResponse", "qr-1", 1) == message("accepted", 2)
    assert [m.peer for m in repo.outbound_messages(resource_id="qr-1")] == ["file:RAT", "mllp:epr:2575"]
    assert repo.outbound_message("mllp:epr:2575", "QuestionnaireResponse", "qr-1", 2) is None
    assert repo.taken_earlier_version("mllp:epr:2575", "QuestionnaireResponse", "qr-1", 2)
    assert not repo.taken_earlier_version("mllp:epr:2575", "QuestionnaireResponse", "qr-1", 1)
    repo.record_outbound(message("error", 1, peer="mllp:other:1"))
    assert not repo.taken_earlier_version("mllp:other:1", "QuestionnaireResponse", "qr-1", 2)  # AE is not taken


def test_a_version_3_database_gains_the_outbound_table(database_url, tmp_path):
    from fhir_bridge.store.database import open_database

    database = open_database(database_url, tmp_path)
    try:
        older = [t for t in schema.metadata.sorted_tables if t not in schema.OUTBOUND_TABLES]
        with database.connect(write=True) as connection, connection.begin():
            schema.metadata.create_all(connection, tables=older)
            connection.execute(insert(schema.schema_version),
                               [{"version": v, "applied": 0, "description": "old"} for v in (1, 2, 3)])
        assert migrate(database) == [m.version for m in MIGRATIONS if m.version > 3]
        assert schema.outbound_messages.name in inspect(database.engine).get_table_names()
    finally:
        database.dispose()
