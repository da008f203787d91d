"""The submission's XSD as data: its tables (row elements), their fields in order, and a Python
check per field compiled from the field's simple type.

The XSD is the one description of the file's shape. The mapping loader checks every mapped field
against it, and every value is checked with the same rules before it is written, so a value the
schema would refuse is never written (a record is left out, or an optional value blanked, and the
data quality report says so). Only the XSD constructs the project's schema uses are understood;
anything else fails at load, naming the file, rather than being silently skipped.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from lxml import etree

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.formats.xml import hardened_parser

__all__ = ["XsdField", "XsdTable", "XsdKey", "SubmissionSchema", "load_schema"]

XS = "{http://www.w3.org/2001/XMLSchema}"
# Characters XML 1.0 cannot carry at all: a value holding one would make the file unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Check = Callable[[str], "str | None"]   # a value -> why it is not valid, or None


@dataclass(frozen=True)
class XsdField:
    name: str
    required: bool
    type_name: str
    check: Check


@dataclass(frozen=True)
class XsdTable:
    name: str                       # the row element, e.g. MHS001MPI
    fields: tuple[XsdField, ...]    # in the schema's order
    repeats: bool                   # False for the header (exactly one row)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class XsdKey:
    """An identity constraint: xs:key (`refer` None) or xs:keyref naming the key it refers to."""

    name: str
    table: str
    field: str
    refer: str | None = None


@dataclass(frozen=True)
class SubmissionSchema:
    path: Path
    root: str                          # the document element
    root_attributes: dict[str, str]    # its fixed attributes (schemaVersion)
    tables: tuple[XsdTable, ...]       # in document order
    xml_schema: etree.XMLSchema        # validates a written file: everything but the keys
    keys: tuple[XsdKey, ...] = ()      # the keys and key references, checked while streaming

    def table(self, name: str) -> XsdTable | None:
        return next((t for t in self.tables if t.name == name), None)


def load_schema(path: Path) -> SubmissionSchema:
    """Read the XSD; ConfigurationError naming the file for anything it cannot use."""
    try:
        document = etree.parse(str(path), hardened_parser())
        etree.XMLSchema(document)   # the whole schema, keys included, must be valid XSD
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise ConfigurationError(f"{path}: not a usable XML schema: {exc}", location=str(path)) from exc
    top = document.getroot()
    simple = {t.get("name"): t for t in top.findall(f"{XS}simpleType")}
    complex_ = {t.get("name"): t for t in top.findall(f"{XS}complexType")}
    roots = top.findall(f"{XS}element")
    if len(roots) != 1:
        raise _fail(path, f"expected one top-level element, found {len(roots)}")
    root = roots[0]
    checks = {name: _compile_simple(path, name, node) for name, node in simple.items()}
    tables = []
    for row in _sequence(path, root.find(f"{XS}complexType"), root.get("name")):
        type_name = row.get("type")
        if type_name not in complex_:
            raise _fail(path, f"row element {row.get('name')} has no complexType {type_name!r}")
        fields = []
        for node in _sequence(path, complex_[type_name], type_name):
            field_type = node.get("type")
            if field_type not in checks:
                raise _fail(path, f"{type_name}.{node.get('name')}: type {field_type!r} is not a simpleType of this schema")
            fields.append(XsdField(node.get("name"), node.get("minOccurs", "1") != "0", field_type, checks[field_type]))
        tables.append(XsdTable(row.get("name"), tuple(fields), row.get("maxOccurs", "1") != "1"))
    attributes = {a.get("name"): a.get("fixed") for a in root.iter(f"{XS}attribute") if a.get("fixed") is not None}
    keys = _identity_constraints(path, root, tables)
    for constraint in root.findall(f"{XS}key") + root.findall(f"{XS}keyref"):
        root.remove(constraint)   # libxml2 checks the rest; files.validate_xml these
    return SubmissionSchema(path, root.get("name"), attributes, tuple(tables), etree.XMLSchema(document), keys)


def _identity_constraints(path: Path, root, tables: list[XsdTable]) -> tuple[XsdKey, ...]:
    """The root's xs:key and xs:keyref, each a row table and one of its fields. A reference must
    name a key of an earlier table: the file is checked in one pass, parents first."""
    order = {t.name: n for n, t in enumerate(tables)}
    found: list[XsdKey] = []
    for node in [*root.findall(f"{XS}key"), *root.findall(f"{XS}keyref")]:
        name, selector, fields = node.get("name"), node.find(f"{XS}selector"), node.findall(f"{XS}field")
        table = selector.get("xpath") if selector is not None else None
        if table not in order or len(fields) != 1 or fields[0].get("xpath") not in tables[order[table]].field_names:
            raise _fail(path, f"{name}: a key or key reference selects a row table and one of its fields")
        found.append(XsdKey(name, table, fields[0].get("xpath"), node.get("refer")))
    keys = {k.name: k for k in found if k.refer is None}
    for ref in (k for k in found if k.refer is not None):
        if ref.refer not in keys or order[keys[ref.refer].table] >= order[ref.table]:
            raise _fail(path, f"keyref {ref.name}: refers to {ref.refer!r}, which must be a key of an earlier table")
    return tuple(found)


def _sequence(path: Path, complex_type, owner: str) -> list:
    sequence = complex_type.find(f"{XS}sequence") if complex_type is not None else None
    if sequence is None:
        raise _fail(path, f"{owner}: expected a complexType holding one xs:sequence")
    elements = [e for e in sequence if isinstance(e.tag, str)]
    if any(e.tag != f"{XS}element" for e in elements):
        raise _fail(path, f"{owner}: a sequence here holds elements only")
    return elements


def _compile_simple(path: Path, name: str, node) -> Check:
    restriction = node.find(f"{XS}restriction")
    if restriction is None:
        raise _fail(path, f"simpleType {name}: only xs:restriction is understood")
    base = _BASES.get(restriction.get("base"))
    if base is None:
        raise _fail(path, f"simpleType {name}: base {restriction.get('base')!r} is not one of {', '.join(_BASES)}")
    enumeration, patterns, lengths = [], [], {}
    for facet in restriction:
        if not isinstance(facet.tag, str):
            continue
        kind, value = facet.tag.removeprefix(XS), facet.get("value")
        if kind == "enumeration":
            enumeration.append(value)
        elif kind == "pattern":
            try:
                patterns.append(re.compile(value))
            except re.error as exc:
                raise _fail(path, f"simpleType {name}: pattern {value!r}: {exc}") from exc
        elif kind in ("maxLength", "minLength"):
            lengths[kind] = int(value)
        else:
            raise _fail(path, f"simpleType {name}: facet xs:{kind} is not understood")
    allowed = frozenset(enumeration)
    shown = ", ".join(enumeration)

    def check(value: str) -> str | None:
        if _NOT_XML.search(value):
            return "holds a character XML cannot carry"
        if allowed and value not in allowed:
            return f"is not one of {shown}"
        for pattern in patterns:  # XSD patterns match the whole value
            if not pattern.fullmatch(value):
                return f"does not have the form {pattern.pattern}"
        if len(value) > lengths.get("maxLength", len(value)) or len(value) < lengths.get("minLength", 0):
            return "has the wrong length"
        return base(value)

    return check


def _calendar(parse: Callable[[str], object], what: str) -> Check:
    def check(value: str) -> str | None:
        try:
            parsed = parse(value)
        except ValueError:
            return f"is not a {what}"
        return f"is not a {what} without an offset" if getattr(parsed, "tzinfo", None) else None
    return check


_BASES: dict[str, Check] = {
    "xs:string": lambda value: None,
    "xs:date": _calendar(date.fromisoformat, "date"),
    "xs:time": _calendar(time.fromisoformat, "time"),
    "xs:dateTime": _calendar(datetime.fromisoformat, "date and time"),
}


def _fail(path: Path, message: str) -> ConfigurationError:
    return ConfigurationError(f"{path}: {message}", location=str(path))
