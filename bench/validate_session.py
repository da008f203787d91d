"""Benchmark: CPU cost of validating what one `$dialog-plus-session` validates, per resource.

The session validates the DIALOG QuestionnaireResponse it is sent (two SDC calculatedExpressions
included) and the CarePlan, CareTeam and Goal it builds. This validates the bench's ratings
(examples/dialog-questionnaire-response/valid-care-planning-partial.json) and the DIALOG+
examples of the three, each N times, in one process on one core, and prints microseconds per
resource: process CPU time, best of R rounds, so that a busy neighbour on the machine adds
less noise. Each copy gets
its own ids and subject, as sessions for different people would.

    python bench/validate_session.py [N] [R]        (default 2000 resources, 5 rounds)
"""
from __future__ import annotations

import copy
import gc
import sys
import time
from pathlib import Path

import orjson

from fhir_bridge.validation import Validator
from fhir_bridge.validation.walker import Context

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RESOURCES = {
    "QuestionnaireResponse": "dialog-questionnaire-response/valid-care-planning-partial.json",
    "CarePlan": "dialog-plus-careplan/valid-dialog-plus-plan.json",
    "CareTeam": "dialog-plus-careteam/valid-careteam-key-worker-changed.json",
    "Goal": "dialog-plus-goal/valid-goal-accommodation.json",
}


def variants(example: dict, n: int) -> list[dict]:
    out = []
    for i in range(n):
        r = copy.deepcopy(example)
        r["id"] = f"{r.get('id', 'r')}-{i}"
        if type(r.get("subject")) is dict:
            r["subject"]["reference"] = f"Patient/p-{i}"
        out.append(r)
    return out


def best_us(fn, resources: list[dict], rounds: int) -> float:
    fn(resources[0])  # warm caches
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        for r in resources:
            fn(r)
        best = min(best, time.process_time() - start)
    return best * 1e6 / len(resources)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    validator = Validator.load()
    loaded = {rtype: orjson.loads((EXAMPLES / path).read_bytes()) for rtype, path in RESOURCES.items()}
    for rtype, resource in loaded.items():
        result = validator.validate(resource)
        assert result.valid, (rtype, [i.message for i in result.errors])

    qr = loaded["QuestionnaireResponse"]
    questionnaire = validator.questionnaires[qr["questionnaire"]]

    def questionnaire_checks(r: dict) -> None:  # the QuestionnaireChecker alone (calculatedExpressions)
        validator.checker.check(r, questionnaire, Context(r))

    print(f"{n} resources x {rounds} rounds, one core; best round, CPU microseconds per resource")
    session = 0.0
    for rtype, resource in loaded.items():
        copies = variants(resource, n)
        us = best_us(validator.validate, copies, rounds)
        session += us
        print(f"  {rtype:<34} {us:8.1f} us")
        if rtype == "QuestionnaireResponse":
            print(f"    of which the Questionnaire checks {best_us(questionnaire_checks, copies, rounds):8.1f} us")
    print(f"  {'one session (the four)':<34} {session:8.1f} us")


if __name__ == "__main__":
    main()
