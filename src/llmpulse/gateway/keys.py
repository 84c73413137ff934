"""The keys the gateway accepts, looked up by digest (``config.keys``)."""

from __future__ import annotations

from collections.abc import Iterable

from llmpulse.config.keys import GatewayKey, key_digest


class KeyRing:
    """Every key a client may present. A presented key is hashed once and looked up: no key
    text is compared, so timing says nothing of how close a guess came."""

    def __init__(self, keys: Iterable[GatewayKey]) -> None:
        self._by_digest = {k.digest: k for k in keys if k.digest}

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def lookup(self, presented: str) -> GatewayKey | None:
        if not presented:
            return None
        return self._by_digest.get(key_digest(presented))
