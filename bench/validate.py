"""Benchmark: full profile validation of DIALOG QuestionnaireResponses vs fhir.resources parsing.

Generates N varied DIALOG responses (complete, partial, 'not applicable' ratings, ~10% invalid in
different ways), then, in the same process and on one core:
  1. validates each through the full profile validator (base R4 + DIALOG profile + extensions +
     FHIRPath invariants + terminology + the Questionnaire checks), and
  2. parses each with fhir.resources' R4B `QuestionnaireResponse.model_validate` alone
     (structure only: no profile, no terminology, no invariants, no Questionnaire).
Prints both rates and their ratio. Targets (issue 2): ratio >= 1.5 and >= 5,000 responses/s.

    python bench/validate.py [N]        (default 20000)
"""
from __future__ import annotations

import copy
import gc
import random
import sys
import time

from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from fhir_bridge.validation import Validator

BASE = "https://fhir-bridge.example.org"
DOMAINS = ["mental-health", "physical-health", "job-situation", "accommodation", "leisure-activities",
           "friendships", "partner-family", "personal-safety", "medication", "practical-help", "meetings"]
PURPOSES = ["prom", "care-planning"]
TIMEPOINTS = ["assessment", "review", "discharge", "other"]


def ext(name: str, key: str, value) -> dict:
    return {"url": f"{BASE}/StructureDefinition/{name}", key: value}


def response(rng: random.Random, n: int) -> dict:
    purpose = rng.choice(PURPOSES)
    items = []
    for domain in DOMAINS:
        if purpose == "care-planning" and rng.random() < 0.2:
            continue  # care planning often does not cover every domain
        code = "8" if rng.random() < 0.03 else str(rng.randint(1, 7))
        items.append({"linkId": domain, "answer": [{"valueCoding": {
            "system": f"{BASE}/CodeSystem/dialog-rating", "code": code}}]})
        if rng.random() < 0.9:
            yes = rng.random() < 0.3
            items.append({"linkId": f"{domain}.more-help", "answer": [{"valueCoding": {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0136", "code": "Y" if yes else "N",
                "display": "Yes" if yes else "No"}}]})
    extensions = [ext("dialog-collection-purpose", "valueCoding", {"system": f"{BASE}/CodeSystem/dialog-purpose", "code": purpose}),
                  ext("recording-organization", "valueReference", {"reference": f"Organization/org-{rng.randint(1, 9)}"})]
    if purpose == "prom" or rng.random() < 0.5:
        extensions.insert(1, ext("dialog-timepoint", "valueCoding", {"system": f"{BASE}/CodeSystem/dialog-timepoint",
                                                                     "code": rng.choice(TIMEPOINTS)}))
    return {
        "resourceType": "QuestionnaireResponse", "id": f"qr-{n}",
        "meta": {"profile": [f"{BASE}/StructureDefinition/dialog-questionnaire-response"]},
        "extension": extensions,
        "questionnaire": f"{BASE}/Questionnaire/dialog|1.0.0",
        "status": rng.choice(["completed", "completed", "completed", "amended", "in-progress"]),
        "subject": {"reference": f"Patient/p-{rng.randint(1, 5000)}"},
        "authored": f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(8, 18):02d}:15:00Z",
        "author": {"reference": f"Practitioner/pr-{rng.randint(1, 300)}"},
        "item": items,
    }


def break_it(rng: random.Random, qr: dict) -> dict:
    """One of the mistakes real feeds make."""
    bad = copy.deepcopy(qr)
    kind = rng.randrange(6)
    if kind == 0 and bad["item"]:
        bad["item"][0]["answer"][0]["valueCoding"]["code"] = rng.choice(["0", "9", "seven"])
    elif kind == 1:
        del bad["subject"]
    elif kind == 2:
        bad["authored"] = "2024-13-45"
    elif kind == 3 and bad["item"]:
        bad["item"].append(copy.deepcopy(bad["item"][0]))  # duplicate linkId
    elif kind == 4:
        bad["item"].append({"linkId": "mood", "answer": [{"valueInteger": 3}]})
    else:
        bad["colour"] = "red"
    return bad


def generate(n: int, seed: int = 20261122) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        qr = response(rng, i)
        out.append(break_it(rng, qr) if rng.random() < 0.1 else qr)
    return out


def rate(label: str, fn, resources: list[dict]) -> tuple[float, int]:
    fn(resources[0])  # warm caches
    failures = 0
    gc.collect()
    start = time.perf_counter()
    for r in resources:
        failures += fn(r)
    seconds = time.perf_counter() - start
    per_s = len(resources) / seconds
    print(f"{label:<52} {per_s:>9,.0f} responses/s  ({seconds * 1e6 / len(resources):6.1f} us each, {failures} invalid)")
    return per_s, failures


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    resources = generate(n)
    validator = Validator.load()

    def full(r: dict) -> int:
        return 0 if validator.validate(r).valid else 1

    def structural(r: dict) -> int:
        try:
            QuestionnaireResponse.model_validate(r)
            return 0
        except Exception:  # noqa: BLE001 - counting pydantic's rejections
            return 1

    print(f"{n} generated DIALOG QuestionnaireResponses, one core (single process)")
    ours, ours_bad = rate("fhir-bridge full profile validation", full, resources)
    theirs, theirs_bad = rate("fhir.resources R4B model_validate (structure only)", structural, resources)
    print(f"ratio full validation / fhir.resources: {ours / theirs:.2f}x  (target >= 1.5x)")
    print(f"target >= 5,000 responses/s: {'met' if ours >= 5000 else 'NOT met'}")
    print(f"invalid found: fhir-bridge {ours_bad}, fhir.resources {theirs_bad} "
          f"(fhir.resources cannot see profile, terminology or Questionnaire errors)")


if __name__ == "__main__":
    main()
