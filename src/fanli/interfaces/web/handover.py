"""Credentials shown once: a new user's first password and second factor.

The form that creates a user answers with a redirect (a reload must not post it again), so what
the next page shows cannot travel in the answer itself, nor in a cookie or the address: it is
kept here, in the server's memory, under a random token only the creator's browser is sent to,
and taken out when that page is shown. A second look finds nothing: shown once, by design. An
entry nobody came for is forgotten after ten minutes. Like the jobs (``jobs.py``), it lives in
the process that created it.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

KEPT_SECONDS = 600


class Handovers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[str, float, dict[str, Any]]] = {}

    def put(self, owner: str, shown: dict[str, Any]) -> str:
        """Keep ``shown`` for ``owner``'s next page; the token that page is opened with."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._forget_old()
            self._kept[token] = (owner, time.monotonic(), shown)
        return token

    def take(self, owner: str, token: str) -> dict[str, Any] | None:
        """What was kept under ``token`` for ``owner``, once; None for anyone else, later, or
        again."""
        with self._lock:
            self._forget_old()
            found = self._kept.get(token)
            if found is None or found[0] != owner:
                return None
            del self._kept[token]
            return found[2]

    def _forget_old(self) -> None:
        now = time.monotonic()
        for token in [t for t, (_o, at, _s) in self._kept.items() if now - at > KEPT_SECONDS]:
            del self._kept[token]
