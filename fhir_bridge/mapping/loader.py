"""Reads mapping files (YAML) and checks the whole file against the closed vocabulary at start-up.

Every reference is resolved here - transforms (built with their arguments), code tables and
ConceptMaps, named blocks (`use`), lists (`each`), parameters, `ref` targets, `{placeholders}` -
so a mistake fails once, loudly, naming the file and the rule, instead of on the millionth record.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping.rules import (
    APPEND,
    PLACEHOLDER,
    CodeTable,
    Condition,
    Each,
    ResourceSpec,
    Rule,
    Segment,
    SourceMapping,
    Target,
    Transform,
    ValueSource,
)
from fhir_bridge.mapping.transforms import REGISTRY, build_transform
from fhir_bridge.terminology import Terminology

FILE_KEYS = {"name", "description", "parameters", "lists", "codes", "blocks", "resources", "required-fields",
             "record-key"}
REQUIRED_KEYS = {"each", "fields"}
RESOURCE_KEYS = {"type", "id", "rules", "description"}
RULE_KEYS = {"name", "to", "from", "const", "param", "ref", "use", "transform", "codes", "when", "each",
             "required", "note"}
ID_KEYS = {"from", "const", "param", "transform"}
VALUE_KEYS = ("from", "const", "param", "ref", "use")
REF_KEYS = {"type", "id"}
WHEN_KEYS = {"from", "param", "equals", "in", "present"}
TABLE_KEYS = {"system", "map", "conceptmap", "source-system", "description"}
_SEGMENT = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\[(\d*)\])?$")
INDEX_VAR = "index"  # every `each` offers {index}, the element's position from 0
OUTBOUND_FOLDER_SUFFIX = "-out"  # mappings/hl7-out/: read by fhir_bridge.outputs, not by this loader


def load_mappings(folder: str | Path, terminology: Terminology) -> dict[str, SourceMapping]:
    """Every `*.yaml` under `folder` (README files and the like are skipped), by mapping name.
    Folders named `<target>-out` hold outbound mappings (FHIR -> a partner's format), which have
    their own vocabulary and loader (fhir_bridge/outputs/): skipped here."""
    mappings: dict[str, SourceMapping] = {}
    for path in sorted(Path(folder).rglob("*.yaml")):
        if any(part.endswith(OUTBOUND_FOLDER_SUFFIX) for part in path.relative_to(folder).parent.parts):
            continue
        mapping = load_mapping(path, terminology)
        if mapping.name in mappings:
            raise ConfigurationError(f"{path}: mapping name {mapping.name!r} is also used by "
                                     f"{mappings[mapping.name].file}", location=str(path))
        mappings[mapping.name] = mapping
    return mappings


def load_mapping(path: str | Path, terminology: Terminology) -> SourceMapping:
    path = Path(path)
    return _FileLoader(path, terminology).load(read_yaml(path, "mapping"))


# libyaml's parser when PyYAML has it (its wheels do): the same documents, a quarter of the time.
# The mapping files are read at every start, and by each import's worker processes before they
# can map anything (all twelve: 151 ms with the pure-Python parser, 36 ms with libyaml's).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, what: str) -> Any:
    """A mapping file's YAML; ConfigurationError naming the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
        try:
            return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            if SAFE_LOADER is yaml.SafeLoader:
                raise
            # libyaml's message has no excerpt of the offending line: the pure-Python loader's has
            return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read {what}: {exc}", location=str(path)) from exc


class _FileLoader:
    def __init__(self, path: Path, terminology: Terminology):
        self.path = path
        self.terminology = terminology
        self.parameters: dict[str, Any] = {}
        self.lists: dict[str, tuple[Mapping[str, Any], ...]] = {}
        self.tables: dict[str, CodeTable] = {}
        self.blocks: dict[str, Any] = {}
        self.resource_names: set[str] = set()
        self.used_blocks: set[str] = set()

    def fail(self, where: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.path}: {where}: {message}", location=str(self.path))

    # -- the file ------------------------------------------------------------------------------
    def load(self, data: Any) -> SourceMapping:
        top = self._mapping(data, "top level", FILE_KEYS)
        name = top.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("name", "every mapping needs a `name` (what callers pass as the source name)")
        self.parameters = self._mapping(top.get("parameters") or {}, "parameters", None)
        self.lists = {n: self._list(n, v) for n, v in self._mapping(top.get("lists") or {}, "lists", None).items()}
        self.tables = {n: self._table(n, v) for n, v in self._mapping(top.get("codes") or {}, "codes", None).items()}
        self.blocks = self._mapping(top.get("blocks") or {}, "blocks", None)
        resources = self._mapping(top.get("resources"), "resources", None)
        if not resources:
            raise self.fail("resources", "a mapping must produce at least one resource")
        self.resource_names = set(resources)
        specs = tuple(self._resource(n, v) for n, v in resources.items())
        if unused := sorted(set(self.blocks) - self.used_blocks):
            raise self.fail(f"blocks.{unused[0]}", "block is never used")
        required = self._required(top.get("required-fields") or [])
        key = top.get("record-key") or []
        if not isinstance(key, list) or not all(isinstance(f, str) and f for f in key):
            raise self.fail("record-key", "a list of the field names that name a record in its source")
        return SourceMapping(name, str(self.path), tuple(self.parameters), specs, dict(self.lists), required,
                             tuple(key))

    def _required(self, value: Any) -> tuple[str, ...]:
        """`required-fields`: field names, and `{each: <list>, fields: [templates]}` for one per element."""
        where = "required-fields"
        if not isinstance(value, list):
            raise self.fail(where, "a list of field names, or of {each: <list>, fields: [...]}")
        fields: list[str] = []
        for i, entry in enumerate(value):
            if isinstance(entry, str) and entry:
                fields.append(entry)
                continue
            spec = self._mapping(entry, f"{where}[{i}]", REQUIRED_KEYS)
            elements = self.lists.get(spec.get("each"))
            templates = spec.get("fields")
            if elements is None or not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
                raise self.fail(f"{where}[{i}]", "`each` names a list of this file and `fields` lists field templates")
            try:
                fields += [template.format_map(element) for element in elements for template in templates]
            except (KeyError, ValueError) as exc:
                raise self.fail(f"{where}[{i}]", f"a template names what the list does not have: {exc}") from None
        return tuple(dict.fromkeys(fields))

    def _mapping(self, value: Any, where: str, allowed: set[str] | None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping of keys, found {type(value).__name__}")
        if allowed is not None and (unknown := sorted(set(value) - allowed)):
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        return value

    def _list(self, name: str, value: Any) -> tuple[Mapping[str, Any], ...]:
        where = f"lists.{name}"
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            raise self.fail(where, "a list is a non-empty sequence of mappings")
        keys = set(value[0])
        for i, element in enumerate(value):
            if set(element) != keys:
                raise self.fail(f"{where}[{i}]", f"keys {sorted(element)} differ from the first element's {sorted(keys)}")
        return tuple(value)

    def _table(self, name: str, value: Any) -> CodeTable:
        where = f"codes.{name}"
        table = self._mapping(value, where, TABLE_KEYS)
        if "conceptmap" in table:
            url, source_system = table["conceptmap"], table.get("source-system")
            if "map" in table or not source_system:
                raise self.fail(where, "a ConceptMap table has `conceptmap` and `source-system`, and no `map`")
            if not any(cm.get("url") == url for cm in self.terminology.conceptmaps()):
                raise self.fail(where, f"unknown ConceptMap {url!r} (not in terminology/)")
            return CodeTable(name, conceptmap=url, source_system=source_system)
        if not isinstance(table.get("system"), str) or not isinstance(table.get("map"), dict) or not table["map"]:
            raise self.fail(where, "a local code table needs `system` and a non-empty `map`")
        codings = {}
        for source_code, target in table["map"].items():
            # `"2": Yes` keeps the code and names its display; `"2": {code: Y, display: Yes}` recodes.
            entry = {"code": str(source_code), "display": target} if isinstance(target, str) else target
            if not isinstance(entry, dict) or set(entry) - {"code", "display"} or "code" not in entry:
                raise self.fail(f"{where}.map.{source_code}", "expected a display, or {code, display}")
            codings[str(source_code)] = {"system": table["system"], **{k: str(v) for k, v in entry.items()}}
        return CodeTable(name, system=table["system"], codings=codings, source_system=table.get("source-system"))

    def _resource(self, name: str, value: Any) -> ResourceSpec:
        where = f"resources.{name}"
        spec = self._mapping(value, where, RESOURCE_KEYS)
        if not isinstance(spec.get("type"), str) or not spec["type"][:1].isupper():
            raise self.fail(where, "`type` must name a FHIR resource type")
        ids, rules = spec.get("id"), spec.get("rules")
        if not isinstance(ids, list) or not ids:
            raise self.fail(f"{where}.id", "list the business identifiers the resource id is made from")
        if not isinstance(rules, list):
            raise self.fail(f"{where}.rules", "expected a list of rules")
        id_keys = tuple(self._id_key(f"{where}.id[{i}]", k, NO_SCOPE) for i, k in enumerate(ids))
        return ResourceSpec(name, spec["type"], id_keys, self._rules(rules, f"{where}.rules", NO_SCOPE, ()))

    def _id_key(self, where: str, value: Any, scope: _Scope) -> Rule:
        key = self._mapping(value, where, ID_KEYS)
        return Rule(where, Target(".", ()), source=self._source(key, where, scope),
                    transforms=self._transforms(key.get("transform"), where), required=True)

    def _other_record_ref(self, value: dict, where: str, scope: _Scope) -> ValueSource:
        """`ref: {type, id}`: a resource another record makes (another file, another mapping).
        Ids are uuid5s of type and business identifiers, so listing the same keys as that
        mapping's `id` gives the same id: the reference is computed, never looked up."""
        spec = self._mapping(value, f"{where}.ref", REF_KEYS)
        if not isinstance(spec.get("type"), str) or not spec["type"][:1].isupper():
            raise self.fail(f"{where}.ref", "`type` must name a FHIR resource type")
        ids = spec.get("id")
        if not isinstance(ids, list) or not ids:
            raise self.fail(f"{where}.ref.id", "list the business identifiers the other resource's id is made from")
        keys = tuple(self._id_key(f"{where}.ref.id[{i}]", k, scope) for i, k in enumerate(ids))
        return ValueSource(ref_type=spec["type"], ref_keys=keys)

    # -- rules ---------------------------------------------------------------------------------
    def _rules(self, rules: list, where: str, scope: _Scope, using: tuple[str, ...]) -> tuple[Rule, ...]:
        return tuple(r for i, raw in enumerate(rules) for r in self._rule(raw, f"{where}[{i}]", scope, using))

    def _rule(self, value: Any, where: str, scope: _Scope, using: tuple[str, ...]) -> tuple[Rule, ...]:
        raw = self._mapping(value, where, RULE_KEYS)
        if isinstance(raw.get("name"), str):
            where = f"{where} ({raw['name']})"
        if "to" not in raw:
            raise self.fail(where, "rule has no `to`")
        chosen = [k for k in VALUE_KEYS if k in raw]
        if len(chosen) != 1:
            raise self.fail(where, f"a rule needs exactly one of {', '.join(VALUE_KEYS)}; found {chosen or 'none'}")
        each = raw.get("each")
        if each is None:
            return (self._build(raw, where, scope, using, None),)
        if isinstance(each, str):
            # A list declared in the mapping is known now: the rule is unrolled once per element with
            # its placeholders filled, so the engine does no templating for it on each record.
            if each not in self.lists:
                raise self.fail(where, f"`each` over undefined list {each!r} (declare it under `lists`)")
            return tuple(self._build(raw, f"{where}[{each}#{i}]", scope.bind({**item, INDEX_VAR: i}), using, None)
                         for i, item in enumerate(self.lists[each]))
        spec = self._mapping(each, f"{where}.each", {"from"})
        if not isinstance(spec.get("from"), str):
            raise self.fail(f"{where}.each", "`each: {from: path}` names the repeating source structure")
        path = self._template(spec["from"], where, scope)
        return (self._build(raw, where, scope.runtime_also({INDEX_VAR}), using, Each(path)),)

    def _build(self, raw: Mapping[str, Any], where: str, scope: _Scope, using: tuple[str, ...],
               each: Each | None) -> Rule:
        to = self._target(raw["to"], where)
        when = self._when(raw["when"], f"{where}.when", scope) if "when" in raw else None
        if to.is_self and "use" not in raw:
            raise self.fail(where, "`to: .` (the object being built) is only for `use`")
        if raw.get("required") and "from" not in raw:
            raise self.fail(where, "`required` applies to `from` only")
        if "use" in raw:
            block = raw["use"]
            if set(raw) & {"transform", "codes"}:
                raise self.fail(where, "`use` builds an object: `transform` and `codes` belong in the block's rules")
            if block not in self.blocks:
                raise self.fail(where, f"`use` of undefined block {block!r}")
            if block in using:
                raise self.fail(where, f"block {block!r} uses itself ({' -> '.join((*using, block))})")
            self.used_blocks.add(block)
            body = self.blocks[block]
            if not isinstance(body, list) or not body:
                raise self.fail(f"blocks.{block}", "a block is a non-empty list of rules")
            rules = self._rules(body, f"blocks.{block}", scope, (*using, block))
            return Rule(where, to, when=when, each=each, use=rules)
        return Rule(where, to, source=self._source(raw, where, scope),
                    transforms=self._transforms(raw.get("transform"), where),
                    codes=self._codes(raw.get("codes"), where), when=when, each=each,
                    required=bool(raw.get("required")))

    def _target(self, value: Any, where: str) -> Target:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "`to` must be a path such as item[].answer[0].valueCoding, or `.`")
        if value == ".":
            return Target(value, ())
        segments = []
        parts = value.split(".")
        for i, part in enumerate(parts):
            match = _SEGMENT.match(part)
            if not match:
                raise self.fail(where, f"`to` segment {part!r} is not name, name[n] or name[]")
            name, index = match.group(1), match.group(2)
            if index == "" and i != len(parts) - 1:
                raise self.fail(where, f"`to` {value!r}: `[]` (append) is only allowed on the last segment")
            segments.append(Segment(name, None if index is None else APPEND if index == "" else int(index)))
        return Target(value, tuple(segments))

    def _source(self, raw: Mapping[str, Any], where: str, scope: _Scope) -> ValueSource:
        if "from" in raw:
            paths = raw["from"] if isinstance(raw["from"], list) else [raw["from"]]
            if not paths or not all(isinstance(p, str) and p for p in paths):
                raise self.fail(where, "`from` is a source path or a list of alternative paths")
            return ValueSource(paths=tuple(self._template(p, where, scope) for p in paths))
        if "const" in raw:
            return ValueSource(const=self._template(raw["const"], where, scope))
        if "param" in raw:
            if raw["param"] not in self.parameters:
                raise self.fail(where, f"parameter {raw['param']!r} is not declared under `parameters`")
            return ValueSource(param=raw["param"])
        if "ref" in raw:
            if isinstance(raw["ref"], dict):
                return self._other_record_ref(raw["ref"], where, scope)
            if not isinstance(raw["ref"], str) or raw["ref"] not in self.resource_names:
                raise self.fail(where, f"`ref` to {raw['ref']!r}, which this mapping does not produce"
                                       " (a resource of another record is `ref: {type, id: [...]}`)")
            return ValueSource(ref=raw["ref"])
        raise self.fail(where, "needs one of from, const, param")

    def _template(self, value: Any, where: str, scope: _Scope) -> Any:
        """Fill the placeholders known now; leave those an `each: {from}` fills per record."""
        if isinstance(value, dict):
            return {k: self._template(v, where, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self._template(v, where, scope) for v in value]
        if not isinstance(value, str):
            return value

        def fill(match: re.Match) -> str:
            name = match.group(1)
            if name in scope.static:
                return str(scope.static[name])
            if name in scope.runtime:
                return match.group(0)
            known = sorted({*scope.static, *scope.runtime})
            raise self.fail(where, f"placeholder {{{name}}} is not a key of an enclosing `each` list"
                                   f" ({', '.join(known) or 'no each here'})")

        return PLACEHOLDER.sub(fill, value)

    def _transforms(self, value: Any, where: str) -> tuple[Transform, ...]:
        if value is None:
            return ()
        steps = value if isinstance(value, list) else [value]
        built = []
        for step in steps:
            name, arguments = (step, {}) if isinstance(step, str) else (
                (step.get("name"), {k: v for k, v in step.items() if k != "name"}) if isinstance(step, dict) else (None, {}))
            if name not in REGISTRY:
                raise self.fail(where, f"unknown transform {name!r} (known: {', '.join(sorted(REGISTRY))})")
            try:
                built.append(build_transform(name, arguments))
            except (TypeError, ValueError) as exc:
                raise self.fail(where, f"transform {name!r}: bad arguments {arguments}: {exc}") from exc
        return tuple(built)

    def _codes(self, value: Any, where: str) -> CodeTable | None:
        if value is None:
            return None
        if value not in self.tables:
            raise self.fail(where, f"unknown code table {value!r} (declare it under `codes`)")
        return self.tables[value]

    def _when(self, value: Any, where: str, scope: _Scope) -> Condition:
        raw = self._mapping(value, where, WHEN_KEYS)
        if ("from" in raw) == ("param" in raw):
            raise self.fail(where, "`when` tests exactly one of `from` or `param`")
        if "equals" in raw and "in" in raw:
            raise self.fail(where, "`when` takes `equals` or `in`, not both")
        source = self._source({k: raw[k] for k in ("from", "param") if k in raw}, where, scope)
        if "equals" in raw:
            return Condition(source, equals=(str(raw["equals"]),))
        if "in" in raw:
            if not isinstance(raw["in"], list):
                raise self.fail(where, "`in` is a list of values")
            return Condition(source, equals=tuple(str(v) for v in raw["in"]))
        return Condition(source, present=bool(raw.get("present", True)))


@dataclass(frozen=True)
class _Scope:
    """The placeholders a rule may use: `static` ones are filled at load (lists in the mapping),
    `runtime` ones by the engine on each record (`each: {from}` offers {index})."""

    static: Mapping[str, Any]
    runtime: frozenset[str]

    def bind(self, values: Mapping[str, Any]) -> "_Scope":
        return _Scope({**self.static, **values}, self.runtime - set(values))

    def runtime_also(self, names: set[str]) -> "_Scope":
        return _Scope({k: v for k, v in self.static.items() if k not in names}, self.runtime | names)


NO_SCOPE = _Scope({}, frozenset())
