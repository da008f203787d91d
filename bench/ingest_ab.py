"""Benchmark: this checkout's import against another revision's, both at once, on one export.

This machine's speed drifts by up to 1.7x within minutes (bench/machine.py), so two imports run
one after the other differ by +-10% with no change at all: a few per cent gained cannot be told
from that. Run at the same moment, both see the same machine. Each pair imports the same
`synth` export into two fresh SQLite stores, one with the given revision's code (a temporary git
worktree, removed at the end) and one with this checkout's, started together. They share the
cores, so their records/s are about half a lone import's: compare them with each other, not with
`bench/ingest.py`. Per pair it prints records/s and the CPU seconds of the importing process
(`main`: the busier one, usually) and of its workers, then the mean ratio of the pairs.

    python bench/ingest_ab.py REV [--pairs 3] [--count 20000] [--source rio|hl7]

REV is any git revision (`HEAD~2`, a commit id); the working tree's uncommitted changes are the
"this checkout" side. One worker process each (FHIR_BRIDGE_IMPORT_WORKERS is not read).
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

# Run in a fresh interpreter whose fhir_bridge is the one on PYTHONPATH: one import, its figures as JSON.
_IMPORT = """
import json, resource, sys, time
from pathlib import Path
from fhir_bridge.bridge import Bridge
from fhir_bridge.config import Settings
from fhir_bridge.pipelines.care_access import operator_caller
from fhir_bridge.pipelines.sources import run_import
source, export, store = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
bridge = Bridge(Settings.from_env({"FHIR_BRIDGE_DATA_DIR": store}))
start, own = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
report = run_import(bridge, source, [export], organization="RV3", caller=operator_caller("RV3"), quarantine_dir=None,
                    workers=1)
seconds = time.perf_counter() - start
mine, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
bridge.close()
print(json.dumps({"records": report.records_in, "seconds": seconds, "balanced": report.balanced,
                  "main": mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime,
                  "workers": workers.ru_utime + workers.ru_stime}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--count", type=int, default=20000, help="DIALOG assessments (hl7: messages / 4 patients)")
    parser.add_argument("--source", choices=("rio", "hl7"), default="rio")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fhir-bridge-ab-"))
    base = work / "base"
    try:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.rev], check=True)
        sys.path.insert(0, str(REPO))
        from fhir_bridge.synth import generate
        export = work / "export"
        generate(args.source, export, count=args.count if args.source == "rio" else max(args.count // 4, 100), seed=1)
        ratios = []
        print(f"{'pair':>4}  {args.rev + ' records/s':>22} {'main s':>7} {'workers s':>9}   "
              f"{'this checkout':>14} {'main s':>7} {'workers s':>9}   ratio")
        for pair in range(1, args.pairs + 1):
            old, new = together([(base, work / f"old-{pair}"), (REPO, work / f"new-{pair}")], args.source, export)
            ratio = (new["records"] / new["seconds"]) / (old["records"] / old["seconds"])
            ratios.append(ratio)
            print(f"{pair:>4}  {old['records'] / old['seconds']:>22,.0f} {old['main']:>7.1f} {old['workers']:>9.1f}   "
                  f"{new['records'] / new['seconds']:>14,.0f} {new['main']:>7.1f} {new['workers']:>9.1f}   {ratio:.3f}")
        print(f"this checkout / {args.rev}: mean ratio {sum(ratios) / len(ratios):.3f} over {len(ratios)} pairs "
              f"({min(ratios):.3f}-{max(ratios):.3f})")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def together(sides: list[tuple[Path, Path]], source: str, export: Path) -> list[dict]:
    """Both imports started at once; each side's figures (it fails the benchmark if one fails)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FHIR_BRIDGE_IMPORT_WORKERS")}
    running = [subprocess.Popen([sys.executable, "-c", _IMPORT, source, str(export), str(store)],
                                env={**env, "PYTHONPATH": str(code)}, stdout=subprocess.PIPE, text=True)
               for code, store in sides]
    results = []
    for process in running:
        out, _ = process.communicate()
        if process.returncode != 0:
            for other in running:  # not left writing into the worktree and folder about to be removed
                other.kill()
                other.wait()
            sys.exit(f"an import failed (exit code {process.returncode}); its traceback is above")
        result = json.loads(out.strip().splitlines()[-1])
        if not result["balanced"]:
            sys.exit(f"an import's report does not balance: {result}")
        results.append(result)
    return results


if __name__ == "__main__":
    main()
