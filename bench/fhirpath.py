"""Benchmark: the FHIR R4 invariants of a 24-item QuestionnaireResponse, compiled FHIRPath vs fhirpathpy.

Finds every (invariant, node) pair the base spec defines for the response (dom-2..dom-6 on the
resource, qrs-1 on each item, ext-1 on each extension, ref-1 on each Reference...), checks that
both engines agree on every one, then evaluates them all N times with each engine, in the same
process, on one core, and prints evaluations/s, responses/s and the ratio.

    python bench/fhirpath.py [N]        (default 2000 passes of our engine; fhirpathpy runs N/20)
"""
from __future__ import annotations

import copy
import gc
import sys
import time
from pathlib import Path

import fhirpathpy
import orjson
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_bridge.fhirpath import compile_expression

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = orjson.loads((ROOT / "profiles/r4-core/structures.json").read_bytes())["types"]
EXAMPLE = ROOT / "examples/dialog-questionnaire-response/valid-prom-assessment-complete.json"
PLAIN_ELEMENTS = {"BackboneElement", "Element"}


def response() -> dict:
    """The 22-item DIALOG example plus a calculated mean and a free-text comment: 24 items."""
    qr = orjson.loads(EXAMPLE.read_bytes())
    qr["item"].append({"linkId": "mean-satisfaction", "answer": [{"valueDecimal": 4.18}]})
    qr["item"].append({"linkId": "comments", "text": "Anything else?", "answer": [{"valueString": "Thanks"}]})
    qr["text"] = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">DIALOG</div>"}
    assert len(qr["item"]) == 24
    return qr


def elements(type_name: str) -> dict[str, dict]:
    return {e["path"]: e for e in STRUCTURES[type_name]["elements"]}


def child_element(path: str, key: str) -> dict | None:
    table = elements(path.split(".")[0])
    element = table.get(f"{path}.{key}")
    if element is None:  # a choice element: valueCoding -> value[x]
        element = next((e for p, e in table.items() if p.endswith("[x]") and f"{path}.{key}".startswith(p[:-3])), None)
    if element is not None and element.get("contentReference"):
        element = table[element["contentReference"].lstrip("#")]
    return element


def invariant_sites(node: dict, path: str, seen_keys: frozenset = frozenset()):
    """Yield (expression, node, base path) for every invariant that applies at or below node."""
    element = elements(path.split(".")[0])[path]
    keys = set(seen_keys)
    for c in element.get("constraint", ()):
        if c["key"] not in keys:
            keys.add(c["key"])
            yield c["expression"], node, path
    for key, value in node.items():
        child = child_element(path, key) if key != "resourceType" else None
        if child is None:
            continue
        codes = [t["code"] for t in child.get("type", ())]
        code = next((c for c in codes if key.endswith(c[0].upper() + c[1:])), codes[0] if codes else None)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                continue
            if code in STRUCTURES and code not in PLAIN_ELEMENTS:  # a data type: its own invariants too
                inherited = set()
                for c in child.get("constraint", ()):
                    inherited.add(c["key"])
                    yield c["expression"], item, code
                yield from invariant_sites(item, code, frozenset(inherited))
            else:
                yield from invariant_sites(item, child["path"])


def main(n: int) -> None:
    qr = response()
    sites = list(invariant_sites(qr, "QuestionnaireResponse"))
    context = {"resource": qr, "rootResource": qr}
    model = models["r4"]

    ours = [(compile_expression(expr).is_true, node) for expr, node, _ in sites]
    quiet = {"traceFn": lambda label, value: None}  # dom-3 and ref-1 call trace()
    theirs = [(fhirpathpy.compile(expr, model=model, options=quiet), ResourceNode.create_node(copy.deepcopy(node), base))
              for expr, node, base in sites]

    for (check, node), (fn, fp_node), (expr, _, base) in zip(ours, theirs, sites):
        expected = fn(fp_node, context)
        assert check(node, resource=qr, root_resource=qr) == (expected != [False]), (base, expr, expected)

    def run_ours(passes: int) -> float:
        start = time.perf_counter()
        for _ in range(passes):
            for check, node in ours:
                check(node, resource=qr, root_resource=qr)
        return time.perf_counter() - start

    def run_theirs(passes: int) -> float:
        start = time.perf_counter()
        for _ in range(passes):
            for fn, fp_node in theirs:
                fn(fp_node, context)
        return time.perf_counter() - start

    gc.collect()
    run_ours(max(n // 10, 1))  # warm-up: caches and branch predictors
    ours_s = run_ours(n)
    fp_passes = max(n // 20, 1)
    theirs_s = run_theirs(fp_passes)

    per_response = len(sites)
    ours_rate = n * per_response / ours_s
    theirs_rate = fp_passes * per_response / theirs_s
    distinct = len({expr for expr, _, _ in sites})
    print(f"QuestionnaireResponse with {len(qr['item'])} items: {per_response} invariant evaluations per response")
    print(f"  ({distinct} distinct expressions; all {per_response} results agree with fhirpathpy)")
    print(f"compiled FHIRPath : {ours_rate:12,.0f} evaluations/s  {ours_rate / per_response:10,.0f} responses/s"
          f"  {1e6 / ours_rate:6.2f} us/evaluation")
    print(f"fhirpathpy {fhirpathpy.__version__:7}: {theirs_rate:12,.0f} evaluations/s  {theirs_rate / per_response:10,.0f} responses/s"
          f"  {1e6 / theirs_rate:6.2f} us/evaluation")
    print(f"ratio             : {ours_rate / theirs_rate:12.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
