"""MLLP framing and the decoder's recovery from what real peers send."""
from __future__ import annotations

import asyncio

import pytest

from fhir_bridge.formats.mllp import OVERSIZE_HEAD, MllpDecoder, Oversize, frame, read_messages

MSG1 = b"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305160000||ORU^R01|ORU0001|P|2.4\rPID|1||9434765919^^^NHS^NH"
MSG2 = b"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20240305160001||ADT^A28|MSG0002|P|2.4\rPID|1||RX1^^^RAT^MR"


def test_frame() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\r"


def test_one_message_one_chunk() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(frame(MSG1)) == [MSG1]
    assert (decoder.discarded_bytes, decoder.broken, decoder.oversize, decoder.pending) == (0, 0, 0, 0)


def test_split_across_two_chunks_at_every_byte_position() -> None:
    wire = frame(MSG1) + frame(MSG2)
    for cut in range(len(wire) + 1):
        decoder = MllpDecoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert got == [MSG1, MSG2], cut
        assert (decoder.discarded_bytes, decoder.broken) == (0, 0), cut


def test_one_byte_at_a_time() -> None:
    decoder = MllpDecoder()
    got = [m for b in frame(MSG1) + frame(MSG2) for m in decoder.feed(bytes([b]))]
    assert got == [MSG1, MSG2] and decoder.discarded_bytes == 0


def test_two_messages_in_one_chunk() -> None:
    assert MllpDecoder().feed(frame(MSG1) + frame(MSG2)) == [MSG1, MSG2]


def test_garbage_before_start_block_is_discarded_and_counted() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"GET / HTTP/1.1\r\n\r\n" + frame(MSG1)) == [MSG1]
    assert decoder.discarded_bytes == 18
    assert decoder.feed(b"junk") == [] and decoder.discarded_bytes == 22


def test_new_start_block_before_end_block_drops_the_half_message() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0b" + MSG1[:30]) == []
    assert decoder.feed(frame(MSG2)) == [MSG2]
    assert decoder.broken == 1


def test_missing_cr_after_end_block_is_tolerated() -> None:
    decoder = MllpDecoder()
    wire = b"\x0b" + MSG1 + b"\x1c" + b"\x0b" + MSG2 + b"\x1c"
    assert decoder.feed(wire) == [MSG1, MSG2]
    assert (decoder.discarded_bytes, decoder.broken) == (0, 0)


def test_cr_after_end_block_in_the_next_chunk_is_not_counted_as_garbage() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0b" + MSG1 + b"\x1c") == [MSG1]
    assert decoder.feed(b"\r") == [] and decoder.discarded_bytes == 0


def test_oversize_message_is_dropped_without_buffering_it() -> None:
    big = b"MSH|" + b"x" * 1000
    for heads in (True, False):
        decoder = MllpDecoder(max_size=100, oversize_heads=heads)
        got = []
        for i in range(0, len(big), 64):  # arrives in pieces: the buffer must stay bounded
            got += decoder.feed((b"\x0b" if i == 0 else b"") + big[i:i + 64])
            assert decoder.pending <= 100
        got += decoder.feed(b"\x1c\r" + frame(MSG1[:90]))
        assert got[-1] == MSG1[:90] and decoder.oversize == 1 and decoder.broken == 0
        if heads:  # in its place, once its end block came: its first bytes, so the listener can answer it
            oversize, _ = got
            assert isinstance(oversize, Oversize) and big.startswith(oversize) and 100 < len(oversize) <= OVERSIZE_HEAD
        else:  # a client (the ACKs the MLLP sender reads) never sees one
            assert len(got) == 1


def test_oversize_then_new_start_block_recovers_and_counts_alike_in_any_chunking() -> None:
    wire = b"\x0b" + b"y" * 50 + frame(b"short")
    for cut in range(len(wire) + 1):
        decoder = MllpDecoder(max_size=10)
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == [b"short"], cut
        assert (decoder.oversize, decoder.broken) == (1, 0), cut


def test_empty_frames_are_counted_not_yielded() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(frame(b"") + frame(MSG1)) == [MSG1]
    assert decoder.empty == 1


def test_close_mid_message_counts_broken() -> None:
    decoder = MllpDecoder()
    decoder.feed(b"\x0b" + MSG1)
    decoder.close()
    assert decoder.broken == 1 and decoder.pending == 0
    assert decoder.feed(frame(MSG2)) == [MSG2]


async def _collect(reader: asyncio.StreamReader, decoder: MllpDecoder, timeout: float) -> list[bytes]:
    return [m async for m in read_messages(reader, decoder, timeout)]


def test_read_messages_until_eof() -> None:
    async def run() -> tuple[list[bytes], MllpDecoder]:
        reader = asyncio.StreamReader()
        wire = frame(MSG1) + frame(MSG2) + b"\x0bhalf"
        for i in range(0, len(wire), 7):
            reader.feed_data(wire[i:i + 7])
        reader.feed_eof()
        decoder = MllpDecoder()
        return await _collect(reader, decoder, 1.0), decoder

    got, decoder = asyncio.run(run())
    assert got == [MSG1, MSG2] and decoder.broken == 1


def test_read_messages_returns_on_idle_timeout() -> None:
    async def run() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(MSG1))  # then the client goes quiet without closing
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await _collect(reader, MllpDecoder(), 0.05)
        assert loop.time() - started < 1.0
        return got

    assert asyncio.run(run()) == [MSG1]


def test_read_messages_yields_as_messages_arrive() -> None:
    async def run() -> list[bytes]:
        reader = asyncio.StreamReader()
        stream = read_messages(reader, MllpDecoder(), 1.0)
        reader.feed_data(frame(MSG1))
        first = await anext(stream)  # the generator does not wait for EOF before yielding
        reader.feed_data(frame(MSG2))
        reader.feed_eof()
        return [first] + [m async for m in stream]

    assert asyncio.run(run()) == [MSG1, MSG2]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13, 64])
def test_noisy_stream_in_any_chunking(chunk: int) -> None:
    wire = b"\r\n" + frame(MSG1) + b"\x0bHALF" + frame(MSG2) + b"\x0b" + MSG1 + b"\x1c" + frame(MSG2)
    decoder = MllpDecoder()
    got = [m for i in range(0, len(wire), chunk) for m in decoder.feed(wire[i:i + chunk])]
    assert got == [MSG1, MSG2, MSG1, MSG2]
    assert (decoder.discarded_bytes, decoder.broken) == (2, 1)
