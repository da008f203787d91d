"""Writing a submission: the tables as CSV files, the XML file from them, and its validation.

Rows arrive person by person but the XML holds table after table, so each table is spooled to its
own CSV file as it grows (the CSV form a database loads), and the XML is then written from those
files in the schema's order, streamed: memory holds one row at a time however many there are. The XML is validated against the XSD by a streaming parse (elements are dropped as
they are checked) before the file is declared done; the caller writes it under a temporary name
and renames it only when valid.
"""
from __future__ import annotations

import csv
import hashlib
from xml.sax.saxutils import escape, quoteattr
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from fhir_bridge.submission.rows import Row
from fhir_bridge.submission.xsd import SubmissionSchema

__all__ = ["TableFiles", "write_xml", "validate_xml", "read_table", "file_sha256"]

_BUFFER = 1 << 20


class TableFiles:
    """One CSV file per table (header: the field names), written as rows come."""

    def __init__(self, schema: SubmissionSchema, folder: Path):
        self.schema = schema
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.counts = {t.name: 0 for t in schema.tables}
        self._files = {}
        self._writers = {}
        for table in schema.tables:
            handle = open(folder / f"{table.name}.csv", "w", encoding="utf-8", newline="", buffering=_BUFFER)
            self._files[table.name] = handle
            self._writers[table.name] = csv.writer(handle, lineterminator="\n")
            self._writers[table.name].writerow(table.field_names)

    def write(self, table: str, rows: list[Row]) -> None:
        self._writers[table].writerows(row.values for row in rows)
        self.counts[table] += len(rows)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.csv"

    def content_sha256(self, skip: dict[str, str]) -> str:
        """A hash of every table's rows, without the fields in `skip` (table -> field: the creation
        time): two submissions with the same hash sent the same data."""
        digest = hashlib.sha256()
        for table in self.schema.tables:
            drop = table.field_names.index(skip[table.name]) if table.name in skip else None
            digest.update(table.name.encode() + b"\0")
            for values in read_table(self.path(table.name)):
                kept = values if drop is None else values[:drop] + values[drop + 1:]
                digest.update("\x1f".join(kept).encode() + b"\n")
        return digest.hexdigest()


def read_table(path: Path) -> Iterator[list[str]]:
    """The rows of a table's CSV file, without the header."""
    with open(path, encoding="utf-8", newline="", buffering=_BUFFER) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        yield from reader


def write_xml(schema: SubmissionSchema, tables: TableFiles, target: Path) -> None:
    """The XML file, from the tables' CSV files, in the schema's order; empty values are left out.
    Written as text, a row a line: every value passed its field's XSD type before it reached a
    table (no character XML cannot carry), so escaping is all it needs, and building an lxml
    element per row took longer than everything else the writer does. validate_xml then checks
    the file with libxml2."""
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in schema.root_attributes.items())
    with open(target, "w", encoding="utf-8", newline="\n", buffering=_BUFFER) as out:
        out.write(f"<?xml version='1.0' encoding='UTF-8'?>\n<{schema.root}{attributes}>\n")
        for table in schema.tables:
            opening, closing = f"<{table.name}>", f"</{table.name}>\n"
            fields = [(f"<{name}>", f"</{name}>") for name in table.field_names]
            for values in read_table(tables.path(table.name)):
                out.write(opening + "".join(start + escape(value) + end
                                            for (start, end), value in zip(fields, values) if value) + closing)
        out.write(f"</{schema.root}>\n")


def validate_xml(schema: SubmissionSchema, path: Path) -> str | None:
    """None when the file is valid against the schema, else the first problem. A streaming parse
    with the schema attached (libxml2 names the element and the value; it gives no line for a
    schema error met while streaming); each row is dropped once checked. The schema's keys and key
    references are checked here as the rows pass, in sets of key values (see the XSD's note)."""
    keys: dict[str, set[str]] = {k.name: set() for k in schema.keys if k.refer is None}
    checks: dict[str, list] = {}
    for constraint in schema.keys:
        checks.setdefault(constraint.table, []).append(constraint)
    try:
        rows = [table.name for table in schema.tables]   # events for rows only, not for every field
        for _, element in etree.iterparse(str(path), events=("end",), tag=rows, schema=schema.xml_schema,
                                          resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True):
            parent = element.getparent()
            for constraint in checks.get(element.tag, ()):   # its keys and references
                value = element.findtext(constraint.field)
                if constraint.refer is None:
                    if value in keys[constraint.name]:
                        return f"{element.tag}.{constraint.field} {value!r} appears twice (key {constraint.name})"
                    keys[constraint.name].add(value)
                elif value is not None and value not in keys[constraint.refer]:
                    return (f"{element.tag}.{constraint.field} {value!r} matches no row before it "
                            f"(key reference {constraint.name})")
            element.clear()
            while element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        return exc.msg
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_BUFFER), b""):
            digest.update(chunk)
    return digest.hexdigest()
