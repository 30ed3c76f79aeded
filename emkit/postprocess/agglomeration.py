"""Greedy agglomeration of fragments by the affinities along their boundaries.

Mean-affinity agglomeration (thesis section 1.4.4; Funke et al. 2019, waterz): the
edge between two regions is scored ``1 - mean affinity`` over all voxel edges of their
boundary. The cheapest edge merges first; the boundaries of the merged region with a
common neighbour join, and the joined edge is rescored from the summed affinities and
counts (the count-weighted mean, as waterz's ``MeanAffinity``). Merging stops before the
first edge whose score reaches the threshold. A joined edge never scores below the
edge just merged (its mean lies between the two it joins), so the merges come out in
order of score, and one pass serves every threshold: the segmentation at threshold
``t`` applies the merges made before the first score ``>= t``.

Thresholds are scores, as in waterz: ``t`` merges regions while the mean affinity of
their boundary exceeds ``1 - t``. Larger thresholds merge more.

Optional scoring by a quantile of the boundary's affinities (waterz's
``HistogramQuantileAffinity``) keeps a histogram of ``bins`` equal bins per edge; joined
edges add their histograms, and the quantile is read off by linear interpolation inside
its bin, so it is exact to ``1 / bins``. It needs ``E x bins x 4`` bytes.

The merging runs in one numba-compiled loop: the edges sorted once by their initial
score, a binary heap (lazy deletion) for the rescored ones, an adjacency list per region
(the shorter list is walked and spliced onto the longer) and an open-addressing hash map
of region pairs, so E edges take O(E log E) time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from emkit.errors import InputError
from emkit.postprocess._checks import (
    check_affs,
    check_fragments,
    check_thresholds,
    check_unit_float,
)
from emkit.postprocess.graph_kernels import (
    find,
    grow,
    heap_pop,
    heap_push,
    roots,
    table_get,
    table_new,
    table_put,
)
from emkit.postprocess.options import DEFAULTS, check_scoring
from emkit.postprocess.rag import RegionGraph, region_graph_unchecked

#: Histogram bins per edge for quantile scoring.
DEFAULT_BINS = DEFAULTS.bins


@dataclass(frozen=True)
class MergeHistory:
    """The merges of one agglomeration pass, in the order they were made.

    Merge ``i`` joined the region that contains fragment ``a[i]`` with the region that
    contains ``b[i]`` (both are fragment ids of the graph), at score ``score[i]``.

    Attributes:
        a: ndarray of shape (M,), uint64, the fragment id that names the joined region.
        b: ndarray of shape (M,), uint64, the fragment id of the region absorbed.
        score: ndarray of shape (M,), float64, nondecreasing.
    """

    a: np.ndarray
    b: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.a.size)


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def _score(e, total, count, hist, quantile):
    """``1 - mean`` or ``1 - quantile`` of the affinities of edge ``e``."""
    bins = hist.shape[1]
    if hist.shape[0] == 0:
        return 1.0 - total[e] / count[e]
    target = quantile * count[e]
    below = 0.0
    for b in range(bins):
        h = hist[e, b]
        if h > 0 and below + h >= target:
            return 1.0 - (b + (target - below) / h) / bins
        below += h
    return 0.0


@njit(cache=True)
def _key(a, b, n):
    return min(a, b) * n + max(a, b)


@njit(cache=True)
def _lookup(keys, values, a, b, n, eu, ev, alive):
    """The live edge between regions ``a`` and ``b``, or -1 (stale entries ignored)."""
    e = table_get(keys, values, _key(a, b, n))
    if e >= 0 and alive[e] and ((eu[e] == a and ev[e] == b) or (eu[e] == b and ev[e] == a)):
        return e
    return -1


@njit(cache=True)
def _rebuild(keys, n, eu, ev, alive):
    """A fresh table holding only the live edges."""
    live = 0
    for e in range(eu.size):
        if alive[e]:
            live += 1
    keys, values = table_new(live)
    used = 0
    for e in range(eu.size):
        if alive[e]:
            used = table_put(keys, values, used, _key(eu[e], ev[e], n), e)
    return keys, values, used


@njit(cache=True)
def edge_scores(total, count, hist, quantile):
    """The merge score of every edge (1 - mean, or 1 - quantile, of its affinities).

    Args:
        total: ndarray of shape (E,), the sum of each edge's affinities.
        count: ndarray of shape (E,), the number of voxel pairs on each edge.
        hist: ndarray of shape (E, bins) of affinity histograms for quantile scoring,
            or of shape (0, 0) for mean scoring.
        quantile: the quantile, for quantile scoring.

    Returns:
        ndarray of shape (E,), float64.
    """
    out = np.empty(total.size, np.float64)
    for e in range(total.size):
        out[e] = _score(e, total, count, hist, quantile)
    return out


@njit(cache=True)
def merge_edges(n, eu, ev, total, count, hist, quantile, stop, initial, order, frozen):
    """Merge edges in order of score until ``stop``; ``eu, ev, total, count, hist`` change.

    The initial edges are taken in ``order`` (their ``initial`` scores sorted); only
    rescored edges go through the heap, so most edges never touch it. No ``frozen``
    region merges, and a region whose lowest edge leads to one is frozen too (``frozen``
    changes; all False for an ordinary run; see emkit.blockwise.hierarchy).

    Returns:
        ``(a, b, score, alive)``: every merge (node indices ``0..n-1``) and which edges
        are left, with their regions' current representatives in ``eu, ev``.
    """
    n_edges = eu.size
    head = np.full(n, -1, np.int64)
    tail = np.full(n, -1, np.int64)
    length = np.zeros(n, np.int64)
    nxt = np.full(2 * n_edges, -1, np.int64)
    tkeys, tvalues = table_new(n_edges)
    used = 0
    for e in range(n_edges):
        for side in range(2):
            node = eu[e] if side == 0 else ev[e]
            h = 2 * e + side
            if head[node] < 0:
                head[node] = h
            else:
                nxt[tail[node]] = h
            tail[node] = h
            length[node] += 1
        used = table_put(tkeys, tvalues, used, _key(eu[e], ev[e], n), e)
    alive = np.ones(n_edges, np.bool_)
    version = np.zeros(n_edges, np.int64)
    keys = np.empty(1024, np.float64)
    items = np.empty(1024, np.int64)
    tags = np.empty(1024, np.int64)
    size = 0
    ptr = 0
    merged_a = np.empty(1024, np.int64)
    merged_b = np.empty(1024, np.int64)
    merged_score = np.empty(1024, np.float64)
    m = 0
    while True:
        if ptr < n_edges and (
            size == 0
            or initial[order[ptr]] < keys[0]
            or (initial[order[ptr]] == keys[0] and order[ptr] < items[0])
        ):
            e = order[ptr]
            s = initial[e]
            tag = 0
            ptr += 1
        elif size > 0:
            s, e, tag, size = heap_pop(keys, items, tags, size)
        else:
            break
        if not alive[e] or tag != version[e]:
            continue
        if s >= stop:
            break
        a, b = eu[e], ev[e]
        if frozen[a] or frozen[b]:  # the lowest edge of both: whoever is free waits too
            frozen[a] = True
            frozen[b] = True
            continue
        if length[a] < length[b]:
            a, b = b, a  # a absorbs b: walk the shorter adjacency list
        merged_a = grow(merged_a, m + 1)
        merged_b = grow(merged_b, m + 1)
        merged_score = grow(merged_score, m + 1)
        merged_a[m], merged_b[m], merged_score[m] = a, b, s
        m += 1
        alive[e] = False
        # Walk b's list: join shared boundaries, hand b's own edges to a, and unlink
        # the half-edges of dead edges on the way, so no list is walked twice for them.
        first = -1
        last = -1
        live = 0
        h = head[b]
        while h >= 0:
            e2 = h >> 1
            nh = nxt[h]
            if alive[e2]:
                other = ev[e2] if eu[e2] == b else eu[e2]
                f = _lookup(tkeys, tvalues, a, other, n, eu, ev, alive)
                if f >= 0:  # a and b share this neighbour: join the two boundaries
                    total[f] += total[e2]
                    count[f] += count[e2]
                    for k in range(hist.shape[1] if hist.shape[0] else 0):
                        hist[f, k] += hist[e2, k]
                    alive[e2] = False
                    version[f] += 1
                    keys, items, tags, size = heap_push(
                        keys, items, tags, size, _score(f, total, count, hist, quantile),
                        f, version[f],
                    )
                else:  # b's own neighbour: the edge now belongs to a, same score
                    if eu[e2] == b:
                        eu[e2] = a
                    else:
                        ev[e2] = a
                    used = table_put(tkeys, tvalues, used, _key(a, other, n), e2)
                    if 2 * used > tkeys.size:
                        tkeys, tvalues, used = _rebuild(tkeys, n, eu, ev, alive)
                    if first < 0:
                        first = h
                    else:
                        nxt[last] = h
                    last = h
                    live += 1
            h = nh
        head[b] = -1
        length[b] = 0
        if first >= 0:
            nxt[last] = -1
            if head[a] < 0:
                head[a] = first
            else:
                nxt[tail[a]] = first
            tail[a] = last
            length[a] += live
    return merged_a[:m].copy(), merged_b[:m].copy(), merged_score[:m].copy(), alive


@njit(cache=True)
def apply_merges(parent, a, b, start, stop):
    """Unite ``a[i]`` and ``b[i]`` for ``start <= i < stop`` in the union-find ``parent``.

    Args:
        parent: ndarray of node parents (changed in place).
        a, b: ndarrays of node indices, merge by merge.
        start, stop: the merges to apply.
    """
    for i in range(start, stop):
        ra = find(parent, a[i])
        rb = find(parent, b[i])
        if ra != rb:
            parent[rb] = ra


# ----------------------------------------------------------------------------- API


def history_indices(rag, n, *, scoring, quantile, stop):
    """Merge history in node indices of a graph with int64 ids < n (internal)."""
    if scoring == "quantile" and rag.histogram is None:
        raise InputError("quantile scoring needs a region graph built with bins > 0")
    hist = (
        rag.histogram.copy()
        if scoring == "quantile"
        else np.zeros((0, 1), np.uint32)
    )
    total = rag.total.astype(np.float64)
    count = rag.count.astype(np.float64)
    initial = edge_scores(total, count, hist, float(quantile))
    order = np.argsort(initial, kind="stable")
    a, b, score, _ = merge_edges(
        int(n), rag.u.astype(np.int64), rag.v.astype(np.int64), total, count, hist,
        float(quantile), float(stop), initial, order, np.zeros(int(n), np.bool_),
    )
    return a, b, score


def merge_history(rag, *, scoring="mean", quantile=0.5, stop=1.0):
    """Agglomerate a region graph greedily and record every merge.

    Args:
        rag: :class:`~emkit.postprocess.rag.RegionGraph` (for example from
            :func:`~emkit.postprocess.rag.region_graph`, or built by hand).
        scoring: ``"mean"`` (score = 1 - mean affinity of the boundary) or
            ``"quantile"`` (1 - the ``quantile`` of its affinities; needs
            ``rag.histogram``).
        quantile: the quantile in [0, 1] for ``scoring="quantile"`` (0.5 = median).
        stop: merge only while scores are below it (1.0: until nothing is left that has
            a boundary with any affinity above 0).

    Returns:
        :class:`MergeHistory`, scores nondecreasing.

    Example:
        >>> rag = RegionGraph(u=np.array([1, 1, 2]), v=np.array([2, 3, 3]),
        ...                   count=np.array([2, 1, 1]), total=np.array([1.8, 0.2, 0.5]),
        ...                   maximum=np.array([0.9, 0.2, 0.5], np.float32))
        >>> history = merge_history(rag)
        >>> history.score.round(3).tolist()  # 1 - 0.9, then 1 - (0.2 + 0.5) / 2
        [0.1, 0.65]
    """
    quantile, _ = check_scoring(scoring, quantile, 1)
    stop = check_unit_float(stop, "stop", high=np.inf)
    ids, inverse = np.unique(np.concatenate([rag.u, rag.v]), return_inverse=True)
    e = len(rag)
    nodes = RegionGraph(
        inverse[:e], inverse[e:], rag.count, rag.total, rag.maximum, rag.histogram
    )
    a, b, score = history_indices(nodes, ids.size, scoring=scoring, quantile=quantile,
                                  stop=stop)
    ids = ids.astype(np.uint64)
    return MergeHistory(ids[a], ids[b], score)


def threshold_luts(history_a, history_b, scores, n, thresholds):
    """For each threshold, a lookup table node -> consecutive segment id (internal).

    Node 0 (background) maps to 0; other nodes to ids from 1, ordered by root node.
    """
    order = np.argsort(thresholds, kind="stable")
    reached = np.maximum.accumulate(scores) if scores.size else scores
    parent = np.arange(n)
    done = 0
    luts = [None] * len(thresholds)
    for i in order:
        upto = int(np.searchsorted(reached, thresholds[i], side="left"))
        apply_merges(parent, history_a, history_b, done, upto)
        done = max(done, upto)
        root = roots(parent)
        lut = np.zeros(n, np.int64)
        _, inverse = np.unique(root[1:], return_inverse=True)
        lut[1:] = inverse + 1
        luts[i] = lut
    return luts


def agglomerate(fragments, affs, *, thresholds=(0.5,), scoring="mean", quantile=0.5,
                bins=DEFAULT_BINS, offsets=None):
    """Segmentations at several thresholds from one agglomeration of ``fragments``.

    Builds the region graph of ``fragments`` (:func:`~emkit.postprocess.rag.region_graph`)
    and merges it greedily by score (see the module docstring).

    Args:
        fragments: ndarray of shape (Z, Y, X), integer ids; 0 is no fragment and stays 0.
        affs: ndarray of shape (Z, Y, X, C), float in [0, 1], channels last; only the
            nearest-neighbour channels are read.
        thresholds: score thresholds in [0, 1]; ``t`` merges while the boundary's mean
            (or quantile) affinity exceeds ``1 - t``, as waterz's thresholds.
        scoring: ``"mean"`` or ``"quantile"``.
        quantile: the quantile for ``scoring="quantile"`` (0.5 = median).
        bins: histogram bins per edge for ``scoring="quantile"``.
        offsets: offset of every channel; None means ``DEFAULT_OFFSETS`` first.

    Returns:
        List of ndarrays of shape (Z, Y, X), uint64, one per threshold in the order
        given: segment ids consecutive from 1, 0 where ``fragments`` is 0.

    Example:
        >>> fragments = np.array([[[1, 1, 2, 2, 3, 3]]])
        >>> affs = np.ones((1, 1, 6, 3), np.float32)
        >>> affs[0, 0, 2, 2], affs[0, 0, 4, 2] = 0.8, 0.2  # boundaries 1|2 and 2|3
        >>> [s.tolist() for s in agglomerate(fragments, affs, thresholds=[0.1, 0.5, 0.9])]
        [[[[1, 1, 2, 2, 3, 3]]], [[[1, 1, 1, 1, 2, 2]]], [[[1, 1, 1, 1, 1, 1]]]]
    """
    import fastremap

    affs, channels = check_affs(affs, offsets=offsets)
    check_fragments(fragments, affs.shape[:3])
    thresholds = check_thresholds(thresholds)
    quantile, bins = check_scoring(scoring, quantile, bins)
    consecutive, mapping = fastremap.renumber(
        np.ascontiguousarray(fragments), preserve_zero=True, in_place=False
    )
    consecutive = consecutive.astype(np.int64, copy=False)
    n = int(max(mapping.values(), default=0)) + 1
    rag = region_graph_unchecked(consecutive, n - 1, affs, channels,
                             bins=bins if scoring == "quantile" else 0)
    a, b, score = history_indices(rag, n, scoring=scoring, quantile=quantile,
                                  stop=max(thresholds))
    luts = threshold_luts(a, b, score, n, np.asarray(thresholds))
    return [np.take(lut, consecutive).view(np.uint64) for lut in luts]



