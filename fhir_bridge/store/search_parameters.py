"""The search parameters the server offers, compiled once from the SearchParameter resources in profiles/.

    registry = SearchParameterRegistry.load(package)
    registry.for_type("QuestionnaireResponse")   # {"subject": SearchParam(...), "_lastUpdated": ..., ...}
    registry.get("Patient", "birthdate")
    registry.unsupported("Observation")          # {"code-value-quantity": "composite parameters are not supported"}

R4 writes one expression for many types ("Patient.name | Practitioner.name"); each type gets only its
own part, compiled. Two R4 idioms are settled here rather than at every evaluation:
- `X.where(resolve() is Patient)`: resolve() cannot follow a reference to another stored resource, so the
  expression becomes `X` and the reference's own type (from `Patient/123` or a URL ending so) is checked
  by the indexer against `type_filter`.
- casts on choice elements, `(Observation.value as Quantity)`, `Condition.onset.as(Period)`, become the
  JSON key (`Observation.valueQuantity`): exact (a dateTime string is not taken `as string`) and faster.
  A cast on a plain element (`(X as Reference)`) is dropped: the element has that type already.

A parameter that is another's restricted to one target type (R4's `patient`, `subject.where(resolve()
is Patient)`, beside `subject`) has no index rows of its own: it reads the other's rows to that type
(`stored_as`). Those were a quarter of an import's reference rows, each one written twice.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from fhir_bridge.errors import ConfigurationError, FhirPathError
from fhir_bridge.fhir.package import ConformancePackage
from fhir_bridge.fhirpath import CompiledExpression, compile_expression
from fhir_bridge.fhirpath.model import CHOICE_NAMES

__all__ = ["SearchParam", "SearchParameterRegistry", "INDEX_OF_TYPE", "RESOURCE_COLUMNS", "split_union"]

# Which index table holds each parameter type. uri values are URLs: the reference table's url column.
INDEX_OF_TYPE = {"token": "token", "reference": "reference", "uri": "reference", "date": "date",
                 "string": "string", "number": "number"}
# Answered from the resources table's own columns, never from index rows.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})
_COMMON_BASES = ("Resource", "DomainResource")
_UNSUPPORTED_TYPES = {"composite": "composite parameters are not supported",
                      "special": "special parameters are not supported",
                      "quantity": "quantity parameters are not indexed"}

_RESOLVE_FILTER = re.compile(r"^(.*)\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_PATH = r"([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*)"
_CAST_OPERATOR = re.compile(r"\(" + _PATH + r" as ([A-Za-z]+)\)")
_CAST_FUNCTION = re.compile(_PATH + r"\.as\(([A-Za-z]+)\)")
_BARE_CAST = re.compile(r"^" + _PATH + r" as ([A-Za-z]+)$")
_LEADING_TYPE = re.compile(r"^\(*([A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One parameter on one resource type."""

    code: str
    type: str                               # token|reference|uri|date|string|number
    expression: CompiledExpression          # this type's part, idioms resolved, relative to the resource
    targets: tuple[str, ...] = ()           # reference target types the definition allows
    type_filter: frozenset[str] | None = None  # only references to these types are indexed
    url: str | None = None                  # the SearchParameter's canonical URL
    stored_as: str | None = None            # its rows are this parameter's, to the one type_filter type
    shared: bool = False                    # another parameter reads its rows (stored_as this one)

    @property
    def table(self) -> str:
        """The INDEX_TABLES key the parameter's rows live in."""
        return INDEX_OF_TYPE[self.type]

    @property
    def indexed(self) -> bool:
        """Whether the indexer makes rows for it (not a resources column, not another's rows)."""
        return self.code not in RESOURCE_COLUMNS and self.stored_as is None

    @property
    def row_param(self) -> str:
        """The `param` of the index rows that hold its values."""
        return self.stored_as or self.code

    @property
    def row_target(self) -> str | None:
        """With `stored_as`: the target type its rows are restricted to."""
        return next(iter(self.type_filter)) if self.stored_as and self.type_filter else None


