"""Just enough of the FHIR R4 type system for FHIRPath over plain JSON.

The engine works on schemaless JSON for speed, so it cannot know that a given string is a
`canonical` or that an object is a `Coding`. What it can know:

* a resource's type, from `resourceType`;
* the type of a choice element's value, from the key suffix (`valueCoding` -> Coding);
* the JSON kind of a primitive (bool -> boolean, int -> integer, number -> decimal, str -> one
  of the string-like types; a string shaped like a date also passes as date/dateTime/time).

R4 is frozen, so the lists below are written out; tests/fhirpath/test_fhirpath_core.py checks them
against profiles/r4-core/structures.json.
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Callable

from fhir_bridge.fhirpath.values import Quantity, Temporal, Typed, parse_date_time, parse_time

# Names of the R4 elements declared as `name[x]`: only these may be looked up by suffix.
CHOICE_NAMES = frozenset({
    "abatement", "additive", "age", "allowed", "amount", "answer", "asNeeded", "author", "born",
    "bounds", "characteristic", "chargeItem", "code", "collected", "content", "created", "date",
    "deceased", "defaultValue", "definingSubstance", "definition", "detail", "diagnosis", "dose",
    "doseNumber", "due", "effective", "entity", "event", "example", "fastingStatus", "fixed",
    "identified", "indication", "item", "legallyBinding", "location", "manufacturer", "maxValue",
    "medication", "minValue", "minimumVolume", "module", "multipleBirth", "name", "occurred",
    "occurrence", "offset", "onset", "participantEffective", "pattern", "performed", "probability",
    "procedure", "product", "quantity", "rate", "reported", "scheduled", "seriesDoses", "serviced",
    "source", "start", "statusReason", "studyEffective", "subject", "substance", "target", "time",
    "timing", "topic", "used", "value", "when",
})

PRIMITIVE_TYPES = frozenset({
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
    "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url",
    "uuid", "xhtml",
})

# The complex data types a choice element may hold in R4 (the "open" type list).
CHOICE_COMPLEX_TYPES = frozenset({
    "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactDetail",
    "ContactPoint", "Contributor", "Count", "DataRequirement", "Distance", "Dosage", "Duration",
    "Expression", "HumanName", "Identifier", "Meta", "Money", "ParameterDefinition", "Period",
    "Quantity", "Range", "Ratio", "Reference", "RelatedArtifact", "SampledData", "Signature",
    "Timing", "TriggerDefinition", "UsageContext",
})

# Specializations, child -> parent (Element and Resource roots are added by ancestors()).
_PARENT = {
    "code": "string", "id": "string", "markdown": "string",
    "url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri",
    "positiveInt": "integer", "unsignedInt": "integer",
    "Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
    "MoneyQuantity": "Quantity", "SimpleQuantity": "Quantity",
}
_NOT_DOMAIN_RESOURCES = frozenset({"Bundle", "Binary", "Parameters"})

# A JSON string holding a date is a FHIR date; asked as a System type it answers too.
_SYSTEM_TEMPORAL = {"Date": "date", "DateTime": "dateTime", "Time": "time"}
_INTEGER_MINIMUM = {"integer": None, "unsignedInt": 0, "positiveInt": 1}
_STRING_LIKE = frozenset({"string", "code", "id", "markdown", "uri", "url", "canonical", "oid",
                          "uuid", "base64Binary", "xhtml"})
_DATE_TIME_LIKE = {"date": ("date",), "dateTime": ("date", "dateTime"), "instant": ("dateTime",)}


@lru_cache(maxsize=4096)
def choice_type(suffix: str) -> str | None:
    """'Coding' -> 'Coding', 'DateTime' -> 'dateTime'; None when the suffix names no type."""
    primitive = suffix[:1].lower() + suffix[1:]
    if primitive in PRIMITIVE_TYPES:
        return primitive
    return suffix if suffix in CHOICE_COMPLEX_TYPES else None


@lru_cache(maxsize=4096)
def split_choice_key(key: str) -> str | None:
    """The type of a JSON key that is a choice element (`valueQuantity` -> 'Quantity'), else None.

    A few plain R4 elements match too (`effectivePeriod`, `doseQuantity`); their suffix names
    their type all the same, so the answer stays right."""
    for i, ch in enumerate(key):
        if ch.isupper():
            return choice_type(key[i:]) if key[:i] in CHOICE_NAMES else None
    return None


@lru_cache(maxsize=1024)
def ancestors(type_name: str, is_resource: bool) -> frozenset[str]:
    names = {type_name}
    while type_name in _PARENT:
        type_name = _PARENT[type_name]
        names.add(type_name)
    if is_resource:
        names.add("Resource")
        if type_name not in _NOT_DOMAIN_RESOURCES:
            names.add("DomainResource")
    else:
        names.add("Element")
    return frozenset(names)


def _system_type(value) -> str | None:
    t = type(value)
    if t is bool:
        return "Boolean"
    if t is int:
        return "Integer"
    if t is float or t is Decimal:
        return "Decimal"
    if t is str:
        return "String"
    if t is Temporal:
        return {"date": "Date", "dateTime": "DateTime", "time": "Time"}[value.kind]
    if t is Quantity:
        return "Quantity"
    return None


def _fhir_matches(value, name: str) -> bool:
    t = type(value)
    if t is dict:
        rtype = value.get("resourceType")
        return name in ancestors(rtype, True) if type(rtype) is str else name == "Element"
    if t is Typed:
        return name in ancestors(value.type, False)
    if t is bool:
        return name == "boolean"
    if t is int:
        if name not in _INTEGER_MINIMUM:
            return False
        minimum = _INTEGER_MINIMUM[name]
        return minimum is None or value >= minimum
    if t is float or t is Decimal:
        return name == "decimal"
    if t is str:
        return _string_matches(value, name)
    if t is Temporal:
        return name == value.kind or (name == "instant" and value.kind == "dateTime")
    if t is Quantity:
        return name == "Quantity"
    return False


def _string_matches(value: str, name: str) -> bool:
    if name in _STRING_LIKE:
        return True
    if name in _DATE_TIME_LIKE:
        parsed = parse_date_time(value)
        return parsed is not None and parsed.kind in _DATE_TIME_LIKE[name]
    return name == "time" and parse_time(value) is not None


def type_predicate(type_name: str) -> Callable[[object], bool]:
    """Compile a type specifier (`Coding`, `FHIR.string`, `System.Boolean`) into a test.

    An unqualified name is tried as a FHIR type and as a System type, so that a FHIR
    `boolean` also answers `is Boolean` (que-7 relies on it) and a date string `is Date`."""
    namespace, _, name = type_name.rpartition(".")
    if namespace == "System":
        return lambda value: _system_type(value) == name
    if namespace == "FHIR":
        return lambda value: _fhir_matches(value, name)
    fhir_temporal = _SYSTEM_TEMPORAL.get(name)
    return lambda value: _fhir_matches(value, name) or _system_type(value) == name or (
        fhir_temporal is not None and type(value) is str and _string_matches(value, fhir_temporal))
