"""`fhir-bridge serve` with the MLLP listener: both servers on one event loop, one store.

The HTTP server (uvicorn) and the MLLP listener share the process's Bridge, so the embedded SQLite
store keeps its single in-process writer (the repository queues both on one lock) and a message
ACKed AA is readable over HTTP at once. The listener binds first: a taken port stops the command
before the API is up, never leaves it running without its feed. If the listener fails later, the
HTTP server is stopped too, so a service manager sees the process end and restarts both.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import uvicorn

from fhir_bridge.pipelines.hl7_feed import serve_mllp

log = logging.getLogger("fhir_bridge.serve")


async def serve_with_mllp(config: uvicorn.Config, bridge, host: str, port: int, organization: str, *,
                          ready: Callable[[tuple[str, int]], None] | None = None,
                          server: uvicorn.Server | None = None) -> None:
    """Run uvicorn's server for `config` and the MLLP listener on host:port (messages imported as
    `organization`) until the server stops (SIGTERM, SIGINT); then the listener is cancelled and
    its run closed. `ready` gets the listener's bound address; `server`: uvicorn's server to run
    (a worker's, serving the connections handed to it), else one for `config`."""
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    mllp = asyncio.create_task(serve_mllp(bridge, host, port, organization,
                                          ready=lambda address: bound.done() or bound.set_result(address)))
    await asyncio.wait({mllp, bound}, return_when=asyncio.FIRST_COMPLETED)
    if not bound.done():
        mllp.result()  # it ended before binding: raises why (a port in use ...)
    if ready is not None:
        ready(bound.result())
    server = server or uvicorn.Server(config)

    def listener_ended(task: asyncio.Task) -> None:
        if not task.cancelled():
            log.error("the MLLP listener stopped (%s); stopping the server", task.exception())
            server.should_exit = True

    mllp.add_done_callback(listener_ended)
    try:
        await server.serve()
    finally:
        mllp.remove_done_callback(listener_ended)
        mllp.cancel()
        await asyncio.gather(mllp, return_exceptions=True)
    if not mllp.cancelled() and mllp.exception() is not None:
        raise mllp.exception()
