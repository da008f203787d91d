"""Loading a submission mapping (mappings/mhsds-out/*.yaml): which FHIR element feeds which field.

The file is checked whole at start-up against its XSD and the vocabulary below, and a mistake
fails with the file and the rule (`mhsds-dialog.yaml: tables.MHS001MPI.fields.Gender: ...`):
every table and field of the schema must be listed (mapped, or `unmapped` with a reason), no field
the schema lacks may be, a required field cannot be unmapped, and every path, code table,
transform, check, parameter and row reference must resolve. Paths may hold `{parameter}`
placeholders (a provider's own identifier system): `bind()` fills them for a run.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping.loader import read_yaml
from fhir_bridge.submission.paths import PathError, compile_path
from fhir_bridge.submission.values import CHECKS, TRANSFORMS
from fhir_bridge.submission.xsd import SubmissionSchema, XsdField, load_schema

__all__ = ["SOURCES", "SourceSpec", "FieldRule", "Alternative", "KeepRule", "TableMapping", "SubmissionMapping",
           "load_submission_mapping", "fill"]

# The kinds of rows, and the row each hangs under: the person's, a referral's, a contact's. The
# DIALOG record hangs under a referral or a contact (`attach`).
SOURCES: dict[str, str | None] = {"header": None, "person": None, "referral": "person", "contact": "referral",
                                  "care-team": "person", "care-plan": "person", "dialog": None}
FILE_KEYS = {"name", "description", "schema", "parameters", "sources", "codes", "tables"}
SOURCE_KEYS = {"type", "patient", "during", "changed", "referral", "contact"}
TABLE_KEYS = {"source", "parent", "each", "attach", "keep", "distinct", "opens", "closes", "dated-by", "fields", "note"}
FIELD_KEYS = {"from", "param", "const", "row", "unmapped", "transform", "codes", "check", "after-period-end", "note"}
KEEP_KEYS = {"from", "in", "not-in", "equals", "reason", "during", "day"}
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9-]*)\}")


@dataclass(frozen=True)
class SourceSpec:
    name: str
    type: str | None                  # FHIR resource type (None: header, the built-in DIALOG record)
    patient: str | None = None        # reference search parameter naming the person
    during: str | None = None         # date search parameter that must overlap the period
    changed: bool = False             # only resources with a version written in the period
    referral: str | None = None       # path to the reference of the referral it belongs to
    contact: str | None = None        # (DIALOG) path to the reference of the contact it was done in


@dataclass(frozen=True)
class Alternative:
    path: str                          # with {placeholders}; compiled when bound
    from_root: bool                    # `/path`: from the resource, not the `each` element
    transform: str | None


@dataclass(frozen=True)
class FieldRule:
    where: str
    xsd: XsdField
    kind: str                          # from | param | const | row | unmapped
    value: Any = None                  # param name, constant, (table, field), or the reason unmapped
    alternatives: tuple[Alternative, ...] = ()
    transforms: tuple[str, ...] = ()
    codes: Mapping[str, str] | None = None
    codes_name: str = ""
    checks: tuple[str, ...] = ()
    blank_after_period_end: bool = False

    @property
    def name(self) -> str:
        return self.xsd.name


@dataclass(frozen=True)
class KeepRule:
    """A condition a row must meet. Period conditions (`during`, `day`) say whether the record is this
    month's at all; the others leave a record out, with `reason`, for the quality report."""

    where: str
    kind: str                          # in | not-in | equals | during | day
    paths: tuple[Alternative, ...]
    values: tuple[str, ...] = ()
    reason: str = ""

    @property
    def is_period(self) -> bool:
        return self.kind in ("during", "day")


@dataclass(frozen=True)
class TableMapping:
    name: str
    source: str
    fields: tuple[FieldRule, ...]      # in the XSD's order
    parent: str | None = None          # a table whose row this one hangs under (left out with it)
    each: str | None = None            # one row per element the path reaches
    attach: str | None = None          # dialog tables: referral | contact
    keep: tuple[KeepRule, ...] = ()
    distinct: bool = False             # identical rows of one person are sent once
    opens: str | None = None           # referral table: the fields giving the days it is open
    closes: str | None = None
    dated_by: str | None = None        # contact table: the field giving its day

    def field(self, name: str) -> FieldRule:
        return next(f for f in self.fields if f.name == name)


@dataclass(frozen=True)
class SubmissionMapping:
    name: str
    file: str
    schema: SubmissionSchema
    parameters: tuple[str, ...]
    sources: Mapping[str, SourceSpec]
    tables: tuple[TableMapping, ...]   # in the XSD's order, the header first

    def table(self, name: str) -> TableMapping:
        return next(t for t in self.tables if t.name == name)

    def tables_of(self, source: str) -> list[TableMapping]:
        return [t for t in self.tables if t.source == source]


