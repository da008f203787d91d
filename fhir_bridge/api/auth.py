"""Bearer tokens mapped to a partner organisation and SMART-style scopes.

The tokens file (FHIR_BRIDGE_TOKENS_FILE) holds SHA-256 hashes, never tokens, so it can be read
and reviewed safely:

    {"tokens": [{"sha256": "<hex of sha256(token)>", "partner": "RV3", "name": "East London NHS FT",
                 "scopes": ["system/*.read", "system/QuestionnaireResponse.write"]}]}

Scopes follow SMART v1: `system/<Type|*>.<read|write|*>`. A partner's system may name the end user
in the `X-User` header; it is recorded in Provenance, never trusted for access. What a partner may
see is further limited to the people it has a care relationship with (fhir_bridge.pipelines.
care_access), unless its token also has `access/all-people` (operators, the development token).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from fhir_bridge.errors import ConfigurationError, Forbidden, Unauthorized
from fhir_bridge.pipelines.care_access import ALL_PEOPLE_SCOPE
from fhir_bridge.pipelines.resources import Caller

USER_HEADER = "x-user"
MODES = ("read", "write")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    partner: str
    name: str
    scopes: frozenset[str]


class TokenStore:
    def __init__(self, grants: dict[str, Grant]):
        self._by_hash = grants

    @classmethod
    def load(cls, path: Path) -> "TokenStore":
        try:
            raw = orjson.loads(path.read_bytes())
            grants = {}
            for i, t in enumerate(raw["tokens"]):
                digest = t["sha256"].lower()
                if len(digest) != 64:
                    raise ValueError(f"entry {i}: sha256 must be 64 hex characters")
                scopes = frozenset(t["scopes"])
                for scope in scopes:
                    check_scope(scope, f"entry {i}: ")
                grants[digest] = Grant(t["partner"], t.get("name", t["partner"]), scopes)
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"tokens file {path}: {exc}") from exc
        return cls(grants)

    @classmethod
    def with_dev_token(cls) -> tuple["TokenStore", str]:
        """A fresh random token with every scope, for `serve` without a tokens file (never stored)."""
        token = secrets.token_urlsafe(32)
        scopes = frozenset({"system/*.*", ALL_PEOPLE_SCOPE})
        return cls({token_hash(token): Grant("DEV", "development partner", scopes)}), token

    def authenticate(self, authorization: str | None, user: str | None) -> Caller:
        if not authorization:
            raise Unauthorized("This endpoint needs a bearer token (Authorization: Bearer ...)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Only bearer tokens are accepted (Authorization: Bearer ...)")
        grant = self._by_hash.get(token_hash(token.strip()))
        if grant is None:
            raise Unauthorized("The bearer token is not valid")
        return Caller(grant.partner, grant.name, (user or "").strip()[:200] or None, grant.scopes)


def authorize(caller: Caller, resource_type: str, mode: str) -> None:
    """Raises Forbidden unless one of the caller's scopes covers `resource_type` for `mode`."""
    for scope in caller.scopes:
        context, _, rest = scope.partition("/")
        scoped_type, _, scoped_mode = rest.partition(".")
        if context == "system" and scoped_type in ("*", resource_type) and scoped_mode in ("*", mode):
            return
    raise Forbidden(f"The token of {caller.partner} has no scope for {mode} access to {resource_type} "
                    f"(needs system/{resource_type}.{mode})")


def check_scope(scope: str, where: str = "") -> None:
    """ValueError unless `scope` is system/<Type|*>.<read|write|*> or access/all-people (also used by
    `fhir-bridge token`)."""
    if scope == ALL_PEOPLE_SCOPE:
        return
    context, _, rest = scope.partition("/")
    scoped_type, _, mode = rest.partition(".")
    if context != "system" or not scoped_type or mode not in ("read", "write", "*"):
        raise ValueError(f"{where}scope {scope!r} is not system/<Type|*>.<read|write|*> or {ALL_PEOPLE_SCOPE}")
