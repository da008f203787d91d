"""lookup, validate-code, expand and translate over terminology held in memory.

Value sets are expanded once, at load, into sets of (system, code): validating a code on the
hot path is a set membership test. Code systems the project cannot enumerate (SNOMED CT, LOINC,
UCUM, mime types ...) are "open": codes from them are accepted by a value set that includes the
whole system, and SNOMED CT identifiers are still checked for their Verhoeff digit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.fhir.package import ConformancePackage, load_package
from fhir_bridge.identifiers import sctid_problem

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True, slots=True)
class Concept:
    system: str
    code: str
    display: str | None
    properties: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """Result of validate-code. `valid` is None when the value set cannot be checked here."""

    valid: bool | None
    message: str = ""
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Translation:
    system: str
    code: str
    display: str | None
    equivalence: str


@dataclass(slots=True)
class _ValueSet:
    url: str
    name: str
    members: frozenset[tuple[str, str]]
    open_systems: frozenset[str]  # whole systems we cannot enumerate: any code of them is a member
    codes: frozenset[str]         # codes alone, for `code` elements bound without a system
    enumerable: bool = True


class Terminology:
    def __init__(self, package: ConformancePackage, core_valuesets: dict[str, dict] | None = None):
        self._concepts: dict[str, dict[str, Concept]] = {}
        self._complete: set[str] = set()
        self._valuesets: dict[str, _ValueSet] = {}
        self._valueset_resources: dict[str, dict] = {}
        self._conceptmaps: dict[str, dict] = {}
        for cs in package.of_type("CodeSystem"):
            self._add_codesystem(cs)
        for url, entry in (core_valuesets or {}).items():
            self._add_core_valueset(url, entry)
        for vs in package.of_type("ValueSet"):
            self._valueset_resources[vs["url"]] = vs
        for vs in package.of_type("ValueSet"):
            try:
                self._valuesets[vs["url"]] = self._expand_resource(vs, depth=0)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{package.where_from(vs)}: {exc.message}") from exc
        for cm in package.of_type("ConceptMap"):
            self._conceptmaps[cm["url"]] = cm

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path, core_valuesets: Path | None = None) -> "Terminology":
        core = None
        core_path = core_valuesets or folder / "r4-core" / "valuesets.json"
        if core_path.exists():
            core = orjson.loads(core_path.read_bytes())["valueSets"]
        return cls(load_package(folder), core)

    def _add_codesystem(self, cs: dict) -> None:
        url = cs["url"]
        concepts = self._concepts.setdefault(url, {})

        def walk(items: list[dict]) -> None:
            for c in items:
                props = {p["code"]: _property_value(p) for p in c.get("property", ())}
                concepts[c["code"]] = Concept(url, c["code"], c.get("display"), props)
                walk(c.get("concept", ()))

        walk(cs.get("concept", ()))
        if cs.get("content", "complete") == "complete":
            self._complete.add(url)

    def _add_core_valueset(self, url: str, entry: dict) -> None:
        if "codes" not in entry:
            self._valuesets[url] = _ValueSet(url, entry.get("name", url), frozenset(), frozenset(), frozenset(), False)
            return
        members = frozenset((s, c) for s, codes in entry["codes"].items() for c in codes)
        self._valuesets[url] = _ValueSet(url, entry.get("name", url), members, frozenset(),
                                         frozenset(c for _, c in members))

    def _expand_resource(self, vs: dict, depth: int) -> _ValueSet:
        if depth > 8:
            raise ConfigurationError(f"ValueSet {vs['url']}: includes nest too deep (a cycle?)")
        members: set[tuple[str, str]] = set()
        open_systems: set[str] = set()
        compose = vs.get("compose", {})
        for inc in compose.get("include", ()):
            m, o = self._include(inc, vs["url"], depth)
            members |= m
            open_systems |= o
        for exc in compose.get("exclude", ()):
            m, _ = self._include(exc, vs["url"], depth)
            members -= m
        return _ValueSet(vs["url"], vs.get("name", vs["url"]), frozenset(members), frozenset(open_systems),
                         frozenset(c for _, c in members))

    def _include(self, inc: dict, vs_url: str, depth: int) -> tuple[set, set]:
        members: set[tuple[str, str]] = set()
        open_systems: set[str] = set()
        for ref in inc.get("valueSet", ()):
            sub = self._valueset_resources.get(ref.split("|")[0])
            if sub is None:
                raise ConfigurationError(f"ValueSet {vs_url} includes unknown value set {ref}")
            expanded = self._expand_resource(sub, depth + 1)
            members |= expanded.members
            open_systems |= expanded.open_systems
        system = inc.get("system")
        if not system:
            return members, open_systems
        if inc.get("concept"):
            members |= {(system, c["code"]) for c in inc["concept"]}
        elif inc.get("filter"):
            members |= self._filter(system, inc["filter"], vs_url)
        elif system in self._complete:
            members |= {(system, code) for code in self._concepts[system]}
        else:
            open_systems.add(system)
        return members, open_systems

    def _filter(self, system: str, filters: list[dict], vs_url: str) -> set[tuple[str, str]]:
        concepts = self._concepts.get(system)
        if concepts is None:
            raise ConfigurationError(f"ValueSet {vs_url} filters {system}, which is not loaded")
        selected = set(concepts)
        for f in filters:
            if f.get("op") != "=":
                raise ConfigurationError(f"ValueSet {vs_url}: filter op {f.get('op')!r} is not supported")
            selected = {c for c in selected if str(concepts[c].properties.get(f["property"])).lower() == f["value"].lower()}
        return {(system, c) for c in selected}

    # -- operations ----------------------------------------------------------------------------
    def lookup(self, system: str, code: str) -> Concept | None:
        return self._concepts.get(system, {}).get(code)

    def knows_valueset(self, url: str) -> bool:
        return url.split("|")[0] in self._valuesets

    def code_problem(self, system: str | None, code: str | None) -> str | None:
        """Is this code wrong whatever the binding? Unknown in a complete code system we hold, or
        a SNOMED CT identifier whose check digit fails (spreadsheet-corrupted SCTIDs)."""
        if system is None or code is None:
            return None
        if system == SNOMED:
            problem = sctid_problem(code)
            return f"{code} is not a valid SNOMED CT identifier: {problem}" if problem else None
        if system in self._complete and code not in self._concepts[system]:
            return f"Unknown code {code!r} in code system {system}"
        return None

    def validate_code(self, valueset: str, system: str | None, code: str) -> CodeCheck:
        vs = self._valuesets.get(valueset.split("|")[0])
        if vs is None or not vs.enumerable:
            return CodeCheck(None, f"value set {valueset} cannot be checked here")
        if system is None:
            ok = code in vs.codes
        else:
            ok = (system, code) in vs.members or system in vs.open_systems
        if ok:
            concept = self.lookup(system, code) if system else None
            return CodeCheck(True, display=concept.display if concept else None)
        where = f"{system}#{code}" if system else repr(code)
        return CodeCheck(False, f"The code {where} is not in the value set {vs.name} ({vs.url})")

    def expand(self, valueset: str) -> list[Concept]:
        vs = self._valuesets.get(valueset.split("|")[0])
        if vs is None:
            return []
        return [self.lookup(s, c) or Concept(s, c, None) for s, c in sorted(vs.members)]

    def translate(self, conceptmap: str, system: str, code: str, *, reverse: bool = False) -> list[Translation]:
        cm = self._conceptmaps.get(conceptmap.split("|")[0])
        if cm is None:
            return []
        out = []
        for group in cm.get("group", ()):
            src, tgt = group.get("source"), group.get("target")
            for el in group.get("element", ()):
                for target in el.get("target", ()):
                    if not reverse and src == system and el.get("code") == code:
                        out.append(Translation(tgt, target["code"], target.get("display"), target.get("equivalence", "equivalent")))
                    elif reverse and tgt == system and target.get("code") == code:
                        out.append(Translation(src, el["code"], el.get("display"), target.get("equivalence", "equivalent")))
        return out

    def conceptmaps(self) -> list[dict]:
        return list(self._conceptmaps.values())


def _property_value(p: dict):
    for key, value in p.items():
        if key.startswith("value"):
            return value
    return None