def load_submission_mapping(path: Path, *, search_parameters: Callable[[str, str], str | None] | None = None
                            ) -> SubmissionMapping:
    """Load and check one mapping file. `search_parameters(type, code)` -> the parameter's type
    (`reference`, `date` ...) or None, to check the sources' parameters against the store's."""
    return _Loader(path, search_parameters).load()


class _Loader:
    def __init__(self, path: Path, search_parameters):
        self.path = Path(path)
        self.search_parameters = search_parameters

    def fail(self, where: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {where}: {message}", location=str(self.path))

    def load(self) -> SubmissionMapping:
        data = read_yaml(self.path, "the mapping")
        if not isinstance(data, dict):
            raise self.fail("file", "a mapping is a YAML mapping")
        self.unknown(data, FILE_KEYS, "file")
        for key in ("name", "schema", "tables"):
            if key not in data:
                raise self.fail("file", f"`{key}` is required")
        schema = load_schema(self.path.parent / str(data["schema"]))
        self.parameters = tuple(self.dict(data.get("parameters") or {}, "parameters"))
        self.codes = {name: self.code_table(name, table) for name, table in self.dict(data.get("codes") or {}, "codes").items()}
        sources = {name: self.source(name, spec) for name, spec in self.dict(data.get("sources") or {}, "sources").items()}
        for name in SOURCES:
            if name not in ("header",) and name not in sources:
                raise self.fail("sources", f"source {name!r} is not described")
        sources["header"] = SourceSpec("header", None)
        tables_data = self.dict(data["tables"], "tables")
        missing = [t.name for t in schema.tables if t.name not in tables_data]
        extra = [name for name in tables_data if schema.table(name) is None]
        if missing or extra:
            raise self.fail("tables", f"must list the schema's tables exactly: missing {missing}, not in the schema {extra}")
        tables = []
        for xsd_table in schema.tables:
            tables.append(self.table(xsd_table, tables_data[xsd_table.name], sources, {t.name: t for t in tables}))
        if tables[0].source != "header" or not any(t.source == "person" for t in tables):
            raise self.fail("tables", "the schema's first table is the header (source: header), and one table is the person's")
        return SubmissionMapping(str(data["name"]), str(self.path), schema, self.parameters, sources, tuple(tables))

    # -- parts ----------------------------------------------------------------------------------
    def dict(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "expected a mapping")
        return value

    def unknown(self, data: dict, allowed: set[str], where: str) -> None:
        extra = sorted(str(k) for k in set(data) - allowed)  # str: YAML 1.1 reads `on`, `no` as booleans
        if extra:
            raise self.fail(where, f"unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")

    def code_table(self, name: str, table) -> dict[str, str]:
        table = self.dict(table, f"codes.{name}")
        if not table or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
            raise self.fail(f"codes.{name}", "a code table maps FHIR codes to MHSDS codes, both quoted text")
        return table

    def source(self, name: str, spec) -> SourceSpec:
        where = f"sources.{name}"
        spec = self.dict(spec, where)
        self.unknown(spec, SOURCE_KEYS, where)
        if name not in SOURCES or name == "header":
            raise self.fail(where, f"unknown source (one of {', '.join(s for s in SOURCES if s != 'header')})")
        if name == "dialog":
            if "type" in spec or "patient" in spec or "during" in spec:
                raise self.fail(where, "the DIALOG record is built in: it takes `referral` and `contact` paths only")
        elif not isinstance(spec.get("type"), str):
            raise self.fail(where, "`type` (a FHIR resource type) is required")
        resource_type = spec.get("type")
        if name != "person" and resource_type:
            if not spec.get("patient"):
                raise self.fail(where, "`patient` (the reference search parameter naming the person) is required")
            self.search_parameter(where, resource_type, spec["patient"], "reference")
        if spec.get("during"):
            self.search_parameter(where, resource_type, spec["during"], "date")
        for key in ("referral", "contact"):
            if spec.get(key) is not None:
                self.path_text(spec[key], f"{where}.{key}")
        if "changed" in spec and not isinstance(spec["changed"], bool):
            raise self.fail(where, "`changed` is true or false")
        return SourceSpec(name, resource_type, spec.get("patient"), spec.get("during"), bool(spec.get("changed")),
                          spec.get("referral"), spec.get("contact"))

    def search_parameter(self, where: str, resource_type: str, code: str, kind: str) -> None:
        if self.search_parameters is None:
            return
        found = self.search_parameters(resource_type, code)
        if found != kind:
            raise self.fail(where, f"{resource_type} has no {kind} search parameter {code!r}"
                            + (f" (it is a {found} parameter)" if found else ""))

    def table(self, xsd_table, data, sources: dict[str, SourceSpec], earlier: dict[str, TableMapping]) -> TableMapping:
        where = f"tables.{xsd_table.name}"
        data = self.dict(data, where)
        self.unknown(data, TABLE_KEYS, where)
        source = data.get("source")
        if source not in SOURCES:
            raise self.fail(where, f"`source` must be one of {', '.join(SOURCES)}")
        if (source == "header") != (not xsd_table.repeats):
            raise self.fail(where, "the header (the schema's one non-repeating table) and only it has source: header")
        attach = data.get("attach")
        if (source == "dialog") != (attach is not None) or attach not in (None, "referral", "contact"):
            raise self.fail(where, "`attach: referral | contact` is given for DIALOG tables, and only for them")
        parent = data.get("parent")
        if parent is not None and (parent not in earlier or earlier[parent].source != source):
            raise self.fail(where, f"`parent` {parent!r} must be an earlier table of the same source")
        each = data.get("each")
        if each is not None:
            self.path_text(each, f"{where}.each")
        fields_data = self.dict(data.get("fields") or {}, f"{where}.fields")
        missing = [f.name for f in xsd_table.fields if f.name not in fields_data]
        extra = [name for name in fields_data if name not in xsd_table.field_names]
        if missing or extra:
            raise self.fail(f"{where}.fields", f"must list the schema's fields exactly: missing {missing}, "
                            f"not in the schema {extra}")
        ancestors = self.ancestors(source, attach, earlier) | {xsd_table.name}
        fields = tuple(self.field(f"{where}.fields.{f.name}", f, fields_data[f.name], ancestors, earlier, xsd_table)
                       for f in xsd_table.fields)
        names = set(xsd_table.field_names)
        for key in ("opens", "closes", "dated-by"):
            if data.get(key) is not None and data[key] not in names:
                raise self.fail(where, f"`{key}` must name a field of this table, not {data[key]!r}")
        if source == "referral" and parent is None and not (data.get("opens") and data.get("closes")):
            raise self.fail(where, "the referral table says which fields hold the days it is open (`opens`, `closes`)")
        if source == "contact" and parent is None and not data.get("dated-by"):
            raise self.fail(where, "the contact table says which field holds its day (`dated-by`)")
        keep = tuple(self.keep(f"{where}.keep[{n}]", rule) for n, rule in enumerate(data.get("keep") or ()))
        distinct = data.get("distinct", False)
        if not isinstance(distinct, bool):
            raise self.fail(where, "`distinct` is true or false")
        return TableMapping(xsd_table.name, source, fields, parent, each, attach, keep, distinct,
                            data.get("opens"), data.get("closes"), data.get("dated-by"))

    def ancestors(self, source: str, attach: str | None, earlier: dict[str, TableMapping]) -> set[str]:
        """The tables whose rows a row of `source` may read with `row:` (those it hangs under)."""
        kinds, kind = set(), attach if source == "dialog" else source
        while kind is not None:
            kinds.add(kind)
            kind = SOURCES[kind]
        return {name for name, table in earlier.items() if table.source in kinds}

    def field(self, where: str, xsd: XsdField, rule, ancestors: set[str], earlier: dict[str, TableMapping],
              xsd_table) -> FieldRule:
        rule = self.dict(rule, where)
        self.unknown(rule, FIELD_KEYS, where)
        kinds = [k for k in ("from", "param", "const", "row", "unmapped") if k in rule]
        if len(kinds) != 1:
            raise self.fail(where, "exactly one of from, param, const, row, unmapped")
        kind = kinds[0]
        if kind == "unmapped":
            if xsd.required:
                raise self.fail(where, "the schema requires this field: it cannot be unmapped")
            if not isinstance(rule["unmapped"], str) or not rule["unmapped"].strip():
                raise self.fail(where, "`unmapped` says why no source feeds the field")
            return FieldRule(where, xsd, "unmapped", rule["unmapped"])
        transforms = rule.get("transform") or ()
        transforms = (transforms,) if isinstance(transforms, str) else tuple(transforms)
        checks = rule.get("check") or ()
        checks = (checks,) if isinstance(checks, str) else tuple(checks)
        for name in transforms:
            if name not in TRANSFORMS:
                raise self.fail(where, f"unknown transform {name!r} (known: {', '.join(sorted(TRANSFORMS))})")
        for name in checks:
            if name not in CHECKS:
                raise self.fail(where, f"unknown check {name!r} (known: {', '.join(sorted(CHECKS))})")
        codes_name = rule.get("codes") or ""
        if codes_name and codes_name not in self.codes:
            raise self.fail(where, f"unknown code table {codes_name!r}")
        after = rule.get("after-period-end")
        if after not in (None, "blank"):
            raise self.fail(where, "`after-period-end: blank` is the one choice (sent as at the period end)")
        common = dict(transforms=transforms, codes=self.codes.get(codes_name), codes_name=codes_name, checks=checks,
                      blank_after_period_end=after == "blank")
        if kind == "from":
            return FieldRule(where, xsd, "from", alternatives=self.alternatives(rule["from"], where), **common)
        if kind == "param":
            if rule["param"] not in self.parameters:
                raise self.fail(where, f"parameter {rule['param']!r} is not declared under `parameters`")
            return FieldRule(where, xsd, "param", rule["param"], **common)
        if kind == "const":
            value = rule["const"]
            if not isinstance(value, str):
                raise self.fail(where, "a constant is quoted text")
            if problem := xsd.check(value):
                raise self.fail(where, f"the constant {value!r} {problem}")
            return FieldRule(where, xsd, "const", value, **common)
        table_name, dot, field_name = str(rule["row"]).partition(".")
        if table_name == xsd_table.name:
            known = xsd_table.field_names
        else:
            known = tuple(f.name for f in earlier[table_name].fields) if table_name in earlier else ()
        if not dot or table_name not in ancestors or field_name not in known:
            raise self.fail(where, f"`row: {rule['row']}` must name a field of a table this row hangs under "
                            f"({', '.join(sorted(ancestors))})")
        if table_name == xsd_table.name and xsd_table.field_names.index(field_name) >= xsd_table.field_names.index(xsd.name):
            raise self.fail(where, f"`row: {rule['row']}` reads a field of its own row: only an earlier one")
        return FieldRule(where, xsd, "row", (table_name, field_name), **common)

    def alternatives(self, value, where: str) -> tuple[Alternative, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(where, "`from` needs a path, or a list of them")
        found = []
        for item in items:
            if isinstance(item, dict):
                self.unknown(item, {"path", "transform"}, where)
                text, transform = item.get("path"), item.get("transform")
                if transform is not None and transform not in TRANSFORMS:
                    raise self.fail(where, f"unknown transform {transform!r}")
            else:
                text, transform = item, None
            text = self.path_text(text, where)
            found.append(Alternative(text.removeprefix("/"), text.startswith("/"), transform))
        return tuple(found)

    def path_text(self, text, where: str) -> str:
        if not isinstance(text, str):
            raise self.fail(where, "a path is text")
        for name in _PLACEHOLDER.findall(text):
            if name not in self.parameters:
                raise self.fail(where, f"placeholder {{{name}}} is not a declared parameter")
        try:
            compile_path(text.removeprefix("/"))
        except PathError as exc:
            raise self.fail(where, str(exc)) from exc
        return text

    def keep(self, where: str, rule) -> KeepRule:
        rule = self.dict(rule, where)
        self.unknown(rule, KEEP_KEYS, where)
        if "during" in rule or "day" in rule:
            if len(rule) != 1:
                raise self.fail(where, "a period condition is `during: [start, end]` or `day: path` alone")
            kind = "during" if "during" in rule else "day"
            paths = rule[kind] if kind == "during" else [rule[kind]]
            if not isinstance(paths, list) or len(paths) != (2 if kind == "during" else 1):
                raise self.fail(where, "`during` takes [start path, end path]; `day` one path")
            return KeepRule(where, kind, tuple(self.alternatives(p, where)[0] for p in paths))
        kinds = [k for k in ("in", "not-in", "equals") if k in rule]
        if len(kinds) != 1 or "from" not in rule:
            raise self.fail(where, "a condition is `from` with one of in, not-in, equals")
        kind = kinds[0]
        values = rule[kind] if kind != "equals" else [rule[kind]]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.fail(where, f"`{kind}` takes quoted text")
        for value in values:
            for name in _PLACEHOLDER.findall(value):
                if name not in self.parameters:
                    raise self.fail(where, f"placeholder {{{name}}} is not a declared parameter")
        reason = rule.get("reason") or f"{kind} {', '.join(values)} not met ({{value}})"
        return KeepRule(where, kind, self.alternatives(rule["from"], where), tuple(values), str(reason))


def fill(text: str, parameters: Mapping[str, str]) -> str:
    """`{provider}` and the like replaced by the run's values."""
    return _PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)]), text)
