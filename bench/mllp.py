"""Benchmark: ACK latency of the MLLP listener at a steady message rate, over a real socket.

1. `synth hl7` writes a feed; its ORU^R01 DIALOG messages are what is sent (each carries the
   person's PID, so the first of a person also creates their Patient).
2. `fhir-bridge mllp` runs as a subprocess on a fresh SQLite store in a temporary directory.
3. python-hl7's MLLP client sends one message at a time on one connection, waiting for each ACK
   (as an EPR's interface engine does), paced to RATE messages/s for SECONDS seconds after one
   second of warm-up. Each latency is from the message's scheduled send time to its ACK, so a
   slow ACK that delays the next message is counted against it too (no coordinated omission).
Prints p50/p95/p99/max ACK latency and the count of AA/AE/AR.

Target (issue 4, this 2-core machine): p99 < 50 ms at 50 messages/s.

    python bench/mllp.py [--rate 50] [--seconds 20]

Other processes competing for the 2 CPUs inflate every figure: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hl7.client import MLLPClient

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dialogs(work: Path, count: int) -> list[str]:
    from fhir_bridge.formats.hl7v2 import split_batch
    from fhir_bridge.synth import generate

    generate("hl7", work / "synth", count=count, seed=1)
    feed = (work / "synth" / "feed.hl7").read_bytes()
    return [text for _, text in split_batch(feed) if "|ORU^R01" in text.split("\r", 1)[0]]


def start_listener(work: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")}
    env["FHIR_BRIDGE_DATA_DIR"] = str(work / "data")
    proc = subprocess.Popen([sys.executable, "-m", "fhir_bridge", "mllp", "--port", str(port), "--organization", "RAT"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the listener exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    raise SystemExit("the listener did not start within 60 s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc): what a message costs the listener whatever
    else runs on the machine; None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ack_code(ack: bytes) -> str:
    msa = next((s for s in ack.decode("utf-8", "replace").strip("\x0b\x1c\r").split("\r") if s.startswith("MSA|")), "")
    return msa.split("|")[1] if msa else "none"


def send_paced(port: int, messages: list[str], rate: float) -> tuple[list[float], list[float], Counter]:
    """(latency of each message from when it was due, and from when it was sent, in seconds; ACK
    codes): message i is due at start + i / rate. The second is the listener's own time per
    message; the difference is time spent waiting behind the message before."""
    latencies, service, codes = [], [], Counter()
    with MLLPClient("127.0.0.1", port) as client:
        start = time.perf_counter()
        for i, message in enumerate(messages):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            codes[ack_code(client.send_message(message))] += 1
            done = time.perf_counter()
            latencies.append(done - due)
            service.append(done - sent)
    return latencies, service, codes


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    warmup, measured = int(args.rate), int(args.rate * args.seconds)

    work = Path(tempfile.mkdtemp(prefix="fhir-bridge-mllp-"))
    messages = dialogs(work, warmup + measured)
    print(f"synth hl7: {len(messages):,} ORU^R01 DIALOG messages; store: SQLite in {work / 'data'}")
    port = free_port()
    listener = start_listener(work, port)
    try:
        send_paced(port, messages[:warmup], args.rate)
        cpu_before = cpu_seconds(listener.pid)
        latencies, service, codes = send_paced(port, messages[warmup:], args.rate)
        cpu_after = cpu_seconds(listener.pid)
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    ordered = sorted(latencies)
    ms = {p: percentile(ordered, p) * 1000 for p in (50, 95, 99)}
    print(f"{len(latencies):,} messages at {args.rate:g}/s over {args.seconds:g} s, one connection, "
          f"after {warmup} warm-up messages; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"ACK latency ms: p50 {ms[50]:.1f}  p95 {ms[95]:.1f}  p99 {ms[99]:.1f}  max {ordered[-1] * 1000:.1f}")
    own = sorted(service)
    print(f"  of which the listener's own time per message (sent -> ACK) ms: p50 {percentile(own, 50) * 1000:.1f}  "
          f"p99 {percentile(own, 99) * 1000:.1f}  mean {sum(own) / len(own) * 1000:.1f}")
    if cpu_before is not None and cpu_after is not None:
        per_message = (cpu_after - cpu_before) / len(latencies)
        print(f"  listener CPU per message: {per_message * 1000:.1f} ms, i.e. one core {per_message * args.rate:.0%} "
              f"busy at {args.rate:g}/s")
    print("ACKs: " + "  ".join(f"{code} {codes[code]}" for code in ("AA", "AE", "AR")) +
          "".join(f"  {code} {n}" for code, n in codes.items() if code not in ("AA", "AE", "AR")))
    print(f"target p99 < 50 ms at 50 messages/s: {'met' if ms[99] < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
