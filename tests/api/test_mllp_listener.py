"""The MLLP listener over real TCP sockets: ACK codes, ACK only after the handler committed, and
survival of broken framing, half-sent messages, idle clients and handler crashes."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import datetime, timezone

import pytest

from fhir_bridge.api.mllp_listener import MllpListener, Verdict
from fhir_bridge.errors import InputError
from fhir_bridge.formats.hl7v2 import control_id, field, parse_message
from fhir_bridge.formats.mllp import MllpDecoder, frame

NOW = datetime(2025, 3, 5, 12, 0, tzinfo=timezone.utc)


def oru(control: str, rating: str = "4") -> bytes:
    return "\r".join([
        f"MSH|^~\\&|RIO|RAT|FHIRBRIDGE|NELFT|20250305120000||ORU^R01^ORU_R01|{control}|P|2.4",
        "PID|1||9434765919^^^NHS^NH~R12345^^^RAT^MR||Okafor^Ada||19800402|F",
        f"OBX|1|NM|1037651000000100^Mental health^SCT||{rating}||||||F|||20250305110000",
    ]).encode()


class Server:
    """The listener in a background event loop, like `fhir-bridge mllp` runs it."""

    def __init__(self, handler, **options):
        self.listener = MllpListener(handler, clock=lambda: NOW, **options)
        self.loop = asyncio.new_event_loop()
        self.address = None
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.address = self.loop.run_until_complete(self.listener.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=10)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def acks(sock: socket.socket, count: int) -> list[str]:
    decoder, out = MllpDecoder(), []
    while len(out) < count:
        data = sock.recv(65536)
        if not data:
            break
        out += [m.decode() for m in decoder.feed(data)]
    return out


def msa(ack: str) -> tuple[str, str]:
    segment = next(s for s in ack.split("\r") if s.startswith("MSA"))
    parts = segment.split("|")
    return parts[1], parts[2]


@pytest.fixture()
def stored():
    return []


@pytest.fixture()
def server(stored):
    def handler(text):
        message = parse_message(text)
        rating = field(message, "OBX-5")
        if rating not in {str(n) for n in range(1, 8)}:
            raise InputError(f"OBX-5 {rating!r} is not a DIALOG rating")
        time.sleep(0.01)  # "committing"
        stored.append(control_id(message))
        return Verdict("AA")

    s = Server(handler, idle_timeout=0.5)
    yield s
    s.close()


def test_aa_only_after_the_handler_committed(server, stored):
    with server.connect() as sock:
        sock.sendall(frame(oru("M1")))
        [ack] = acks(sock, 1)
    assert msa(ack) == ("AA", "M1") and stored == ["M1"]


def test_ae_carries_the_reason_and_nothing_is_stored(server, stored):
    with server.connect() as sock:
        sock.sendall(frame(oru("M2", rating="9")))
        [ack] = acks(sock, 1)
    assert msa(ack) == ("AE", "M2") and "not a DIALOG rating" in ack and stored == []


def test_ar_for_what_cannot_be_parsed(server, stored):
    with server.connect() as sock:
        sock.sendall(frame(b"PID|1||no header at all"))
        [ack] = acks(sock, 1)
    assert msa(ack)[0] == "AR" and stored == []


def test_a_message_over_the_size_limit_is_answered_ar_and_the_next_one_served(stored):
    """The sender waits for an answer to every message: one too large to read gets AR, its control
    id echoed, instead of silence until the sender times out."""
    def handler(text):
        stored.append(control_id(parse_message(text)))
        return Verdict("AA")

    server = Server(handler, idle_timeout=2, max_message_bytes=2000)
    try:
        with server.connect() as sock:
            huge = oru("BIG1") + b"\r" + b"NTE|1||" + b"x" * 5000
            sock.sendall(frame(huge) + frame(oru("M9")))
            too_large, next_one = acks(sock, 2)
        assert msa(too_large) == ("AR", "BIG1") and "over 2000 bytes" in too_large
        assert msa(next_one) == ("AA", "M9") and stored == ["M9"]
    finally:
        server.close()


def test_many_messages_split_across_packets_are_answered_in_order(server, stored):
    wire = b"".join(frame(oru(f"S{n}")) for n in range(5))
    with server.connect() as sock:
        for i in range(0, len(wire), 7):  # dribbled out in 7-byte packets
            sock.sendall(wire[i:i + 7])
        answers = acks(sock, 5)
    assert [msa(a) for a in answers] == [("AA", f"S{n}") for n in range(5)]


def test_garbage_and_a_half_message_do_not_stop_the_connection(server, stored):
    with server.connect() as sock:
        sock.sendall(b"noise before any frame\r\n" + b"\x0b" + oru("HALF")[:40])  # a sender restarted mid-message
        sock.sendall(frame(oru("AFTER")))
        [ack] = acks(sock, 1)
    assert msa(ack) == ("AA", "AFTER") and stored == ["AFTER"]


def test_idle_clients_are_closed_and_others_served(server, stored):
    idle = server.connect()
    time.sleep(0.8)
    assert idle.recv(1) == b""  # closed by the listener after the idle timeout
    idle.close()
    with server.connect() as sock:
        sock.sendall(frame(oru("LATER")))
        assert msa(acks(sock, 1)[0]) == ("AA", "LATER")


def test_a_handler_crash_is_one_ae_with_a_correlation_id(caplog):
    def broken(text):
        raise RuntimeError("database on fire")

    s = Server(broken)
    try:
        with s.connect() as sock:
            sock.sendall(frame(oru("BOOM")))
            [ack] = acks(sock, 1)
            sock.sendall(frame(oru("AGAIN")))
            [again] = acks(sock, 1)
    finally:
        s.close()
    assert msa(ack) == ("AE", "BOOM") and "correlation id" in ack and "database on fire" not in ack
    assert msa(again) == ("AE", "AGAIN")
    assert "correlation id" in caplog.text


def test_concurrent_senders(server, stored):
    def send(prefix):
        with server.connect() as sock:
            for n in range(10):
                sock.sendall(frame(oru(f"{prefix}{n}")))
                assert msa(acks(sock, 1)[0]) == ("AA", f"{prefix}{n}")

    threads = [threading.Thread(target=send, args=(p,)) for p in "ABC"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(stored) == sorted(f"{p}{n}" for p in "ABC" for n in range(10))


def test_a_rejected_message_that_cannot_be_kept_is_still_answered_ar(caplog):
    """Keeping an unparseable message (in quarantine) failing - the store gone, say - must not
    cost the sender its AR, nor the connection the next message."""
    kept = []

    def keep(text):
        kept.append(text)
        raise OSError("disk full")

    s = Server(lambda text: Verdict("AA"), keep_rejected=keep)
    try:
        with s.connect() as sock:
            sock.sendall(frame(b"PID|1||no header at all") + frame(oru("NEXT")))
            rejected, after = acks(sock, 2)
    finally:
        s.close()
    assert msa(rejected)[0] == "AR" and kept == ["PID|1||no header at all"]
    assert msa(after) == ("AA", "NEXT")
    assert "could not be kept" in caplog.text and "disk full" in caplog.text
