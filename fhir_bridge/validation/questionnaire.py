"""A QuestionnaireResponse checked against its Questionnaire: linkIds, answer types and options,
required items, repeats, and the values of calculated (read-only) items.

Each Questionnaire is compiled once into `QItem`s keyed by linkId, so checking a response is
dictionary lookups. Structural problems (wrong JSON types ...) are the walker's business: this
module skips what it cannot read rather than reporting it twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from fhir_bridge.errors import FhirPathError
from fhir_bridge.terminology import Terminology
from fhir_bridge.validation.walker import Context

NOT_ANSWERED_EXT = "https://fhir-bridge.example.org/StructureDefinition/not-answered-value"
CALCULATED_EXT = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"

# Questionnaire item type -> the QuestionnaireResponse answer keys it accepts (R4)
ANSWER_KEYS = {
    "boolean": ("valueBoolean",), "decimal": ("valueDecimal",), "integer": ("valueInteger",),
    "date": ("valueDate",), "dateTime": ("valueDateTime",), "time": ("valueTime",),
    "string": ("valueString",), "text": ("valueString",), "url": ("valueUri",),
    "choice": ("valueCoding",), "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",), "reference": ("valueReference",), "quantity": ("valueQuantity",),
}
COMPLETE_STATUSES = {"completed", "amended"}
PRIMITIVE_ANSWERS = {"boolean", "decimal", "integer", "date", "dateTime", "time", "string", "uri"}


def _type_of(key: str) -> str:
    """`valueDateTime` -> dateTime, `valueCoding` -> Coding: the FHIR type name, as in ofType()."""
    name = key[5:]
    lowered = name[0].lower() + name[1:]
    return lowered if lowered in PRIMITIVE_ANSWERS else name


@dataclass(slots=True)
class QItem:
    link_id: str
    type: str
    required: bool = False
    repeats: bool = False
    read_only: bool = False
    answer_keys: tuple[str, ...] = ()
    options: frozenset = frozenset()
    value_set: str | None = None
    not_answered: frozenset = frozenset()
    calculated: Callable | None = None
    calculated_source: str | None = None
    children: dict[str, "QItem"] = field(default_factory=dict)


@dataclass(slots=True)
class CompiledQuestionnaire:
    url: str
    version: str | None
    items: dict[str, QItem]
    all_items: dict[str, QItem]


def _option_value(option: dict) -> tuple[str, object] | None:
    for key, value in option.items():
        if key.startswith("value"):
            if key == "valueCoding":
                return key, (value.get("system"), value.get("code"))
            return key, value
    return None


def _answer_value(key: str, value) -> object:
    """A hashable stand-in for an answer, to look up among the options (None if it cannot be one)."""
    if key == "valueCoding":
        return (value.get("system"), value.get("code")) if type(value) is dict else None
    return None if type(value) in (dict, list) else value


def compile_questionnaire(q: dict, compile_fhirpath: Callable[[str], Callable],
                          terminology: Terminology) -> CompiledQuestionnaire:
    """Answer options, and answer value sets that can be enumerated, become sets looked up in O(1)."""
    all_items: dict[str, QItem] = {}

    def item(raw: dict) -> QItem:
        qi = QItem(raw["linkId"], raw.get("type", "string"), raw.get("required", False),
                   raw.get("repeats", False), raw.get("readOnly", False))
        options = [o for o in (_option_value(o) for o in raw.get("answerOption", ())) if o]
        qi.answer_keys = tuple(sorted({k for k, _ in options})) or ANSWER_KEYS.get(qi.type, ())
        qi.options = frozenset(v for _, v in options)
        qi.value_set = raw.get("answerValueSet")
        if qi.value_set and not qi.options:
            qi.options = frozenset((c.system, c.code) for c in terminology.expand(qi.value_set))
        for ext in raw.get("extension", ()):
            if ext.get("url") == NOT_ANSWERED_EXT and "valueCoding" in ext:
                qi.not_answered = qi.not_answered | {_answer_value("valueCoding", ext["valueCoding"])}
            elif ext.get("url") == CALCULATED_EXT:
                expr = ext.get("valueExpression", {}).get("expression")
                if expr:
                    qi.calculated_source = expr
                    try:
                        qi.calculated = compile_fhirpath(expr)
                    except FhirPathError:
                        qi.calculated = None
        qi.children = {c["linkId"]: item(c) for c in raw.get("item", ())}
        all_items[qi.link_id] = qi
        return qi

    top = {raw["linkId"]: item(raw) for raw in q.get("item", ())}
    return CompiledQuestionnaire(q.get("url", ""), q.get("version"), top, all_items)


class QuestionnaireChecker:
    """Paths and messages are only built when something is wrong: this runs on every response."""

    def __init__(self, terminology: Terminology):
        self.terminology = terminology

    def check(self, qr: dict, q: CompiledQuestionnaire, ctx: Context, expr: str = "QuestionnaireResponse") -> None:
        complete = qr.get("status") in COMPLETE_STATUSES
        self._items(qr.get("item"), q.items, q, expr, complete, ctx, qr)

    def _items(self, items, expected: dict[str, QItem], q: CompiledQuestionnaire, expr: str,
               complete: bool, ctx: Context, qr: dict) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items if type(items) is list else ()):
            link_id = item.get("linkId") if type(item) is dict else None
            if type(link_id) is not str:
                continue
            qi = expected.get(link_id)
            if qi is None:
                if link_id in q.all_items:
                    ctx.add("error", "structure", f"Item {link_id!r} is not expected at this level of the questionnaire",
                            f"{expr}.item[{i}]")
                else:
                    ctx.add("error", "not-found", f"linkId {link_id!r} is not an item of the questionnaire {q.url}",
                            f"{expr}.item[{i}]")
                continue
            if link_id in seen and not qi.repeats:
                ctx.add("error", "business-rule", f"linkId {link_id!r} appears more than once", f"{expr}.item[{i}]")
            seen.add(link_id)
            answers = item.get("answer")
            if type(answers) is list and answers:
                self._answers(answers, qi, q, f"{expr}.item[{i}]", complete, ctx, qr)
            if qi.type == "group":
                self._items(item.get("item"), qi.children, q, f"{expr}.item[{i}]", complete, ctx, qr)
        if complete:
            for link_id, qi in expected.items():
                if qi.required and link_id not in seen:
                    ctx.add("error", "required", f"Item {link_id!r} is required by the questionnaire",
                            f"{expr}.item.where(linkId = '{link_id}')")

    def _answers(self, answers: list, qi: QItem, q, where: str, complete: bool, ctx: Context, qr: dict) -> None:
        if qi.type in ("group", "display"):
            ctx.add("error", "structure", f"A {qi.type} item cannot have answers", f"{where}.answer[0]")
            return
        if len(answers) > 1 and not qi.repeats:
            ctx.add("error", "structure", f"Item {qi.link_id!r} does not repeat: one answer only, found {len(answers)}",
                    f"{where}.answer[1]")
        for j, answer in enumerate(answers):
            if type(answer) is not dict:
                continue
            for key in answer:
                if key[:5] == "value":
                    break
            else:
                continue
            if key not in qi.answer_keys:
                allowed = " or ".join(_type_of(k) for k in qi.answer_keys) or "nothing"
                ctx.add("error", "structure", f"Item {qi.link_id!r} ({qi.type}) takes {allowed} answers, not {_type_of(key)}",
                        f"{where}.answer[{j}].value.ofType({_type_of(key)})")
                continue
            if qi.options or qi.not_answered or qi.value_set:
                comparable = _answer_value(key, answer[key])
                if comparable is not None and comparable not in qi.options:
                    self._not_an_option(key, answer[key], comparable, qi, f"{where}.answer[{j}].value.ofType({_type_of(key)})", ctx)
            if qi.children and type(answer.get("item")) is list:
                self._items(answer["item"], qi.children, q, f"{where}.answer[{j}]", complete, ctx, qr)
        if qi.calculated is not None:
            self._calculated(answers[0], qi, where, ctx, qr)

    def _not_an_option(self, key: str, value, comparable, qi: QItem, expr: str, ctx: Context) -> None:
        if comparable in qi.not_answered:
            code = comparable[1] if type(comparable) is tuple else comparable
            ctx.add("information", "informational",
                    f"{code!r} for {qi.link_id!r} means not applicable: kept as recorded, counted as not answered, never scored",
                    expr)
            return
        if type(comparable) is tuple and self.terminology.code_problem(*comparable):
            return  # a code unknown in its own system: already reported on the Coding
        if qi.options and not qi.value_set:
            shown = comparable[1] if type(comparable) is tuple else comparable
            ctx.add("error", "code-invalid", f"{shown!r} is not one of the answer options of {qi.link_id!r}", expr)
        elif qi.value_set and key == "valueCoding" and type(value.get("code")) is str:
            check = self.terminology.validate_code(qi.value_set, value.get("system"), value["code"])
            if check.valid is False:
                ctx.add("error", "code-invalid", f"{check.message} (answer to {qi.link_id!r})", expr)

    def _calculated(self, answer: dict, qi: QItem, where: str, ctx: Context, qr: dict) -> None:
        given = next((v for k, v in answer.items() if k.startswith("value")), None)
        if type(given) not in (int, float, Decimal):
            return
        try:
            result = qi.calculated(qr, resource=qr, root_resource=qr)
        except Exception:  # noqa: BLE001 - an expression the engine cannot evaluate is reported as such
            ctx.unevaluated.add(f"calculatedExpression:{qi.link_id}")
            return
        expected = result[0] if result and type(result[0]) in (int, float, Decimal) else None
        if expected is None or abs(float(expected) - float(given)) > 0.005:
            shown = "no value" if expected is None else f"{float(expected):.2f}"
            ctx.add("warning", "value",
                    f"{qi.link_id!r} is {given} but its calculatedExpression gives {shown}",
                    f"{where}.answer[0]")
