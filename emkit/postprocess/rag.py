"""Region adjacency graph of a fragment volume, with the affinities along each boundary.

Two fragments are adjacent when some voxel of one is a nearest neighbour (along z, y or
x) of a voxel of the other. Every such pair of voxels is one *voxel edge* and carries
one affinity: for voxels ``v`` and ``v - d`` the channel of offset ``d`` at ``v``. A
region-graph edge collects all voxel edges between two fragments and keeps their
number (the contact area in voxel faces), sum, maximum and, on request, a histogram.
This is the graph waterz builds (Funke et al. 2019), computed in two compiled passes
over the volume and a counting sort, with no Python loop over voxels or edges.

Label 0 is no fragment: voxel edges that touch it are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from emkit.errors import InputError
from emkit.postprocess._checks import check_affs, check_fragments, check_size


@dataclass(frozen=True)
class RegionGraph:
    """Edges between adjacent fragments, sorted by ``(u, v)``.

    Attributes:
        u: ndarray of shape (E,), uint64, the smaller fragment id of each edge.
        v: ndarray of shape (E,), uint64, the larger fragment id (``u < v``).
        count: ndarray of shape (E,), int64, number of voxel edges on the boundary.
        total: ndarray of shape (E,), float64, sum of their affinities.
        maximum: ndarray of shape (E,), float32, their largest affinity.
        histogram: ndarray of shape (E, bins), uint32, counts of the affinities in
            ``bins`` equal bins over [0, 1] (1.0 falls in the last bin), or None.
    """

    u: np.ndarray
    v: np.ndarray
    count: np.ndarray
    total: np.ndarray
    maximum: np.ndarray
    histogram: np.ndarray | None = None

    @property
    def mean(self) -> np.ndarray:
        """Mean affinity of each edge, ndarray of shape (E,), float64."""
        return self.total / np.maximum(self.count, 1)

    def __len__(self) -> int:
        return int(self.u.size)


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def _degrees(seg, lut, n):
    """Voxel edges per smaller id ``lut[seg]``, shifted by one (cumsum gives offsets)."""
    deg = np.zeros(n + 2, np.int64)
    nz, ny, nx = seg.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                a = lut[seg[z, y, x]]
                if a == 0:
                    continue
                if z > 0:
                    b = lut[seg[z - 1, y, x]]
                    if b != 0 and b != a:
                        deg[min(a, b) + 1] += 1
                if y > 0:
                    b = lut[seg[z, y - 1, x]]
                    if b != 0 and b != a:
                        deg[min(a, b) + 1] += 1
                if x > 0:
                    b = lut[seg[z, y, x - 1]]
                    if b != 0 and b != a:
                        deg[min(a, b) + 1] += 1
    return deg


@njit(cache=True)
def _fill(seg, lut, affs, cz, cy, cx, start):
    """Larger id and affinity of every voxel edge, bucketed by smaller id (of ``lut[seg]``)."""
    pos = start[:-1].copy()
    other = np.empty(start[-1], np.int64)
    value = np.empty(start[-1], np.float32)
    nz, ny, nx = seg.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                a = lut[seg[z, y, x]]
                if a == 0:
                    continue
                if z > 0:
                    b = lut[seg[z - 1, y, x]]
                    if b != 0 and b != a:
                        lo = min(a, b)
                        other[pos[lo]] = max(a, b)
                        value[pos[lo]] = affs[z, y, x, cz]
                        pos[lo] += 1
                if y > 0:
                    b = lut[seg[z, y - 1, x]]
                    if b != 0 and b != a:
                        lo = min(a, b)
                        other[pos[lo]] = max(a, b)
                        value[pos[lo]] = affs[z, y, x, cy]
                        pos[lo] += 1
                if x > 0:
                    b = lut[seg[z, y, x - 1]]
                    if b != 0 and b != a:
                        lo = min(a, b)
                        other[pos[lo]] = max(a, b)
                        value[pos[lo]] = affs[z, y, x, cx]
                        pos[lo] += 1
    return other, value


@njit(cache=True)
def _sort_buckets(start, other, value):
    """Sort each bucket by the larger id, in place; return the number of distinct pairs."""
    n_edges = 0
    for lo in range(start.size - 1):
        s, e = start[lo], start[lo + 1]
        if e - s > 16:
            order = np.argsort(other[s:e])
            other[s:e] = other[s:e][order]
            value[s:e] = value[s:e][order]
        else:  # insertion sort: no allocation for the many small buckets
            for i in range(s + 1, e):
                o, w = other[i], value[i]
                j = i - 1
                while j >= s and other[j] > o:
                    other[j + 1] = other[j]
                    value[j + 1] = value[j]
                    j -= 1
                other[j + 1] = o
                value[j + 1] = w
        for i in range(s, e):
            if i == s or other[i] != other[i - 1]:
                n_edges += 1
    return n_edges


@njit(cache=True)
def _reduce(start, other, value, n_edges, bins, sums):
    u = np.empty(n_edges, np.int64)
    v = np.empty(n_edges, np.int64)
    count = np.zeros(n_edges if sums else 0, np.int64)
    total = np.zeros(n_edges if sums else 0, np.float64)
    maximum = np.full(n_edges, -np.inf, np.float32)
    hist = np.zeros((n_edges if bins > 0 else 0, max(bins, 1)), np.uint32)
    k = -1
    for lo in range(start.size - 1):
        s, e = start[lo], start[lo + 1]
        for i in range(s, e):
            if i == s or other[i] != other[i - 1]:
                k += 1
                u[k] = lo
                v[k] = other[i]
            w = value[i]
            if sums:
                count[k] += 1
                total[k] += w
            maximum[k] = max(maximum[k], w)
            if bins > 0:
                hist[k, min(int(w * bins), bins - 1)] += 1
    return u, v, count, total, maximum, hist


def region_graph_unchecked(fragments, n, affs, channels, *, bins=0, lut=None, sums=True):
    """Region graph of consecutive fragments ``0..n`` (internal; no checks).

    Args:
        fragments: ndarray of shape (Z, Y, X), int64 or uint64 ids in ``0..n``, or ids
            that ``lut`` maps to ``0..n``.
        n: the largest id (after ``lut``).
        affs: ndarray of shape (Z, Y, X, C), float32.
        channels: indices of the offsets (1, 0, 0), (0, 1, 0), (0, 0, 1) in ``affs``.
        bins: histogram bins per edge, 0 for none.
        lut: int64 lookup table applied to ``fragments`` on the fly, or None.
        sums: compute ``count`` and ``total`` (else they are empty: only the maxima).

    Returns:
        :class:`RegionGraph` with int64 ids ``u < v``.
    """
    seg = fragments.view(np.int64) if fragments.dtype == np.uint64 else fragments
    if lut is None:
        lut = np.arange(int(n) + 1, dtype=np.int64)
    start = np.cumsum(_degrees(seg, lut, int(n)))
    other, value = _fill(seg, lut, affs, *channels, start)
    n_edges = _sort_buckets(start, other, value)
    u, v, count, total, maximum, hist = _reduce(
        start, other, value, n_edges, int(bins), bool(sums)
    )
    return RegionGraph(u, v, count, total, maximum, hist if bins > 0 else None)


def region_graph(fragments, affs, *, offsets=None, bins=0):
    """Region adjacency graph of ``fragments`` with the affinities on each boundary.

    Args:
        fragments: ndarray of shape (Z, Y, X), integer ids; 0 is no fragment.
        affs: ndarray of shape (Z, Y, X, C), float in [0, 1], channels last; only the
            nearest-neighbour channels (offsets (1, 0, 0), (0, 1, 0), (0, 0, 1)) are read.
        offsets: offset of every channel of ``affs``; None means ``DEFAULT_OFFSETS``
            followed by long-range channels (STYLE.md).
        bins: number of histogram bins per edge (for quantile scores), 0 for none.

    Returns:
        :class:`RegionGraph`, ids as in ``fragments`` (uint64).

    Example:
        >>> fragments = np.array([[[1, 1, 2, 2]]])
        >>> affs = np.ones((1, 1, 4, 3), np.float32)
        >>> affs[0, 0, 2, 2] = 0.25  # between x = 1 (id 1) and x = 2 (id 2)
        >>> rag = region_graph(fragments, affs)
        >>> rag.u.tolist(), rag.v.tolist(), rag.count.tolist(), rag.mean.tolist()
        ([1], [2], [1], [0.25])
    """
    affs, channels = check_affs(affs, offsets=offsets)
    check_fragments(fragments, affs.shape[:3])
    bins = check_size(bins, "bins")
    if bins > 65536:
        raise InputError(f"bins must be at most 65536, got {bins}")
    import fastremap

    consecutive, mapping = fastremap.renumber(
        np.ascontiguousarray(fragments), preserve_zero=True, in_place=False
    )
    new = np.fromiter(mapping.values(), np.int64, len(mapping))
    ids = np.zeros(int(new.max(initial=0)) + 1, np.uint64)  # new id -> old id
    ids[new] = np.fromiter(mapping.keys(), np.uint64, len(mapping))
    rag = region_graph_unchecked(consecutive.astype(np.int64, copy=False), ids.size - 1, affs,
                             channels, bins=bins)
    # Renumbering is not monotonic: map back and restore u < v and the (u, v) order.
    u, v = ids[rag.u], ids[rag.v]
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    order = np.lexsort((hi, lo))
    return RegionGraph(
        lo[order], hi[order], rag.count[order], rag.total[order], rag.maximum[order],
        None if rag.histogram is None else rag.histogram[order],
    )
