"""Benchmark: an import worker's own work (map, validate, score, index), this checkout against a revision.

An import's worker process maps, validates, scores and indexes each record (pipelines/prepare.py). That work
needs no store, no socket and no other process, so it is measured here alone, in one fresh
process per run, as a worker does it: a `synth rio` export's records in file order, each through
`prepare` and `_compact`, with the objects and garbage-collector settings of a worker
(`_build_worker`: REV must have it, 88542dd or later). A change to mapping,
validation or scoring shows here within a few per cent, where a whole import (bench/ingest.py,
bench/ingest_ab.py) moves by +-10% with the machine and with how the importing process and the
worker share the cores.

    python bench/prepare.py [N] [--against REV] [--rounds 2]

Runs this checkout and, with --against, revision REV (a temporary git worktree) alternately,
`--rounds` times each, and prints for each run the seconds spent per phase (map, validate; score,
index and pack) and the microseconds per record of each extract; then each side's best total and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# One run in a fresh interpreter whose fhir_bridge is the one on PYTHONPATH; its figures as JSON.
_RUN = """
import gc, json, sys, time
from pathlib import Path
from fhir_bridge.config import Settings
from fhir_bridge.mapping import MappingEngine, load_mappings
from fhir_bridge.pipelines import prepare as prepare_module
from fhir_bridge.pipelines.source_adapters import adapter_factory
from fhir_bridge.validation import Validator

settings = Settings.from_env({"FHIR_BRIDGE_DATA_DIR": sys.argv[2]})
validator = Validator.load(settings)
engine = MappingEngine(load_mappings(settings.mappings_dir, validator.terminology), validator.terminology)
records = list(adapter_factory("rio")(engine, "RV3", None).records([Path(sys.argv[1])]))
# the worker's own objects, built as a worker builds them (gc settings included)
prepare_module._build_worker(prepare_module.Recipe(settings, "rio", "RV3"))
mapper, validator, *derived = prepare_module._worker  # derived: score rows (and, later, the indexer)
spent = {"map": 0.0, "validate": 0.0}
def timed(name, work):
    def run(*args, **kwargs):
        started = time.process_time()
        try:
            return work(*args, **kwargs)
        finally:
            spent[name] += time.process_time() - started
    return run
mapper, validator.validate = timed("map", mapper), timed("validate", validator.validate)
per_file = {}
started = time.process_time()
for record in records:
    at = time.process_time()
    prepare_module._compact(prepare_module.prepare(record, mapper, validator), *derived)
    name = record.location.split(":")[0].rsplit("/", 1)[-1]
    count, seconds = per_file.get(name, (0, 0.0))
    per_file[name] = (count + 1, seconds + time.process_time() - at)
total = time.process_time() - started
print(json.dumps({"records": len(records), "total": total, "map": spent["map"], "validate": spent["validate"],
                  "rest": total - spent["map"] - spent["validate"],
                  "per_file": {k: 1e6 * s / n for k, (n, s) in per_file.items()}}))
"""


def run(code: Path, export: Path, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", _RUN, str(export), str(scratch)], env={**env, "PYTHONPATH": str(code)},
                          stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"a run failed (exit code {done.returncode}); its traceback is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def show(label: str, figures: dict) -> None:
    files = "  ".join(f"{name.removesuffix('.csv')} {us:.0f}" for name, us in sorted(figures["per_file"].items()))
    print(f"{label:>14} {figures['total']:7.2f} {figures['map']:6.2f} {figures['validate']:9.2f} "
          f"{figures['rest']:17.2f}   {files}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=20000, help="DIALOG assessments in the export")
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fhir-bridge-prepare-"))
    base = work / "base"
    try:
        sys.path.insert(0, str(REPO))
        from machine import describe  # bench/machine.py: this script's folder is on the path
        from fhir_bridge.synth import generate
        export = work / "export"
        generate("rio", export, count=args.count, seed=1)
        sides = [("this checkout", REPO)]
        if args.against:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.against],
                           check=True)
            sides.append((args.against, base))
        print(describe(work))
        print(f"{'CPU s':>14} {'total':>7} {'map':>6} {'validate':>9} {'score+index+pack':>17}   us a record by extract")
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for label, code in sides:
                figures = run(code, export, work / "scratch")
                show(label, figures)
                best[label] = min(best.get(label, figures["total"]), figures["total"])
        if args.against:
            print(f"this checkout / {args.against}: {best['this checkout'] / best[args.against]:.3f} of the CPU "
                  f"(best of {args.rounds} each)")
        print(describe(work))
    finally:
        if args.against:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
