"""The DIALOG item table, built from the project's conformance data, never hard-coded here.

Which domain a QuestionnaireResponse item belongs to is decided by the Questionnaire item's codes
(linkId -> Questionnaire item -> dialog-domain code -> domain), never by position: sources disagree
on item order (MHSDS/SNOMED number friendships 6 and partner/family 7, QMUL material swaps them).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import orjson

from fhir_bridge.errors import ConfigurationError, InputError
from fhir_bridge.identifiers import sctid_problem

CANONICAL_BASE = "https://fhir-bridge.example.org"
DIALOG_QUESTIONNAIRE_URL = f"{CANONICAL_BASE}/Questionnaire/dialog"
DIALOG_DOMAIN_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/dialog-domain"
DIALOG_RATING_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/dialog-rating"
DIALOG_MORE_HELP_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/dialog-more-help"
DIALOG_SCORE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/dialog-score"
NOT_ANSWERED_VALUE_URL = f"{CANONICAL_BASE}/StructureDefinition/not-answered-value"
ORDINAL_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
SNOMED_SYSTEM = "http://snomed.info/sct"
YES_NO_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0136"

QUESTIONNAIRE_FILE = "Questionnaire-dialog.json"
DOMAIN_CODESYSTEM_FILE = "CodeSystem-dialog-domain.json"

Part = Literal["sqol", "treatment"]
ItemOrder = Literal["mhsds", "qmul"]
PARTS: tuple[Part, ...] = ("sqol", "treatment")
RATING_RANGE = range(1, 8)
SystemCode = tuple[str, str]


@dataclass(frozen=True)
class DialogDomain:
    """One DIALOG item, as the dialog-domain CodeSystem describes it."""

    code: str
    display: str
    mhsds_item: int
    qmul_item: int
    snomed: str
    part: Part

    @property
    def in_change_measures(self) -> bool:
        # NHS England's dashboard leaves the treatment (PREM) items 9-11 out of change measures.
        return self.part == "sqol"


@dataclass(frozen=True)
class RatingItem:
    """The Questionnaire's rating question for one domain and the answers it allows."""

    link_id: str
    domain: DialogDomain
    snomed_coding: Mapping[str, str]
    ratings: Mapping[SystemCode, int]   # answerOption (system, code) -> rating 1-7
    not_answered: frozenset[SystemCode]  # recorded, but "not applicable": never a score


@dataclass(frozen=True)
class DialogDefinition:
    url: str
    version: str | None
    domains: tuple[DialogDomain, ...]           # in MHSDS order
    rating_items: Mapping[str, RatingItem]      # by linkId
    help_items: Mapping[str, DialogDomain]      # by linkId
    link_ids: frozenset[str]                    # every linkId the Questionnaire defines

    def domain(self, code: str) -> DialogDomain:
        return self._by_code[code]

    def rating_item_for(self, domain: DialogDomain) -> RatingItem:
        return self._rating_by_domain[domain.code]

    def help_link_for(self, domain: DialogDomain) -> str | None:
        return self._help_by_domain.get(domain.code)

    # Lookups by domain code, built once: scoring runs on every stored DIALOG response.
    @cached_property
    def _by_code(self) -> dict[str, DialogDomain]:
        return {d.code: d for d in self.domains}

    @cached_property
    def _rating_by_domain(self) -> dict[str, RatingItem]:
        return {item.domain.code: item for item in self.rating_items.values()}

    @cached_property
    def _help_by_domain(self) -> dict[str, str]:
        return {d.code: link for link, d in self.help_items.items()}

    def ratings_by_domain(self, values: Sequence[Any], order: ItemOrder) -> dict[str, Any]:
        """Key a source's positional item values (item 1 first) by domain code.

        `order` names the numbering the source uses; values pass through unchanged.
        """
        if order not in ("mhsds", "qmul"):
            raise ValueError(f"unknown DIALOG item order {order!r}: use 'mhsds' or 'qmul'")
        if len(values) != len(self.domains):
            raise InputError(f"expected {len(self.domains)} DIALOG item values, got {len(values)}")
        number = {d.code: d.mhsds_item if order == "mhsds" else d.qmul_item for d in self.domains}
        return {d.code: values[number[d.code] - 1] for d in self.domains}


