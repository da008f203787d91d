"""Outbound HL7 v2 mappings: a record of plain values -> the segments and fields of one message.

The mirror of mapping/ for the other direction: a mapping file (mappings/hl7-out/*.yaml, vocabulary
in mappings/hl7-out/README.md) lists the message's segments and, per field, where its value comes
from (`from` a record name, `const`, `param`, `set-id`), optionally through a code table (`codes`).
`each` repeats a field (PID-3 identifiers) or a run of segments (an OBX per DIALOG item) over a
list in the record. The file is checked whole at load - keys, record names, parameters, code
tables, HL7 paths, and that hl7apy can place every segment and field in the message structure -
so a mistake fails at start-up naming the file and the rule. The record is built in Python by the
caller (outputs/dialog_oru.py): values already in HL7 form (TS dates, table codes).
"""
from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from fhir_bridge.errors import ConfigurationError, Unprocessable
from fhir_bridge.formats.hl7v2_build import Components, SegmentValues, build_message, check_structure
from fhir_bridge.mapping.loader import read_yaml

__all__ = ["OutboundMapping", "RecordShape", "load_outbound_mapping"]

# Record names a mapping may read: a plain value (None), or a list of elements with these names.
RecordShape = Mapping[str, Union[frozenset[str], None]]

FILE_KEYS = {"name", "description", "message", "version", "parameters", "codes", "segments"}
SEGMENT_KEYS = {"segment", "in", "when", "rules", "note"}
EACH_KEYS = {"each", "segments", "note"}
RULE_KEYS = {"to", "from", "const", "param", "set-id", "codes", "each", "rules", "note"}
VALUE_KEYS = ("from", "const", "param", "set-id")
_PATH = re.compile(r"([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?(?:\.(\d+))?\Z")


@dataclass(frozen=True)
class FieldRule:
    where: str                           # the rule's place in the file, for messages
    field: int
    position: tuple[int, ...]            # () whole field, (c,) component, (c, s) subcomponent
    kind: str = ""                       # from | const | param | set-id ("" for an `each` rule)
    value: str = ""                      # the record name, the literal or the parameter name
    codes: Mapping[str, str] | None = None
    codes_name: str = ""
    each: str = ""                       # repeat the field once per element of this record list
    rules: tuple[FieldRule, ...] = ()    # for `each`: the components of one repetition


@dataclass(frozen=True)
class SegmentRule:
    where: str
    segment_id: str
    groups: tuple[str, ...]
    when: str                            # a record name that must have a value, or ""
    rules: tuple[FieldRule, ...]


@dataclass(frozen=True)
class EachSegments:
    where: str
    each: str                            # a record list: its segments once per element
    segments: tuple[Union[SegmentRule, "EachSegments"], ...]


@dataclass(frozen=True)
class OutboundMapping:
    name: str
    file: str
    structure: str                       # hl7apy's message structure, e.g. ORU_R01
    version: str
    parameters: tuple[str, ...]
    segments: tuple[Union[SegmentRule, EachSegments], ...]

    def build(self, record: Mapping[str, Any], parameters: Mapping[str, str], *, what: str = "message") -> str:
        """The message as ER7 text (CR between segments), built and strictly validated by hl7apy.
        Unprocessable, naming `what`, when a value has no entry in its code table or hl7apy
        refuses the message."""
        missing = [p for p in self.parameters if p not in parameters]
        if missing:
            raise ConfigurationError(f"{self.file}: parameter {missing[0]!r} not given")
        run = _Run(parameters)
        run.entries(self.segments, ChainMap(dict(record)))
        if run.problems:
            raise Unprocessable(f"{what}: " + "; ".join(run.problems))
        return build_message(self.structure, self.version, run.built, what=what)


class _Run:
    """One message being assembled: segments in order, OBX-1-style set ids, problems found."""

    def __init__(self, parameters: Mapping[str, str]):
        self.parameters = parameters
        self.built: list[SegmentValues] = []
        self.set_ids: dict[str, int] = {}
        self.problems: list[str] = []

    def entries(self, entries, scope: ChainMap) -> None:
        for entry in entries:
            if isinstance(entry, EachSegments):
                for element in scope.get(entry.each) or ():
                    self.entries(entry.segments, scope.new_child(element))
            elif not entry.when or _present(scope.get(entry.when)):
                self.segment(entry, scope)

    def segment(self, rule: SegmentRule, scope: ChainMap) -> None:
        set_id = self.set_ids[rule.segment_id] = self.set_ids.get(rule.segment_id, 0) + 1
        fields: dict[int, list[Components]] = {}
        for field_rule in rule.rules:
            if field_rule.each:
                repetitions = [self.components(field_rule.rules, scope.new_child(element), set_id)
                               for element in scope.get(field_rule.each) or ()]
                fields.setdefault(field_rule.field, []).extend(r for r in repetitions if r)
                continue
            value = self.value(field_rule, scope, set_id)
            if value:
                first = fields.setdefault(field_rule.field, [{}])
                _put(first[0], field_rule.position, value)
        self.built.append(SegmentValues(rule.segment_id, rule.groups, fields))

    def components(self, rules: tuple[FieldRule, ...], scope: ChainMap, set_id: int) -> Components:
        components: Components = {}
        for rule in rules:
            value = self.value(rule, scope, set_id)
            if value:
                _put(components, rule.position, value)
        return components

    def value(self, rule: FieldRule, scope: ChainMap, set_id: int) -> str:
        if rule.kind == "const":
            value: Any = rule.value
        elif rule.kind == "param":
            value = self.parameters[rule.value]
        elif rule.kind == "set-id":
            value = str(set_id)
        else:
            value = scope.get(rule.value)
        if not _present(value):
            return ""
        value = str(value)
        if rule.codes is not None:
            if value not in rule.codes:
                self.problems.append(f"{rule.where}: no entry for {value!r} in code table {rule.codes_name!r}")
                return ""
            value = rule.codes[value]
        return value


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != []


