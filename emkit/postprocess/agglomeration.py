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
    heap_pop,
    heap_push,
    table_add,
    table_new,
    table_slot,
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
def _lookup(table, a, b, n, eu, ev, alive):
    """The live edge between regions ``a`` and ``b``, or -1.

    The table holds edge indices only, hashed by the regions an edge joined when it was
    added; a slot whose edge is dead or now joins other regions is passed over (such
    slots are stale, and their region pair never comes back: one of the two was absorbed).
    """
    mask = table.size - 1
    i = table_slot(table, _key(a, b, n))
    while table[i] >= 0:
        e = table[i]
        if alive[e] and ((eu[e] == a and ev[e] == b) or (eu[e] == b and ev[e] == a)):
            return e
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def _rebuild(table, n, eu, ev, alive):
    """Empties the table and puts the live edges back, in place (they fill at most
    half of it: never more than the edges it was made for); returns the slots used."""
    table[:] = -1
    live = 0
    for e in range(eu.size):
        if alive[e]:
            table_add(table, e, _key(eu[e], ev[e], n))
            live += 1
    return live


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
def merge_edges(n, eu, ev, total, count, hist, quantile, stop, order, frozen):
    """Merge edges in order of score until ``stop``; ``eu, ev, total, count, hist`` change.

    The initial edges are taken in ``order`` (their scores sorted, stably; it may stop at
    the first score ``>= stop``, see :func:`initial_order`); only rescored edges go
    through the heap, and only those below ``stop``, so most edges never touch it. No
    ``frozen`` region merges, and a region whose lowest edge leads to one is frozen too
    (``frozen`` changes; all False for an ordinary run; see emkit.blockwise.hierarchy).

    Memory: the work arrays take the dtype of ``eu`` (int32 halves them): per edge a
    link of each end in the adjacency lists (2), a version (1) and 2 to 4 hash slots,
    plus ``alive`` (bool); per region a list head, tail and length; per merge two
    nodes and a score; per rescored edge waiting below ``stop`` a heap entry (a score
    and two).

    Returns:
        ``(a, b, score, alive)``: every merge (node indices ``0..n-1``, of the dtype of
        ``eu``) and which edges are left, with their regions' current representatives in
        ``eu, ev``.
    """
    n_edges = eu.size
    head = np.full(n, -1, eu.dtype)
    tail = np.full(n, -1, eu.dtype)
    length = np.zeros(n, eu.dtype)
    nxt = np.full(2 * n_edges, -1, eu.dtype)
    table = table_new(n_edges, eu)
    used = n_edges
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
        table_add(table, e, _key(eu[e], ev[e], n))
    alive = np.ones(n_edges, np.bool_)
    version = np.zeros(n_edges, eu.dtype)
    keys = np.empty(1024, np.float64)
    items = np.empty(1024, eu.dtype)
    tags = np.empty(1024, eu.dtype)
    size = 0
    ptr = 0
    scored = -1  # the position in order whose score is in ``first``
    first = 0.0
    # Each merge leaves one region fewer, so there are at most n - 1; the pages of these
    # arrays are only taken (resident) as merges are written.
    merged_a = np.empty(max(n, 1), eu.dtype)
    merged_b = np.empty(max(n, 1), eu.dtype)
    merged_score = np.empty(max(n, 1), np.float64)
    m = 0
    while True:
        # An initial edge rescored or dead is stale for good: pass it by. A live one
        # still has its initial score, computed as edge_scores does.
        while ptr < order.size and (not alive[order[ptr]] or version[order[ptr]] != 0):
            ptr += 1
        if ptr < order.size and scored != ptr:
            first = _score(order[ptr], total, count, hist, quantile)
            scored = ptr
        if ptr < order.size and (
            size == 0
            or first < keys[0]
            or (first == keys[0] and order[ptr] < items[0])
        ):
            e = order[ptr]
            s = first
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
        merged_a[m], merged_b[m], merged_score[m] = a, b, s
        m += 1
        alive[e] = False
        # Walk b's list: join shared boundaries, hand b's own edges to a, and unlink
        # the half-edges of dead edges on the way, so no list is walked twice for them.
        start = -1
        last = -1
        live = 0
        h = head[b]
        while h >= 0:
            e2 = h >> 1
            nh = nxt[h]
            if alive[e2]:
                other = ev[e2] if eu[e2] == b else eu[e2]
                f = _lookup(table, a, other, n, eu, ev, alive)
                if f >= 0:  # a and b share this neighbour: join the two boundaries
                    total[f] += total[e2]
                    count[f] += count[e2]
                    for k in range(hist.shape[1] if hist.shape[0] else 0):
                        hist[f, k] += hist[e2, k]
                    alive[e2] = False
                    version[f] += 1
                    rescored = _score(f, total, count, hist, quantile)
                    if rescored < stop:  # an entry at or above stop would only stop
                        keys, items, tags, size = heap_push(
                            keys, items, tags, size, rescored, f, version[f])
                else:  # b's own neighbour: the edge now belongs to a, same score
                    if eu[e2] == b:
                        eu[e2] = a
                    else:
                        ev[e2] = a
                    table_add(table, e2, _key(a, other, n))
                    used += 1
                    if 2 * used > table.size:
                        used = _rebuild(table, n, eu, ev, alive)
                    if start < 0:
                        start = h
                    else:
                        nxt[last] = h
                    last = h
                    live += 1
            h = nh
        head[b] = -1
        length[b] = 0
        if start >= 0:
            nxt[last] = -1
            if head[a] < 0:
                head[a] = start
            else:
                nxt[tail[a]] = start
            tail[a] = last
            length[a] += live
    return merged_a[:m], merged_b[:m], merged_score[:m], alive