def load_dialog_definition(profiles_dir: str | Path, terminology_dir: str | Path) -> DialogDefinition:
    """Read and cross-check the DIALOG Questionnaire and dialog-domain CodeSystem (cached per folder)."""
    return _load_cached(Path(profiles_dir).resolve(), Path(terminology_dir).resolve())


@lru_cache(maxsize=8)
def _load_cached(profiles_dir: Path, terminology_dir: Path) -> DialogDefinition:
    questionnaire_path = profiles_dir / QUESTIONNAIRE_FILE
    codesystem_path = terminology_dir / DOMAIN_CODESYSTEM_FILE
    domains = _read_domains(_read_json(codesystem_path), codesystem_path)
    return _read_questionnaire(_read_json(questionnaire_path), domains, questionnaire_path)


def build_dialog_definition(questionnaire: dict, domain_codesystem: dict) -> DialogDefinition:
    """The same checks as load_dialog_definition, on resources already in memory."""
    domains = _read_domains(domain_codesystem, "dialog-domain CodeSystem")
    return _read_questionnaire(questionnaire, domains, "DIALOG Questionnaire")


def _read_json(path: Path) -> dict:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}", location=str(path)) from exc


def _fail(source: object, message: str) -> ConfigurationError:
    return ConfigurationError(f"{source}: {message}", location=str(source))


def _flatten(nodes: list[dict], child_key: str) -> list[dict]:
    return [n for node in nodes for n in (node, *_flatten(node.get(child_key, []), child_key))]


def _read_domains(codesystem: dict, source: object) -> dict[str, DialogDomain]:
    if codesystem.get("url") != DIALOG_DOMAIN_SYSTEM:
        raise _fail(source, f"expected CodeSystem {DIALOG_DOMAIN_SYSTEM}, found {codesystem.get('url')!r}")
    domains = {c["code"]: _read_domain(c, source) for c in _flatten(codesystem.get("concept", []), "concept")}
    for order in ("mhsds_item", "qmul_item"):
        numbers = sorted(getattr(d, order) for d in domains.values())
        if numbers != list(range(1, len(domains) + 1)):
            raise _fail(source, f"{order.replace('_', '-')} numbers are not 1..{len(domains)}: {numbers}")
    return dict(sorted(domains.items(), key=lambda kv: kv[1].mhsds_item))


def _read_domain(concept: dict, source: object) -> DialogDomain:
    props = {p.get("code"): p for p in concept.get("property", [])}

    def value(name: str, key: str) -> Any:
        if key not in props.get(name, {}):
            raise _fail(source, f"concept {concept.get('code')!r} lacks property {name} ({key})")
        return props[name][key]

    snomed, part = value("snomed-item", "valueCode"), value("part", "valueCode")
    if problem := sctid_problem(snomed):
        raise _fail(source, f"concept {concept['code']!r}: snomed-item {snomed} is not an SCTID: {problem}")
    if part not in PARTS:
        raise _fail(source, f"concept {concept['code']!r}: part {part!r} is not one of {PARTS}")
    return DialogDomain(
        code=concept["code"],
        display=concept.get("display", concept["code"]),
        mhsds_item=value("mhsds-item", "valueInteger"),
        qmul_item=value("qmul-item", "valueInteger"),
        snomed=snomed,
        part=part,
    )


def _code_in(item: dict, system: str) -> dict | None:
    return next((c for c in item.get("code", []) if c.get("system") == system), None)


