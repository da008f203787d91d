"""Plain-Python shortcuts for the commonest FHIR invariants, checked before their FHIRPath.

Every Reference carries ref-1 and every Extension ext-1, so a DIALOG+ session evaluated them ~36
times through the FHIRPath engine for ~0.15 ms of its ~3.6 ms; every resource carries dom-3. A
shortcut here answers only "surely holds" for the ordinary shape (a reference that does not point
into `contained`; an extension with a value or with extensions, not both; nothing contained),
giving the same answer as the expression;
for anything else it says nothing and the FHIRPath is evaluated as before. Keyed by the
expression's text, so a profile's own invariant that reuses a key is not taken for the base one.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["sure_check"]


def _local_reference(obj: dict) -> bool:
    """ref-1: a reference into `contained` (`#id`) must resolve; any other holds."""
    reference = obj.get("reference")
    return reference is None or (type(reference) is str and not reference.startswith("#"))


def _value_or_extensions(obj: dict) -> bool:
    """ext-1: an extension has a value or extensions, never both, never neither."""
    extensions = obj.get("extension")
    if extensions is not None and type(extensions) is not list:
        return False  # odd data: let the expression decide
    values = 0
    for key, value in obj.items():
        if key.startswith("value"):
            if not key[5:6].isupper() or value is None or value == [] or value == {}:
                return False  # not a value[x] key, or an empty one: let the expression decide
            values += 1
        elif key.startswith("_value"):
            return False  # a primitive's extension-only half: let the expression decide
    return values == 1 and not extensions or values == 0 and bool(extensions)


def _not_answer_and_item(obj: dict) -> bool:
    """qrs-1 (QuestionnaireResponse.item): answers or nested items, not both."""
    answer, item = obj.get("answer"), obj.get("item")
    return answer is None or answer == [] or item is None or item == []


def _nothing_contained(obj: dict) -> bool:
    """dom-3: every contained resource is referred to; it holds when there are none (its FHIRPath
    scans every descendant of the resource once per contained resource, and ends in a trace(),
    so no absence guard is proven for it)."""
    contained = obj.get("contained")
    return contained is None or contained == []


_SURE: dict[str, Callable[[dict], bool]] = {
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
    "%rootResource.contained.id.trace('ids'))": _local_reference,
    "extension.exists() != value.exists()": _value_or_extensions,
    "(answer.exists() and item.exists()).not()": _not_answer_and_item,
    "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | "
    "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')"
    ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
    ".exists()).not()).trace('unmatched', id).empty()": _nothing_contained,
}


def sure_check(expression: str) -> Callable[[dict], bool] | None:
    """The shortcut for an invariant's expression: True means it holds; None when there is none."""
    return _SURE.get(expression)
