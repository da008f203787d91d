"""`fhir-bridge serve --workers N`: N server processes on one port.

One Python process serves requests on one core at a time (the GIL), whatever its threads; a
DIALOG+ session is CPU work (parse, validate, merge, narrate), so one process caps the throughput
and queues everyone else's requests behind it. Here the parent binds the port, then forks the
workers; each builds its own Bridge (its own database connections and background threads: none
may cross a fork) and runs uvicorn on its own listening socket on that port (SO_REUSEPORT), the
kernel spreading new connections evenly over them. With one shared listening socket whichever
worker woke first accepted a whole burst of keep-alive connections, which then stayed with it:
at 10 clients, 100-110 sessions/s and p95 112-136 ms against 117-170/s and 82-119 ms (paired
runs of bench/careplan.py's load on 2 cores). Writers of the embedded SQLite store queue on its
writer lock (store/writer_lock.py) across the processes; PostgreSQL needs nothing more.

The parent only supervises: SIGTERM or SIGINT is passed on to every worker, and if a worker dies
the others are stopped too and the command fails, so a service manager restarts a whole server
rather than leaving it at part strength.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable

__all__ = ["bind", "worker_socket", "run_workers"]

log = logging.getLogger("fhir_bridge.serve")
BACKLOG = 2048
_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")  # Linux, the BSDs; elsewhere the workers share one socket


def bind(host: str, port: int) -> socket.socket:
    """The port, bound before any worker starts (a taken port fails the command once). With
    SO_REUSEPORT it is only held here (not listening: no connection waits on it); otherwise it is
    the listening socket the workers share."""
    sock = _socket(host)
    sock.bind((host, port))
    if not _REUSE_PORT:
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    return sock


def worker_socket(bound: socket.socket, host: str) -> socket.socket:
    """In a worker: its own listening socket on the bound port, or the shared one."""
    if not _REUSE_PORT:
        return bound
    own = _socket(host)
    own.bind((host, bound.getsockname()[1]))
    own.listen(BACKLOG)
    return own


def _socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _REUSE_PORT:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def run_workers(count: int, work: Callable[[int], int]) -> int:
    """Fork `count` processes running `work(index)` (its return value is the process's exit code);
    wait for them all. 0 when every worker ended with 0 after a stop signal; otherwise the first
    failure's code (a worker that dies makes the others stop)."""
    children: dict[int, int] = {}
    stopping = False

    def stop(_signal: int = signal.SIGTERM, _frame=None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            pid = os.fork()
            if pid == 0:  # the worker: default signal handling (uvicorn installs its own), then serve
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                code = 1
                try:
                    code = work(index)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - logged; the parent sees the exit code
                    log.exception("server worker %d failed", index)
                finally:
                    logging.shutdown()
                    os._exit(code)
            children[pid] = index
        result = 0
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 and result == 0:
                result = code if code > 0 else 1
            if not stopping:  # a worker ended on its own: stop the rest, the server is not whole
                log.error("server worker %s ended (exit code %s): stopping the others", index, code)
                result = result or 1
                stop()
        return result
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
