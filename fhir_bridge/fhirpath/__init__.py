"""Compiled FHIRPath (N1, as FHIR R4 uses it) over FHIR JSON.

An expression is parsed and compiled once into nested closures (cached by its text), then
evaluated many times: the profile validator runs every invariant on every resource.

    check = compile_expression("(answer.exists() and item.exists()).not()")
    check.is_true(item)          # invariant semantics: true or empty passes
    check(item)                  # the result collection
"""
from __future__ import annotations

from functools import lru_cache

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath.analysis import absence_guard, reads_only_focus
from fhir_bridge.fhirpath.compiler import Run, _choice_values, compile_tree
from fhir_bridge.fhirpath.functions import Env
from fhir_bridge.fhirpath.operators import to_bool
from fhir_bridge.fhirpath.parser import parse
from fhir_bridge.fhirpath.values import Quantity, Temporal, Typed

__all__ = ["CompiledExpression", "choice_values", "compile_expression", "evaluate"]

_NO_VARIABLES: dict = {}
_UNKNOWN = object()


class CompiledExpression:
    __slots__ = ("source", "_run", "_guard", "_local")

    def __init__(self, source: str, run: Run):
        self.source = source
        self._run = run
        self._guard = _UNKNOWN
        self._local = _UNKNOWN

    def absence_guard(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(keys, prefixes): as an invariant, this holds on any object with none of the keys and
        no key starting with a prefix; None when no such shortcut is proven. Found on first use."""
        if self._guard is _UNKNOWN:
            self._guard = absence_guard(parse(self.source), self._run, compile_tree)
        return self._guard

    def reads_only_focus(self) -> bool:
        """True when the result depends on the focus alone (analysis.reads_only_focus)."""
        if self._local is _UNKNOWN:
            self._local = reads_only_focus(parse(self.source))
        return self._local

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"

    def _evaluate(self, focus, resource, root_resource, variables) -> list:
        coll = focus if type(focus) is list else ([] if focus is None else [focus])
        if resource is None and type(focus) is dict and "resourceType" in focus:
            resource = focus
        env = Env(coll, resource, root_resource if root_resource is not None else resource,
                  variables if variables is not None else _NO_VARIABLES)
        try:
            return self._run(coll, env)
        except FhirPathError as e:
            raise FhirPathError(f"{e.message} (evaluating {self.source!r})") from e
        except RecursionError:
            raise FhirPathError(f"expression or data too deeply nested to evaluate {self.source!r}") from None

    def __call__(self, focus, *, resource=None, root_resource=None, variables: dict | None = None) -> list:
        """The result collection, as JSON-like values: choice objects unwrapped, dates and
        times as their ISO text, quantities as FHIR Quantity objects, decimals as Decimal."""
        return [_exported(item) for item in self._evaluate(focus, resource, root_resource, variables)]

    def holds(self, focus, resource, root_resource) -> bool:
        """`is_true` for the validator's hot loop: positional, one focus item, no variables.
        Errors propagate unwrapped (the caller records the invariant as not evaluated)."""
        coll = [focus]
        result = self._run(coll, Env(coll, resource, root_resource, _NO_VARIABLES))
        if not result:
            return True
        if len(result) == 1:
            return result[0] is not False
        raise FhirPathError(f"invariant {self.source!r} gave {len(result)} items, not one boolean")

    def is_true(self, focus, *, resource=None, root_resource=None, variables: dict | None = None) -> bool:
        """Invariant semantics: passes on `true` and, like the FHIR validator, on an empty
        result; fails on `false`. A result of several items is an error."""
        return to_bool(self._evaluate(focus, resource, root_resource, variables)) is not False


def _exported(item):
    t = type(item)
    if t is Typed:
        return item.value
    if t is Temporal:
        return item.text
    if t is Quantity:
        return item.to_fhir()
    return item


def choice_values(item: dict, name: str) -> list:
    """The values of a JSON object's choice element `name` (`value` -> `valueCoding`...) as the
    expression `name` gives them on it (a decimal written as 5 is still a decimal): for callers
    that read a choice without an expression (store/indexer.py)."""
    found: list = []
    _choice_values(item, name, found)
    return [_exported(value) for value in found]


@lru_cache(maxsize=4096)
def compile_expression(expr: str) -> CompiledExpression:
    """Parse and compile once; raises FhirPathError (naming the position) on a syntax error
    or an unknown function."""
    try:
        return CompiledExpression(expr, compile_tree(parse(expr), expr))
    except RecursionError:
        raise FhirPathError(f"FHIRPath expression too deeply nested: {expr[:80]!r}") from None


def evaluate(expr: str, focus, **kw) -> list:
    return compile_expression(expr)(focus, **kw)
