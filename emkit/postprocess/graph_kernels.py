"""Compiled helpers shared by the graph stages: union-find, a binary min-heap, a hash set.

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


# ----------------------------------------------------------------------------- hash set
# Open addressing with linear probing over one array of item ids (>= 0; -1 marks an
# empty slot), each put in by a key >= 0 that the caller derives from the item. There is
# no delete and no stored key: a caller checks what it finds against its own arrays,
# passes over stale items, and empties and refills the table when it fills up.

_FIBONACCI = np.uint64(11400714819323198485)  # 2^64 / golden ratio


@njit(cache=True)
def table_new(expected, like):
    """An empty table (-1 everywhere) with room for ``expected`` items at load factor
    1/2; a power of 2 slots, of ``like``'s dtype."""
    size = 16
    while size < 2 * expected:
        size *= 2
    return np.full(size, -1, like.dtype)


@njit(cache=True, inline="always")
def table_slot(table, key):
    """The first slot to probe for ``key`` (Fibonacci hashing)."""
    bits = np.uint64(64 - np.int64(np.log2(table.size)))
    return np.int64((np.uint64(key) * _FIBONACCI) >> bits)


@njit(cache=True)
def table_add(table, item, key):
    """Puts ``item`` in the first free slot for ``key``."""
    mask = table.size - 1
    i = table_slot(table, key)
    while table[i] >= 0:
        i = (i + 1) & mask
    table[i] = item
