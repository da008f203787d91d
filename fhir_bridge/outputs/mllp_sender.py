"""A small MLLP client: one connection, one message at a time, each waiting for its ACK.

Blocking sockets: the export sends one message, waits for the answer, records it, then sends the
next, so there is nothing to overlap. Framing and the frame decoder are formats/mllp.py's (the
listener's own). Anything that leaves a message's fate unknown - refused, reset, closed or silent
peer, an answer that is not an ACK for this message - is `PeerUnavailable`, so the caller stops
and leaves the message unconfirmed, to be resent with the same control id.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from fhir_bridge.errors import BridgeError, PeerUnavailable
from fhir_bridge.formats.hl7v2 import field, parse_message
from fhir_bridge.formats.mllp import MllpDecoder, frame

__all__ = ["Ack", "MllpSender", "parse_peer"]

# Enhanced-mode accept codes read as their original-mode twins
_CODES = {"AA": "AA", "AE": "AE", "AR": "AR", "CA": "AA", "CE": "AE", "CR": "AR"}


@dataclass(frozen=True)
class Ack:
    code: str        # AA | AE | AR
    control_id: str  # MSA-2: the message it answers
    text: str = ""   # MSA-3, else the ERR segment's message


def parse_peer(text: str) -> tuple[str, int]:
    """'host:port' (FHIR_BRIDGE_MLLP_PEER, --to) -> (host, port); BridgeError saying what is wrong."""
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BridgeError(f"MLLP peer {text!r} is not HOST:PORT (e.g. epr.trust.nhs.uk:2575)")
    return host.strip("[]"), int(port)


class MllpSender:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.peer = f"{host}:{port}"
        self._socket: socket.socket | None = None
        self._decoder = MllpDecoder()

    def __enter__(self) -> MllpSender:
        try:
            self._socket = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError as exc:
            raise PeerUnavailable(f"MLLP peer {self.peer} refused the connection (is its listener running?)") from exc
        except TimeoutError as exc:
            raise PeerUnavailable(f"MLLP peer {self.peer} did not accept a connection within {self.timeout:g} s") from exc
        except OSError as exc:
            raise PeerUnavailable(f"cannot connect to MLLP peer {self.peer}: {exc.strerror or exc}") from exc
        return self

    def __exit__(self, *_exc) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def send(self, message: str, control_id: str) -> Ack:
        """Send one message and wait for its ACK."""
        assert self._socket is not None, "use MllpSender as a context manager"
        try:
            self._socket.sendall(frame(message.encode("utf-8")))
            answer = self._receive()
        except TimeoutError as exc:
            raise PeerUnavailable(f"no ACK from {self.peer} within {self.timeout:g} s for message {control_id}") from exc
        except OSError as exc:
            raise PeerUnavailable(f"connection to {self.peer} lost before the ACK for message {control_id}: "
                                  f"{exc.strerror or exc}") from exc
        if answer is None:
            raise PeerUnavailable(f"{self.peer} closed the connection before acknowledging message {control_id}")
        return _read_ack(answer, control_id, self.peer)

    def _receive(self) -> bytes | None:
        assert self._socket is not None
        while True:
            data = self._socket.recv(65536)
            if not data:
                return None
            messages = self._decoder.feed(data)
            if messages:
                return messages[0]


def _read_ack(answer: bytes, control_id: str, peer: str) -> Ack:
    shown = answer[:80].decode("utf-8", "replace")
    try:
        ack = parse_message(answer)
    except BridgeError as exc:
        raise PeerUnavailable(f"{peer} answered message {control_id} with something that is not HL7 "
                              f"({exc.message}): {shown!r}") from exc
    code = _CODES.get(field(ack, "MSA-1"))
    if code is None:
        raise PeerUnavailable(f"{peer} answered message {control_id} without an ACK code in MSA-1: {shown!r}")
    answered = field(ack, "MSA-2")
    if answered != control_id:
        raise PeerUnavailable(f"{peer} acknowledged message {answered!r} while message {control_id} was waiting")
    # v2.4 puts the reason in MSA-3; later versions in ERR-8 (build_ack writes both)
    return Ack(code, answered, field(ack, "MSA-3") or field(ack, "ERR-8"))
