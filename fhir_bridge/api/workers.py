"""`fhir-bridge serve --workers N`: N server processes on one port.

One Python process serves requests on one core at a time (the GIL), whatever its threads; a
DIALOG+ session is CPU work (parse, validate, merge, narrate), so one process caps the throughput
and queues everyone else's requests behind it. Here the parent binds the port and forks the
workers; each builds its own Bridge (its own database connections and background threads: none
may cross a fork). The parent then accepts every connection itself and hands it (SCM_RIGHTS over a
Unix socket pair) to the worker with the fewest open connections, which serves it with uvicorn's
own protocol. A keep-alive client stays with the worker that got it, so how clients are spread is
what matters. The kernel's SO_REUSEPORT hash split 10 clients 6/4 or 7/3 as often as not, and the
busier worker's clients waited: over 6 interleaved runs of bench/careplan.py (2 workers, 10
clients) p50 29.6-43.4 ms and 217-315 sessions/s, against 29.2-32.4 ms and 264-321/s handed out
in turn. One listening socket shared by the workers was worse still: whichever worker woke first
accepted a whole burst (p95 82-136 ms).
Writers of the embedded SQLite store queue on its writer lock (store/writer_lock.py) across the
processes; PostgreSQL needs nothing more.

The parent only accepts and supervises: SIGTERM or SIGINT is passed on to every worker, and if a
worker dies the others are stopped too and the command fails, so a service manager restarts a
whole server rather than leaving it at part strength.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray

import uvicorn

__all__ = ["bind", "HandedServer", "run_workers", "serve_workers"]

log = logging.getLogger("fhir_bridge.serve")
BACKLOG = 2048
_FDS_AT_ONCE = 64
_POLL_SECONDS = 0.5  # how soon the parent's accept loop notices it is to stop
_RETRY_SECONDS = 0.1  # after accept failed for want of descriptors or memory


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any worker starts (a taken port fails the command once)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class Handoff:
    """Made before the fork: a stream socket pair per worker (the parent sends accepted connections
    down it) and, in shared memory, how many connections each worker has closed; the parent counts
    what it sent, so sent - closed is what a worker holds open now."""

    def __init__(self, count: int):
        self.pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
        self.closed = RawArray(ctypes.c_longlong, count)  # each slot written by its worker only
        self.sent = [0] * count

    def worker_end(self, index: int) -> socket.socket:
        """In worker `index`: its end of its pair; every other end is closed in this process."""
        for i, (parent_end, worker_end) in enumerate(self.pairs):
            parent_end.close()
            if i != index:
                worker_end.close()
        return self.pairs[index][1]

    def parent_ends(self) -> list[socket.socket]:
        """In the parent, once every worker is forked: its ends (non-blocking: a worker stuck for
        long fills its pair's buffer, and the next connection goes to another); the workers' are
        closed here."""
        for parent_end, worker_end in self.pairs:
            worker_end.close()
            parent_end.setblocking(False)
        return [parent_end for parent_end, _ in self.pairs]

    def hand(self, conn: socket.socket, channels: list[socket.socket]) -> bool:
        """Send `conn` to the worker holding the fewest open connections (the first on a tie);
        False when no worker took it (all gone: the supervisor is stopping the server)."""
        for index in sorted(range(len(channels)), key=lambda i: self.sent[i] - self.closed[i]):
            try:
                socket.send_fds(channels[index], [b"c"], [conn.fileno()])
            except OSError:
                continue  # that worker has ended, or its pair is full
            self.sent[index] += 1
            return True
        return False


class Dispatcher:
    """The parent's accept loop, in a thread started after the fork."""

    def __init__(self, listener: socket.socket, handoff: Handoff):
        self.listener = listener
        self.handoff = handoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        channels = self.handoff.parent_ends()
        self._thread = threading.Thread(target=self._run, args=(channels,), name="accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, channels: list[socket.socket]) -> None:
        self.listener.setblocking(False)
        while not self._stop.is_set():
            if not select.select([self.listener], [], [], _POLL_SECONDS)[0]:
                continue
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, ConnectionError):
                continue  # another wake-up took it, or the client gave up while queued
            except OSError as exc:  # out of descriptors or buffers: the connection waits in the backlog
                log.warning("cannot accept a connection now (%s): trying again", exc)
                self._stop.wait(_RETRY_SECONDS)
                continue
            with conn:  # the worker has its own copy; this one is closed
                self.handoff.hand(conn, channels)
        for channel in channels:
            channel.close()


class HandedServer(uvicorn.Server):
    """uvicorn in a worker: no listening socket of its own; it serves the connections the parent
    hands it on `channel`, each with uvicorn's HTTP protocol, and counts those that close."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, closed, index: int):
        super().__init__(config)
        self.channel = channel
        self.closed = closed
        self.index = index
        self._adopting: set[asyncio.Task] = set()

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=[])  # lifespan, state; no listener
        if self.should_exit:
            return
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._receive)

    async def shutdown(self, sockets=None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=sockets)

    def _receive(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.channel, _FDS_AT_ONCE, _FDS_AT_ONCE)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data and not fds:  # the parent is gone: no more connections will come
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        loop = asyncio.get_running_loop()
        for fd in fds:
            task = loop.create_task(self._adopt(socket.socket(fileno=fd)))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self._protocol, conn)
        except OSError:  # the client left before it was served
            conn.close()
            self.closed[self.index] += 1

    def _protocol(self) -> asyncio.Protocol:
        protocol = self.config.http_protocol_class(config=self.config, server_state=self.server_state,
                                                   app_state=self.lifespan.state)
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self.closed[self.index] += 1
            lost(exc)
        protocol.connection_lost = connection_lost
        return protocol


def serve_workers(count: int, listener: socket.socket,
                  work: Callable[[int, Callable[[uvicorn.Config], HandedServer]], int]) -> int:
    """Fork `count` workers running `work(index, server)`, where `server(config)` is the uvicorn
    server for the connections handed to that worker; accept on `listener` here until they end."""
    handoff = Handoff(count)
    dispatcher = Dispatcher(listener, handoff)

    def worker(index: int) -> int:
        channel = handoff.worker_end(index)
        listener.close()
        return work(index, lambda config: HandedServer(config, channel, handoff.closed, index))

    try:
        return run_workers(count, worker, forked=dispatcher.start)
    finally:
        dispatcher.stop()


def run_workers(count: int, work: Callable[[int], int], forked: Callable[[], None] | None = None) -> int:
    """Fork `count` processes running `work(index)` (its return value is the process's exit code),
    call `forked()` here once all are forked, and wait for them all. 0 when every worker ended with
    0 after a stop signal; otherwise the first failure's code (a worker that dies makes the others
    stop)."""
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
        if forked is not None:
            forked()
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
