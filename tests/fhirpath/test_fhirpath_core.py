"""Every invariant of the FHIR R4 core compiles, and the engine's built-in type knowledge
matches the R4 definitions it was written from."""
from __future__ import annotations

from fhir_bridge.errors import FhirPathError
from fhir_bridge.fhirpath import compile_expression
from fhir_bridge.fhirpath.model import CHOICE_COMPLEX_TYPES, CHOICE_NAMES, PRIMITIVE_TYPES


def _constraints(r4_types):
    for type_name, definition in r4_types.items():
        for element in definition["elements"]:
            for constraint in element.get("constraint", ()):
                if constraint.get("expression"):
                    yield element["path"], constraint


def test_every_r4_core_invariant_compiles(r4_types):
    constraints = list(_constraints(r4_types))
    failures = []
    for path, constraint in constraints:
        try:
            compiled = compile_expression(constraint["expression"])
        except FhirPathError as e:
            failures.append(f"{path} {constraint['key']}: {e}")
        else:
            assert compiled.source == constraint["expression"]
    assert len(constraints) > 2000  # the whole core, not a truncated file
    assert not failures, "\n".join(failures)


def _choice_elements(r4_types):
    for definition in r4_types.values():
        for element in definition["elements"]:
            if element["path"].endswith("[x]"):
                yield element


def test_choice_names_match_r4(r4_types):
    names = {e["path"].rsplit(".", 1)[-1][:-3] for e in _choice_elements(r4_types)}
    assert CHOICE_NAMES == names


def test_choice_types_match_r4(r4_types):
    codes = {t["code"] for e in _choice_elements(r4_types) for t in e.get("type", ())}
    assert CHOICE_COMPLEX_TYPES == {c for c in codes if c[0].isupper()}
    assert {c for c in codes if c[0].islower()} <= PRIMITIVE_TYPES
    assert PRIMITIVE_TYPES == {name for name, d in r4_types.items() if d.get("kind") == "primitive-type"}
