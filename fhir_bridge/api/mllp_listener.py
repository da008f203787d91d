"""The MLLP listener: HL7 v2 messages over TCP, each answered with an ACK.

- AR: the message cannot be parsed (no MSH, broken encoding characters ...), or it is over the
  size limit (answered from its first bytes, its control id echoed; not kept, it was not read whole).
- AE: it parses but cannot be accepted (the handler says why: a mapping or validation problem,
  a record quarantined).
- AA: only after the handler has returned, i.e. after the data is committed.

The handler is synchronous (it maps, validates and stores) and runs in a worker thread, one
message at a time per connection, so a sender that waits for each ACK gets them in order. The
listener survives broken framing, half-sent messages, idle clients (closed after a timeout) and
handler crashes (answered AE, logged with a correlation id).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from fhir_bridge.errors import BridgeError
from fhir_bridge.formats.hl7v2 import build_ack, decode, message_segments
from fhir_bridge.formats.mllp import DEFAULT_MAX_SIZE, MllpDecoder, Oversize, frame, read_messages

log = logging.getLogger("fhir_bridge.mllp")


@dataclass(frozen=True)
class Verdict:
    """What the handler made of a message: AA, or AE with the reason the sender should see."""

    code: str       # AA | AE
    text: str = ""


# The message's text (its segments checked: an HL7 v2 message) -> verdict, after committing. The
# handler reads the text itself: building python-hl7's tree here cost ~5 ms a message for nothing.
Handler = Callable[[str], Verdict]


@dataclass
class ListenerStats:
    connections: int = 0
    messages: int = 0
    accepted: int = 0
    errors: int = 0     # AE
    rejected: int = 0   # AR
    broken_frames: int = 0


class MllpListener:
    def __init__(self, handler: Handler, *, idle_timeout: float = 300.0, max_message_bytes: int = DEFAULT_MAX_SIZE,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 keep_rejected: Callable[[str], None] | None = None):
        self.handler = handler
        self.keep_rejected = keep_rejected  # what cannot be parsed (AR) is kept too, e.g. in quarantine
        self.idle_timeout = idle_timeout
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.stats = ListenerStats()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._connection, host, port)
        address = self._server.sockets[0].getsockname()
        log.info("MLLP listener on %s:%s", address[0], address[1])
        return address[0], address[1]

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        decoder = MllpDecoder(self.max_message_bytes, oversize_heads=True)
        try:
            async for raw in read_messages(reader, decoder, self.idle_timeout):
                self.stats.messages += 1
                ack = self.too_large(raw) if isinstance(raw, Oversize) else await asyncio.to_thread(self.answer, raw)
                writer.write(frame(ack.encode("utf-8")))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away; whatever it had sent completely was answered
        finally:
            self.stats.broken_frames += decoder.broken
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    def too_large(self, head: Oversize) -> str:
        """AR for a message over the size limit, read no further than its first bytes."""
        self.stats.rejected += 1
        return build_ack(decode(head), "AR", f"the message is over {self.max_message_bytes} bytes: not read",
                         now=self.clock(), error_code="207")

    def answer(self, raw: bytes) -> str:
        """The ACK for one message (synchronous: runs in a worker thread)."""
        text = decode(raw)
        try:
            message_segments(text)
        except BridgeError as exc:
            self.stats.rejected += 1
            if self.keep_rejected is not None:
                try:
                    self.keep_rejected(text)
                except Exception:  # noqa: BLE001 - keeping it failed: the AR still goes, the log says why
                    log.exception("MLLP: a rejected message could not be kept")
            return build_ack(text, "AR", exc.message, now=self.clock(), error_code="102")
        try:
            verdict = self.handler(text)
        except BridgeError as exc:
            verdict = Verdict("AE", exc.message)
        except Exception:  # noqa: BLE001 - a bug must cost one AE, not the connection or the listener
            correlation = str(uuid.uuid4())
            log.exception("MLLP handler failed, correlation id %s", correlation)
            verdict = Verdict("AE", f"internal error; quote correlation id {correlation}")
        if verdict.code == "AA":
            self.stats.accepted += 1
            return build_ack(text, "AA", verdict.text, now=self.clock())
        self.stats.errors += 1
        return build_ack(text, "AE", verdict.text, now=self.clock())
