"""A small least-recently-used cache with a hard bound on the number of entries.

Datasets keep decoded frames and photos here so that neighbouring clips and
repeated photos are not decoded again, while memory stays bounded by the
argument the user chose (each DataLoader worker holds its own copy).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from dvc_edic.errors import InputError

V = TypeVar("V")


class LruCache(Generic[V]):
    """Maps keys to values, dropping the least recently used entry beyond `capacity`.

    A capacity of 0 disables caching: put() stores nothing and get() always misses.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise InputError(f"cache size must be a non-negative integer, got {capacity!r}")
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        try:
            value = self._entries[key]
        except KeyError:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.capacity == 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
