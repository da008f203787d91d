"""MLLP framing: <VT> message <FS><CR> (0x0B ... 0x1C 0x0D), the HL7 v2 transport over TCP.

The decoder is a small state machine fed whatever chunks the socket delivers. Real peers send
broken frames (a restarted sender, a half-written message, a missing trailing CR, a stray
newline between frames); the decoder recovers on the next start block, never buffers more than
``max_size`` bytes, and counts every byte or message it had to throw away so the listener can
report it. No sockets here: ``read_messages`` adapts an ``asyncio.StreamReader``.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

__all__ = ["START_BLOCK", "END_BLOCK", "CARRIAGE_RETURN", "frame", "MllpDecoder", "Oversize", "read_messages"]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"

DEFAULT_MAX_SIZE = 1 << 20  # 1 MiB: far above any DIALOG ORU, small enough to stop a runaway peer

_log = logging.getLogger(__name__)

# Decoder states
_OUTSIDE = 0   # between frames: waiting for a start block
_INSIDE = 1    # collecting a message
_SKIPPING = 2  # inside an oversize message: dropping bytes until its end block (or a new start)
OVERSIZE_HEAD = 4096  # what is kept of an oversize message: enough for its MSH, to answer it


class Oversize(bytes):
    """Yielded, by a decoder made with `oversize_heads=True`, in place of a complete message over the
    size limit: its first bytes, so that the listener can answer it (AR, its control id echoed)
    instead of leaving the sender waiting."""


def frame(message: bytes) -> bytes:
    """Wrap one message for the wire."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MllpDecoder:
    """Turns arbitrary chunks into complete messages (framing bytes removed).

    Counters, for the listener's report: ``discarded_bytes`` (bytes outside any frame),
    ``broken`` (half messages dropped because a new start block or EOF came first),
    ``oversize`` (messages dropped for exceeding ``max_size``), ``empty`` (empty frames, which
    some senders use as keep-alives and must not be answered). With ``oversize_heads`` an oversize
    message, once its end block comes, is yielded as an ``Oversize`` (its first bytes) instead of
    vanishing: for a listener, which must answer it.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, *, oversize_heads: bool = False) -> None:
        self.max_size = max_size
        self.oversize_heads = oversize_heads
        self.discarded_bytes = 0
        self.broken = 0
        self.oversize = 0
        self.empty = 0
        self._state = _OUTSIDE
        self._buffer = bytearray()
        self._swallow_cr = False  # the end block was the last byte of a chunk: a CR may follow
        self._head: bytes | None = None  # the first bytes of the oversize message being skipped

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held in memory."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        pos, end = 0, len(data)
        if self._swallow_cr and data:
            self._swallow_cr = False
            if data[0] == 0x0D:
                pos = 1
        while pos < end:
            if self._state == _OUTSIDE:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self._discard(end - pos)
                    break
                self._discard(start - pos)
                self._state, pos = _INSIDE, start + 1
                continue
            # _INSIDE or _SKIPPING: look for whichever framing byte comes first
            stop = data.find(END_BLOCK, pos)
            restart = data.find(START_BLOCK, pos)
            if restart >= 0 and (stop < 0 or restart < stop):
                self._head = None  # no end block: a broken message, not one to answer
                if self._state == _INSIDE:
                    # Counted the same however the bytes were chunked: too long is oversize first
                    if len(self._buffer) + restart - pos > self.max_size:
                        self.oversize += 1
                        _log.warning("MLLP: message over %d bytes dropped", self.max_size)
                    else:
                        self.broken += 1
                        _log.warning("MLLP: start block before end block, %d bytes dropped",
                                     len(self._buffer) + restart - pos)
                self._buffer.clear()
                self._state, pos = _INSIDE, restart + 1
                continue
            piece_end = stop if stop >= 0 else end
            if self._state == _INSIDE:
                if len(self._buffer) + piece_end - pos > self.max_size:
                    self.oversize += 1
                    _log.warning("MLLP: message over %d bytes dropped", self.max_size)
                    if self.oversize_heads:
                        kept = bytes(self._buffer[:OVERSIZE_HEAD])
                        self._head = kept + data[pos:pos + OVERSIZE_HEAD - len(kept)]
                    self._buffer.clear()
                    self._state = _SKIPPING
                else:
                    self._buffer += data[pos:piece_end]
            if stop < 0:
                break
            if self._state == _INSIDE:
                if self._buffer:
                    messages.append(bytes(self._buffer))
                else:
                    self.empty += 1
            elif self._head is not None:  # the end of an oversize message: answered, not read
                messages.append(Oversize(self._head))
                self._head = None
            self._buffer.clear()
            self._state, pos = _OUTSIDE, stop + 1
            # The CR after the end block is optional in practice: take it if it is there
            if pos < end:
                if data[pos] == 0x0D:
                    pos += 1
            else:
                self._swallow_cr = True
        return messages

    def close(self) -> None:
        """The connection ended: a message still being received is counted as broken."""
        if self._state == _INSIDE:
            self.broken += 1
            _log.warning("MLLP: connection closed mid-message, %d bytes dropped", len(self._buffer))
        self._buffer.clear()
        self._state, self._swallow_cr, self._head = _OUTSIDE, False, None

    def _discard(self, count: int) -> None:
        if count:
            self.discarded_bytes += count
            _log.debug("MLLP: %d bytes outside any frame discarded", count)


async def read_messages(
    reader: asyncio.StreamReader, decoder: MllpDecoder, idle_timeout: float, chunk_size: int = 65536
) -> AsyncIterator[bytes]:
    """Yield messages from a connection (as its decoder gives them: ``Oversize`` heads too, if it
    was made to) until EOF or until nothing arrives for ``idle_timeout`` s."""
    while True:
        try:
            data = await asyncio.wait_for(reader.read(chunk_size), idle_timeout)
        except asyncio.TimeoutError:
            decoder.close()
            return
        if not data:
            decoder.close()
            return
        for message in decoder.feed(data):
            yield message
