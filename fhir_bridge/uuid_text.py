"""Name-based (version 5) UUIDs as text, the project's deterministic ids.

`uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))`, built straight from the SHA-1
digest: the `UUID` object the standard library makes on the way (its int conversion, its checks)
cost two thirds of each id, and an import makes several ids a record.
"""
from __future__ import annotations

import hashlib
import uuid

__all__ = ["uuid5_text"]


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
