"""Compiled helpers shared by the graph stages: union-find and a binary min-heap.

All functions are numba ``@njit(cache=True)``: llvmlite compiles them on first use (no
C compiler is needed) and the machine code is cached beside this file.
"""

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def find(parent, i):
    """Root of ``i`` in the union-find forest ``parent``, with path halving."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def roots(parent):
    """The root of every node, as a new array."""
    out = np.empty_like(parent)
    for i in range(parent.size):
        out[i] = find(parent, i)
    return out


@njit(cache=True)
def grow(arr, size):
    """``arr`` with room for at least ``size`` entries (doubling), contents kept."""
    if size <= arr.size:
        return arr
    new = np.empty(max(size, 2 * arr.size), dtype=arr.dtype)
    new[: arr.size] = arr
    return new


@njit(cache=True, inline="always")
def _less(keys, items, i, j):
    return keys[i] < keys[j] or (keys[i] == keys[j] and items[i] < items[j])


@njit(cache=True, inline="always")
def _swap(keys, items, tags, i, j):
    keys[i], keys[j] = keys[j], keys[i]
    items[i], items[j] = items[j], items[i]
    tags[i], tags[j] = tags[j], tags[i]


@njit(cache=True, inline="always")
def heap_push(keys, items, tags, n, key, item, tag):
    """Push ``(key, item, tag)`` on a heap of ``n`` entries; ordered by (key, item).

    Returns the (possibly reallocated) arrays and the new size.
    """
    keys = grow(keys, n + 1)
    items = grow(items, n + 1)
    tags = grow(tags, n + 1)
    keys[n], items[n], tags[n] = key, item, tag
    i = n
    while i > 0:
        p = (i - 1) // 2
        if not _less(keys, items, i, p):
            break
        _swap(keys, items, tags, i, p)
        i = p
    return keys, items, tags, n + 1


@njit(cache=True, inline="always")
def heap_pop(keys, items, tags, n):
    """Remove the smallest entry of a heap of ``n`` entries; return it and the new size."""
    key, item, tag = keys[0], items[0], tags[0]
    n -= 1
    if n > 0:
        keys[0], items[0], tags[0] = keys[n], items[n], tags[n]
        i = 0
        while True:
            left = 2 * i + 1
            if left >= n:
                break
            child = left
            if left + 1 < n and _less(keys, items, left + 1, left):
                child = left + 1
            if not _less(keys, items, child, i):
                break
            _swap(keys, items, tags, i, child)
            i = child
    return key, item, tag, n


# ----------------------------------------------------------------------------- hash map
# Open addressing with linear probing, int64 keys >= 0, int64 values; -1 marks an empty
# slot. There is no delete: callers validate what they look up and leave stale entries,
# which ``table_rebuild`` drops when the table fills up.

_FIBONACCI = np.uint64(11400714819323198485)


@njit(cache=True)
def table_new(expected):
    """Empty table with room for ``expected`` entries at load factor 1/2."""
    capacity = 16
    while capacity < 2 * expected:
        capacity *= 2
    return np.full(capacity, -1, np.int64), np.empty(capacity, np.int64)


@njit(cache=True, inline="always")
def _slot(keys, key):
    bits = np.uint64(63 - np.int64(np.log2(keys.size)) + 1)
    i = np.int64((np.uint64(key) * _FIBONACCI) >> bits)
    mask = keys.size - 1
    while keys[i] != key and keys[i] != -1:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def table_get(keys, values, key):
    """Value stored under ``key``, or -1."""
    i = _slot(keys, key)
    return values[i] if keys[i] == key else -1


@njit(cache=True)
def table_put(keys, values, used, key, value):
    """Store ``key -> value`` (overwrite); returns the new number of used slots."""
    i = _slot(keys, key)
    if keys[i] != key:
        keys[i] = key
        used += 1
    values[i] = value
    return used