def _read_questionnaire(questionnaire: dict, domains: dict[str, DialogDomain], source: object) -> DialogDefinition:
    if questionnaire.get("url") != DIALOG_QUESTIONNAIRE_URL:
        raise _fail(source, f"expected Questionnaire {DIALOG_QUESTIONNAIRE_URL}, found {questionnaire.get('url')!r}")
    items = _flatten(questionnaire.get("item", []), "item")
    rating_items: dict[str, RatingItem] = {}
    help_items: dict[str, DialogDomain] = {}
    for item in items:
        if coding := _code_in(item, DIALOG_DOMAIN_SYSTEM):
            rating_items[item["linkId"]] = _read_rating_item(item, _domain_for(coding, domains, item, source), source)
        elif coding := _code_in(item, DIALOG_MORE_HELP_SYSTEM):
            help_items[item["linkId"]] = _domain_for(coding, domains, item, source)
    _require_one_each([i.domain.code for i in rating_items.values()], domains, "rating", source)
    _require_one_each([d.code for d in help_items.values()], domains, "more-help", source, allow_missing=True)
    return DialogDefinition(
        url=questionnaire["url"],
        version=questionnaire.get("version"),
        domains=tuple(domains.values()),
        rating_items=rating_items,
        help_items=help_items,
        link_ids=frozenset(item["linkId"] for item in items),
    )


def _domain_for(coding: dict, domains: dict[str, DialogDomain], item: dict, source: object) -> DialogDomain:
    if coding.get("code") not in domains:
        raise _fail(source, f"item {item.get('linkId')!r} has code {coding.get('code')!r}, not a dialog-domain concept")
    return domains[coding["code"]]


def _read_rating_item(item: dict, domain: DialogDomain, source: object) -> RatingItem:
    where = f"item {item['linkId']!r}"
    snomed = _code_in(item, SNOMED_SYSTEM)
    # The two codes must agree: a mismatch here would put a score under the wrong SNOMED concept.
    if snomed is None or snomed.get("code") != domain.snomed:
        raise _fail(source, f"{where}: SNOMED code {snomed and snomed.get('code')!r} differs from "
                            f"dialog-domain#{domain.code} snomed-item {domain.snomed}")
    ratings = {_system_code(o.get("valueCoding", {})): _option_rating(o, where, source)
               for o in item.get("answerOption", [])}
    not_answered = frozenset(_system_code(e.get("valueCoding", {})) for e in item.get("extension", [])
                             if e.get("url") == NOT_ANSWERED_VALUE_URL)
    if sorted(ratings.values()) != list(RATING_RANGE) or not_answered & ratings.keys():
        raise _fail(source, f"{where}: answer options must rate 1..7 once each, apart from the not-answered value")
    return RatingItem(item["linkId"], domain, {k: snomed[k] for k in ("system", "code", "display") if k in snomed},
                      ratings, not_answered)


def _option_rating(option: dict, where: str, source: object) -> int:
    coding = option.get("valueCoding", {})
    code = coding.get("code", "")
    ordinals = {e.get("valueDecimal") for e in [*option.get("extension", []), *coding.get("extension", [])]
                if e.get("url") == ORDINAL_VALUE_URL}
    # The code is the rating; an ordinalValue must agree so that both ways of reading an answer agree.
    if coding.get("system") != DIALOG_RATING_SYSTEM or not code.isdigit() or ordinals - {int(code)}:
        raise _fail(source, f"{where}: answer option {coding!r} is not a dialog-rating with a matching ordinal")
    return int(code)


def _require_one_each(seen: list[str], domains: dict[str, DialogDomain], kind: str, source: object,
                      allow_missing: bool = False) -> None:
    # Help questions are optional (a form may skip them); a rating question per domain is not.
    duplicates = sorted({c for c in seen if seen.count(c) > 1})
    missing = [] if allow_missing else [c for c in domains if c not in seen]
    if duplicates or missing:
        raise _fail(source, f"{kind} items: duplicated {duplicates}, missing {missing}")


def _system_code(coding: Mapping[str, Any]) -> SystemCode:
    return coding.get("system", ""), coding.get("code", "")
