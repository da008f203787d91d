"""The FHIR R4 base structure model: which elements each type has, their cardinality and types.

Loaded from `profiles/r4-core/structures.json` (generated from the official hl7.fhir.r4.core
package by tools/build_r4_core.py). It knows nothing of profiles or of DIALOG: the validator,
the XML codec and the search indexer all ask it the same questions ("what may appear under
QuestionnaireResponse.item, as which type, how many times?").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import orjson

from fhir_bridge.errors import ConfigurationError

# JSON representation of FHIR primitive types (http://hl7.org/fhir/R4/json.html#primitive)
JSON_BOOLEAN = frozenset({"boolean"})
JSON_INTEGER = frozenset({"integer", "positiveInt", "unsignedInt"})
JSON_DECIMAL = frozenset({"decimal"})


@dataclass(frozen=True, slots=True)
class Binding:
    strength: str
    value_set: str


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str
    best_practice: bool = False


@dataclass(frozen=True, slots=True)
class TypeRef:
    code: str
    target_profiles: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()


@dataclass(slots=True)
class ElementDef:
    path: str
    min: int
    max: int | None  # None means unbounded ("*")
    types: tuple[TypeRef, ...]
    binding: Binding | None = None
    constraints: tuple[Constraint, ...] = ()
    content_reference: str | None = None
    is_modifier: bool = False
    is_summary: bool = False
    xml_attribute: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def repeats(self) -> bool:
        return self.max is None or self.max > 1


@dataclass(frozen=True, slots=True)
class Child:
    """One JSON property allowed under a node: `valueCoding` -> (value[x] element, type Coding)."""

    key: str
    element: ElementDef
    type_code: str  # the concrete type; for backbone elements, "BackboneElement"/"Element"
    choice: bool


@dataclass(slots=True)
class TypeDef:
    name: str
    kind: str  # primitive-type | complex-type | resource
    abstract: bool
    base: str | None
    regex: str | None
    elements: dict[str, ElementDef] = field(default_factory=dict)

    @property
    def is_primitive(self) -> bool:
        return self.kind == "primitive-type"

    @property
    def is_resource(self) -> bool:
        return self.kind == "resource"


def _element(raw: dict) -> ElementDef:
    max_ = raw["max"]
    binding = raw.get("binding")
    return ElementDef(
        path=raw["path"],
        min=raw["min"],
        max=None if max_ == "*" else int(max_),
        types=tuple(
            TypeRef(t["code"], tuple(t.get("targetProfile", ())), tuple(t.get("profile", ())))
            for t in raw.get("type", ())
        ),
        binding=Binding(binding["strength"], binding["valueSet"]) if binding else None,
        constraints=tuple(
            Constraint(c["key"], c["severity"], c["human"], c["expression"], c.get("bestPractice", False))
            for c in raw.get("constraint", ())
        ),
        content_reference=raw.get("contentReference"),
        is_modifier=raw.get("isModifier", False),
        is_summary=raw.get("isSummary", False),
        xml_attribute="xmlAttr" in raw.get("representation", ()),
    )


def choice_key(element_name: str, type_code: str) -> str:
    """`value[x]` + `Coding` -> `valueCoding`; `value[x]` + `dateTime` -> `valueDateTime`."""
    return element_name[:-3] + type_code[0].upper() + type_code[1:]


class StructureModel:
    """Read-only index over the base definitions. Child maps are computed once per path."""

    def __init__(self, types: dict[str, TypeDef]):
        self.types = types
        self._children: dict[tuple[str, str], dict[str, Child]] = {}

    @classmethod
    def load(cls, path: Path) -> "StructureModel":
        try:
            raw = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read the FHIR base definitions {path}: {exc}") from exc
        try:
            types = {}
            for name, t in raw["types"].items():
                td = TypeDef(name, t["kind"], t.get("abstract", False), t.get("base"), t.get("regex"))
                for e in t["elements"]:
                    el = _element(e)
                    td.elements[el.path] = el
                types[name] = td
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ConfigurationError(f"{path} is not a base definitions file made by tools/build_r4_core.py "
                                     f"({type(exc).__name__}: {exc})") from exc
        if "Resource" not in types or "Element" not in types:
            raise ConfigurationError(f"{path} lacks the root types Resource and Element: regenerate it")
        return cls(types)

    @cached_property
    def resource_types(self) -> frozenset[str]:
        return frozenset(n for n, t in self.types.items() if t.is_resource and not t.abstract)

    def type(self, name: str) -> TypeDef | None:
        return self.types.get(name)

    def is_primitive(self, type_code: str) -> bool:
        t = self.types.get(type_code)
        return t is not None and t.is_primitive

    def element(self, type_name: str, path: str) -> ElementDef | None:
        td = self.types.get(type_name)
        return td.elements.get(path) if td else None

    def children(self, type_name: str, path: str | None = None) -> dict[str, Child]:
        """JSON keys allowed directly under `path` (a path inside `type_name`; its root by default).

        Backbone elements have their children in the same type; an element whose type is a
        datatype has them in that datatype (the caller then asks for that type's root).
        A contentReference (QuestionnaireResponse.item.item -> .item) reuses the referenced path.
        """
        path = path or type_name
        cache_key = (type_name, path)
        found = self._children.get(cache_key)
        if found is not None:
            return found
        td = self.types[type_name]
        prefix = path + "."
        out: dict[str, Child] = {}
        for el_path, el in td.elements.items():
            if not el_path.startswith(prefix) or "." in el_path[len(prefix):]:
                continue
            name = el.name
            if el.is_choice:
                for t in el.types:
                    out[choice_key(name, t.code)] = Child(choice_key(name, t.code), el, t.code, True)
            elif el.content_reference:
                out[name] = Child(name, el, "BackboneElement", False)
            elif el.types:
                out[name] = Child(name, el, el.types[0].code, False)
        self._children[cache_key] = out
        return out

    def resolve_path(self, type_name: str, el: ElementDef) -> tuple[str, str]:
        """Where the children of `el` are defined: (type name, path inside it)."""
        if el.content_reference:
            return type_name, el.content_reference
        code = el.types[0].code if el.types else "Element"
        if code in ("BackboneElement", "Element") and el.path.count(".") >= 1:
            return type_name, el.path
        return code, code

    def json_kind(self, type_code: str) -> str:
        """'boolean' | 'integer' | 'decimal' | 'string' | 'object' for a type's JSON form."""
        if type_code in JSON_BOOLEAN:
            return "boolean"
        if type_code in JSON_INTEGER:
            return "integer"
        if type_code in JSON_DECIMAL:
            return "decimal"
        if self.is_primitive(type_code) or type_code == "xhtml":
            return "string"
        return "object"