def index_dtype(n, n_edges):
    """int32 for the indices of a graph of ``n`` regions and ``n_edges`` edges when they
    fit (half the memory of :func:`merge_edges`), else int64."""
    return np.int32 if max(int(n), 2 * int(n_edges)) < 2**31 - 1 else np.int64


def initial_order(initial, stop, dtype=np.int64):
    """The edges in order of their initial scores (stable), up to the first ``>= stop``.

    The edges from there on can only stop :func:`merge_edges`, which stops by itself
    when none is left below ``stop``.

    Args:
        initial: ndarray of shape (E,), the scores of :func:`edge_scores`.
        stop: The stop score.
        dtype: Of the result (:func:`index_dtype`).

    Returns:
        ndarray of shape (K,) of edge indices, K <= E.
    """
    order = np.argsort(initial, kind="stable")
    above = np.count_nonzero(initial >= stop)
    kept = np.count_nonzero(initial < stop) if above else initial.size  # NaN sorts last
    return order[:kept].astype(dtype)


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
    dtype = index_dtype(n, total.size)
    order = initial_order(edge_scores(total, count, hist, float(quantile)), stop, dtype)
    a, b, score, _ = merge_edges(
        int(n), rag.u.astype(dtype), rag.v.astype(dtype), total, count, hist,
        float(quantile), float(stop), order, np.zeros(int(n), np.bool_),
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
    ordered = scores.size < 2 or bool((scores[1:] >= scores[:-1]).all())
    reached = scores if ordered else np.maximum.accumulate(scores)
    parent = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    done = 0
    luts = [None] * len(thresholds)
    for i in order:
        upto = int(np.searchsorted(reached, thresholds[i], side="left"))
        apply_merges(parent, history_a, history_b, done, upto)
        done = max(done, upto)
        luts[i] = consecutive_roots(parent)
    return luts


@njit(cache=True)
def consecutive_roots(parent):
    """Node -> the rank of its root among the roots of nodes ``1..n-1`` (from 1); 0 -> 0.

    The same as ``np.unique(roots(parent)[1:], return_inverse=True)[1] + 1`` behind a 0,
    without the sort.

    Args:
        parent: ndarray of shape (n,), a union-find forest (its paths are halved).

    Returns:
        int64 ndarray of shape (n,).
    """
    n = parent.size
    lut = np.zeros(n, np.int64)
    if n == 0:
        return lut
    rank = np.zeros(n, parent.dtype)
    for i in range(1, n):
        lut[i] = find(parent, i)
        rank[lut[i]] = 1
    r = 0
    for j in range(n):
        if rank[j]:
            r += 1
            rank[j] = r
    for i in range(1, n):
        lut[i] = rank[lut[i]]
    return lut


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