@dataclass
class SearchParameterRegistry:
    by_type: dict[str, dict[str, SearchParam]] = field(default_factory=dict)
    common: dict[str, SearchParam] = field(default_factory=dict)          # from Resource / DomainResource
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)      # type -> code -> why not supported
    _merged: dict[str, dict[str, SearchParam]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, package: ConformancePackage) -> "SearchParameterRegistry":
        """Every SearchParameter in the package, standalone or inside a collection Bundle. A definition
        that cannot be used (no expression that compiles, a code defined twice) fails naming its file."""
        registry = cls()
        for definition, source in _definitions(package):
            registry._add(definition, source)
        for params in (registry.common, *registry.by_type.values()):
            _share_rows(params)
        registry._merged.clear()
        return registry

    # -- lookups ---------------------------------------------------------------------------------------
    @property
    def resource_types(self) -> tuple[str, ...]:
        """The types with parameters of their own (every type also has the common ones)."""
        return tuple(sorted(self.by_type))

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        merged = self._merged.get(resource_type)
        if merged is None:
            merged = self._merged[resource_type] = {**self.common, **self.by_type.get(resource_type, {})}
        return merged

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.for_type(resource_type).get(code)

    def rows_of(self, resource_type: str, code: str) -> tuple[str, str | None]:
        """(param of the index rows holding `code`'s values, target type they are restricted to or None)."""
        param = self.get(resource_type, code)
        return (param.row_param, param.row_target) if param is not None else (code, None)

    def unsupported(self, resource_type: str) -> dict[str, str]:
        return {**self.skipped.get("Resource", {}), **self.skipped.get(resource_type, {})}

    # -- loading ---------------------------------------------------------------------------------------
    def _add(self, sp: dict, source: str) -> None:
        code, kind, bases = sp.get("code"), sp.get("type"), sp.get("base")
        if not code or not kind or not bases:
            raise ConfigurationError(f"{source}: SearchParameter {sp.get('url')} needs code, type and base")
        if kind in _UNSUPPORTED_TYPES or not sp.get("expression"):
            reason = _UNSUPPORTED_TYPES.get(kind, "no FHIRPath expression")
            for base in bases:
                self.skipped.setdefault("Resource" if base in _COMMON_BASES else base, {})[code] = reason
            return
        if kind not in INDEX_OF_TYPE:
            raise ConfigurationError(f"{source}: SearchParameter {code!r} has unknown type {kind!r}")
        parts = split_union(sp["expression"])
        for base in bases:
            own = [p for p in parts if _leading_type(p) == base] or [p for p in parts if _leading_type(p) is None]
            if not own:
                raise ConfigurationError(f"{source}: SearchParameter {code!r} has no expression for {base}")
            param = _compile(sp, code, kind, own, source, base)
            self._put("Resource" if base in _COMMON_BASES else base, param, source)

    def _put(self, base: str, param: SearchParam, source: str) -> None:
        into = self.common if base == "Resource" else self.by_type.setdefault(base, {})
        if param.code in into:
            raise ConfigurationError(f"{source}: search parameter {base}.{param.code} is already defined by "
                                     f"{into[param.code].url}")
        into[param.code] = param
        self._merged.clear()


def _share_rows(params: dict[str, SearchParam]) -> None:
    """`stored_as` for each reference parameter of one type that is another's (same expression, no
    filter of its own) restricted to one target type."""
    for code, param in list(params.items()):
        if param.type != "reference" or param.type_filter is None or len(param.type_filter) != 1:
            continue
        wider = sorted(other.code for other in params.values()
                       if other.type == "reference" and other.type_filter is None and other.code != code
                       and other.expression.source == param.expression.source)
        if wider:
            params[code] = replace(param, stored_as=wider[0])
            params[wider[0]] = replace(params[wider[0]], shared=True)


def _definitions(package: ConformancePackage) -> Iterator[tuple[dict, str]]:
    """(definition, where it comes from): files of their own, and entries of collection Bundles
    (the generated R4 core set is one Bundle rather than hundreds of files)."""
    for sp in package.of_type("SearchParameter"):
        yield sp, package.where_from(sp)
    for bundle in package.of_type("Bundle"):
        for entry in bundle.get("entry", ()):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "SearchParameter":
                yield resource, f"{package.where_from(bundle)} entry {resource.get('id')}"


def _compile(sp: dict, code: str, kind: str, parts: list[str], source: str, base: str) -> SearchParam:
    rewritten, filters = [], set()
    for part in parts:
        expression, type_filter = _rewrite(part)
        rewritten.append(_relative(expression, base))
        filters.add(type_filter)
    if len(filters) > 1:
        raise ConfigurationError(f"{source}: SearchParameter {code!r} mixes resolve() filters within {base}")
    text = " | ".join(rewritten)
    try:
        compiled = compile_expression(text)
    except FhirPathError as exc:
        raise ConfigurationError(f"{source}: SearchParameter {code!r} on {base}: {exc.message}") from exc
    return SearchParam(code, kind, compiled, tuple(sp.get("target", ())), filters.pop(), sp.get("url"))


def _rewrite(part: str) -> tuple[str, frozenset[str] | None]:
    type_filter = None
    resolved = _RESOLVE_FILTER.match(part)
    if resolved:
        part, type_filter = resolved.group(1), frozenset({resolved.group(2)})
    bare = _BARE_CAST.match(part)
    if bare:
        part = _cast(bare)
    part = _CAST_OPERATOR.sub(_cast, part)
    part = _CAST_FUNCTION.sub(_cast, part)
    return part, type_filter


def _cast(match: re.Match) -> str:
    path, type_name = match.group(1), match.group(2)
    head, _, last = path.rpartition(".")
    if last not in CHOICE_NAMES:
        return path
    key = f"{last}{type_name[0].upper()}{type_name[1:]}"
    return f"{head}.{key}" if head else key


def _relative(part: str, base: str) -> str:
    """`Patient.name` -> `name`: evaluated on a Patient, the leading type test always passes, and
    skipping it saves a third of the evaluation of a one-step path."""
    prefix = base + "."
    return part[len(prefix):] if part.startswith(prefix) and part[len(prefix):][:1].islower() else part


def _leading_type(part: str) -> str | None:
    """`Patient` for `Patient.name` or `(Patient.deceased as dateTime)`; None for a path without one."""
    match = _LEADING_TYPE.match(part)
    return match.group(1) if match and match.group(1)[0].isupper() else None


def split_union(expression: str) -> list[str]:
    """The parts of a top-level FHIRPath union; `|` inside brackets or quotes is left alone."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]
