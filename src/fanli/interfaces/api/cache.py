"""Values computed from the store, kept while the store has not changed (ADR 0007).

The store's version (``fanli.audit.queries.store_version``) is the number of audit events. Every
change writes one, so a value computed at version V stays right for as long as the version is
still V. The API keeps two such caches per process:

- who an API token belongs to, so a request with a known token costs one cheap query, not a
  token lookup and a user lookup (a revoked token, a disabled user or changed roles each write an
  event, so they take effect on the next request);
- the JSON bodies of the hot reads (a customer's statement, the settlement list), served with an
  ``ETag`` so a client that already has the body gets ``304 Not Modified``.

A value is only ever found under the version it was computed at: a stale one is a miss, never
an answer. Each cache holds at most ``capacity`` values and drops the least recently used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class VersionedCache(Generic[V]):
    """A bounded map from a key to a value and the store version it was computed at."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()
        self._lock = threading.Lock()  # the API's worker threads share one cache
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: int) -> V | None:
        """The value for ``key`` if it was computed at ``version``, else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(self, key: Hashable, version: int, value: V) -> None:
        with self._lock:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