def _put(components: Components, position: tuple[int, ...], value: str) -> None:
    if not position:  # the whole field: one component
        components[1] = value
    elif len(position) == 1:
        components[position[0]] = value
    else:
        sub = components.setdefault(position[0], {})
        if isinstance(sub, dict):
            sub[position[1]] = value


# -- loading -------------------------------------------------------------------------------------
def load_outbound_mapping(path: str | Path, record: RecordShape) -> OutboundMapping:
    """Read and check one outbound mapping file against the record its caller builds."""
    path = Path(path)
    return _Loader(path, record).load(read_yaml(path, "outbound mapping"))


class _Loader:
    def __init__(self, path: Path, record: RecordShape):
        self.path = path
        self.record = record
        self.parameters: dict[str, Any] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.placements: list[tuple[tuple[str, ...], str, list[int]]] = []

    def fail(self, where: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {where}: {message}", location=str(self.path))

    def load(self, data: Any) -> OutboundMapping:
        top = self._mapping(data, "top level", FILE_KEYS)
        for key in ("name", "message", "version"):
            if not isinstance(top.get(key), str) or not top[key]:
                raise self.fail(key, f"`{key}` must be a non-empty string (quote a version: \"2.4\")")
        self.parameters = self._mapping(top.get("parameters") or {}, "parameters", None)
        self.codes = {name: self._table(name, table)
                      for name, table in self._mapping(top.get("codes") or {}, "codes", None).items()}
        segments = top.get("segments")
        if not isinstance(segments, list) or not segments:
            raise self.fail("segments", "list the message's segments, MSH first")
        entries = self._entries(segments, "segments", frozenset())
        first = entries[0]
        if not isinstance(first, SegmentRule) or first.segment_id != "MSH":
            raise self.fail("segments[0]", "the first segment must be MSH")
        try:
            check_structure(top["message"], top["version"], self.placements)
        except ConfigurationError as exc:
            raise self.fail("segments", exc.message) from exc
        return OutboundMapping(top["name"], str(self.path), top["message"], top["version"],
                               tuple(self.parameters), entries)

    def _mapping(self, value: Any, where: str, allowed: set[str] | None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping of keys, found {type(value).__name__}")
        if allowed is not None and (unknown := sorted(set(value) - allowed)):
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        return value

    def _table(self, name: str, value: Any) -> dict[str, str]:
        table = self._mapping(value, f"codes.{name}", None)
        if not table or not all(isinstance(v, str) for v in table.values()):
            raise self.fail(f"codes.{name}", "a code table maps each value to the text to send (quote YAML's yes/no)")
        return {str(k): v for k, v in table.items()}

    def _entries(self, raw: list, where: str, element: frozenset[str]) -> tuple:
        return tuple(self._entry(value, f"{where}[{i}]", element) for i, value in enumerate(raw))

    def _entry(self, value: Any, where: str, element: frozenset[str]):
        if isinstance(value, dict) and "each" in value:
            spec = self._mapping(value, where, EACH_KEYS)
            each = self._list_name(spec["each"], f"{where}.each")
            if not isinstance(spec.get("segments"), list) or not spec["segments"]:
                raise self.fail(where, "`each` repeats a non-empty list of `segments`")
            return EachSegments(where, each, self._entries(spec["segments"], f"{where}.segments", self.record[each]))
        spec = self._mapping(value, where, SEGMENT_KEYS)
        segment_id = spec.get("segment")
        if not isinstance(segment_id, str) or not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment_id):
            raise self.fail(where, "`segment` must be a segment id such as PID")
        where = f"{where} ({segment_id})"
        groups = tuple(g for g in str(spec.get("in") or "").split("/") if g)
        when = ""
        if "when" in spec:
            condition = self._mapping(spec["when"], f"{where}.when", {"from"})
            when = self._name(condition.get("from"), f"{where}.when", element)
        if not isinstance(spec.get("rules"), list) or not spec["rules"]:
            raise self.fail(where, "a segment needs a non-empty list of `rules`")
        rules = tuple(self._rule(r, f"{where}.rules[{i}]", segment_id, element) for i, r in enumerate(spec["rules"]))
        _check_overlaps(rules, where, self.fail)
        self.placements.append((groups, segment_id, sorted({r.field for r in rules})))
        return SegmentRule(where, segment_id, groups, when, rules)

    def _rule(self, value: Any, where: str, segment_id: str, element: frozenset[str],
              within: int | None = None) -> FieldRule:
        raw = self._mapping(value, where, RULE_KEYS)
        field, position = self._target(raw.get("to"), where, segment_id)
        where = f"{where} ({raw['to']})"
        if within is not None and (field != within or not position):
            raise self.fail(where, f"inside a repeated {segment_id}-{within}, write its components ({segment_id}-{within}.n)")
        if "each" in raw:
            if within is not None or position or set(raw) - {"to", "each", "rules", "note"}:
                raise self.fail(where, "a repeated field is `{to: XXX-n, each: {from: list}, rules: [...]}`")
            spec = self._mapping(raw["each"], f"{where}.each", {"from"})
            each = self._list_name(spec.get("from"), f"{where}.each")
            if not isinstance(raw.get("rules"), list) or not raw["rules"]:
                raise self.fail(where, "`each` needs the `rules` of one repetition")
            inner = tuple(self._rule(r, f"{where}.rules[{i}]", segment_id, self.record[each] or frozenset(), field)
                          for i, r in enumerate(raw["rules"]))
            _check_overlaps(inner, where, self.fail)
            return FieldRule(where, field, (), each=each, rules=inner)
        if "rules" in raw:
            raise self.fail(where, "`rules` belong to a repeated field (`each`)")
        chosen = [k for k in VALUE_KEYS if k in raw]
        if len(chosen) != 1:
            raise self.fail(where, f"a rule needs exactly one of {', '.join(VALUE_KEYS)}; found {chosen or 'none'}")
        kind, value = chosen[0], raw[chosen[0]]
        if kind == "const" and not isinstance(value, str):
            raise self.fail(where, "`const` must be text (quote numbers: \"1\")")
        if kind == "param" and value not in self.parameters:
            raise self.fail(where, f"undeclared parameter {value!r} (declare it under `parameters`)")
        if kind == "set-id" and value is not True:
            raise self.fail(where, "write `set-id: true`")
        if kind == "from":
            value = self._name(value, where, element)
        codes_name = raw.get("codes", "")
        if codes_name and codes_name not in self.codes:
            raise self.fail(where, f"unknown code table {codes_name!r} (declare it under `codes`)")
        return FieldRule(where, field, position, kind, "" if kind == "set-id" else value,
                         self.codes.get(codes_name) if codes_name else None, codes_name)

    def _target(self, to: Any, where: str, segment_id: str) -> tuple[int, tuple[int, ...]]:
        match = _PATH.match(to) if isinstance(to, str) else None
        if not match or match.group(1) != segment_id:
            raise self.fail(where, f"`to` must be a {segment_id} field in IG notation ({segment_id}-3, "
                                   f"{segment_id}-3.1, {segment_id}-3.4.1), found {to!r}")
        numbers = [int(g) for g in match.groups()[1:] if g is not None]
        if any(n < 1 for n in numbers) or (segment_id == "MSH" and numbers[0] <= 2):
            raise self.fail(where, f"{to}: positions count from 1, and MSH-1/MSH-2 are the separators")
        return numbers[0], tuple(numbers[1:])

    def _name(self, name: Any, where: str, element: frozenset[str]) -> str:
        if not isinstance(name, str) or (name not in element and self.record.get(name, False) is not None):
            known = sorted(element | {k for k, v in self.record.items() if v is None})
            raise self.fail(where, f"{name!r} is not a value of the record here (known: {', '.join(known)})")
        return name

    def _list_name(self, name: Any, where: str) -> str:
        if not isinstance(name, str) or not isinstance(self.record.get(name), frozenset):
            lists = sorted(k for k, v in self.record.items() if v is not None)
            raise self.fail(where, f"{name!r} is not a list of the record (lists: {', '.join(lists)})")
        return name


def _check_overlaps(rules: tuple[FieldRule, ...], where: str, fail) -> None:
    """Two rules writing the same place (or one a whole field, the other inside it) would make the
    result depend on their order: refused."""
    seen: list[tuple[int, tuple[int, ...], str]] = []
    for rule in rules:
        for field, position, other in seen:
            if field == rule.field and (position[:len(rule.position)] == rule.position
                                        or rule.position[:len(position)] == position):
                raise fail(where, f"{rule.where} and {other} write the same place")
        seen.append((rule.field, rule.position, rule.where))
