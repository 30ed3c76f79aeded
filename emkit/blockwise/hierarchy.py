r"""Hierarchical agglomeration of the stitched region graph, as ABISS does it; exact.

The greedy agglomeration of :mod:`~emkit.postprocess.agglomeration` merges the edge of
lowest score first. Its scores are *reducible*: the edge that joins two boundaries
scores between the two (a count-weighted mean, or a quantile of a mixture of
histograms), never below the lower one. So an edge that is the lowest of every edge of
both its regions is merged by the whole-volume run too, at that score, whatever else
merges first; merging such edges in any order gives the whole-volume run's merges (the
same dendrogram, as for the nearest-neighbour chain algorithm of hierarchical
clustering). Only ties of equal scores, and float rounding of sums added in another
order, may differ.

ABISS (Lu, Zlateski and Seung 2021) uses this to agglomerate a volume in a hierarchy of
chunks. A chunk knows every edge of a region inside it, but not the edges of a region
that touches the chunk's boundary (its neighbours across it are elsewhere): such a
region is *frozen*. The chunk merges its edges in order of score, skipping the merges
that would involve a frozen region; a region whose next edge leads to a frozen region
becomes frozen too (its fate depends on the frozen one). A region that is not frozen
when no edge below the stop score is left will never merge again, and neither will its
edges, so it is final and is dropped with them. What is handed up is the frozen
regions and the edges between them: about the chunk's surface, not its volume. The
parent chunk joins eight children along the faces between them (their face edges),
freezes what touches its own boundary, and goes on; the top chunk, the whole volume,
freezes nothing and finishes.

Here the leaves are the blocks (their inner region graphs), and a chunk of level
``L`` is ``2^L`` blocks per axis; the face edges between two blocks are added at the
level whose chunk first holds both. A region's contact with block faces is kept as
*face bounds*: per axis, the least and greatest face plane (``i`` is the plane
between blocks ``i - 1`` and ``i``) that any of its fragments touches, so a region
touches a chunk's boundary iff a bound equals the chunk's first or last plane. Each
chunk also hands up, for the fragments on its boundary, the region each belongs to,
which is how its parent maps face edges (written with fragment ids) to regions. The
pieces of one fragment that a face cut (the joined pairs of
:func:`~emkit.blockwise.stitch.face_edges`) are united when the chunk that holds both
is built, before its merges; a union, too, only turns edges into mixtures of edges, so
the argument above holds for the graph with the pieces united.

Memory: a chunk task holds its graph once, in narrow types (int32 region indices and
voxel-pair counts while they fit, float64 sums, uint32 histograms): it reads its
children's edges a slice at a time into arrays made to size, maps face edges to
regions, and then reorders, sums and packs the edge arrays in place. Its peak is in
the greedy merge (:func:`~emkit.postprocess.agglomeration.merge_edges`): per edge 20
bytes of graph, 8 of adjacency links, 8 to 16 of hash table, 5 of flags and versions,
up to 4 of initial order, and heap entries (16 bytes each) for rescored edges below
the stop score; ``4 * bins`` more with quantile scoring; per region about 60 (its id
and face bounds, list heads, merges). :func:`chunk_memory` is that as a formula,
``64 * edges + 4 * bins * edges + 64 * regions + 16 MiB``, and :func:`check_memory`
refuses a task whose worker's memory limit it would pass, before the task reads its
graph. Measured (``benchmarks/blockwise.py --top-graph``; the peak resident memory of
a fresh process above its start, in a Dask worker's environment): a synthetic top
chunk of 1.3 M regions and 6.4 M edges took 343 to 421 MiB at stop scores 0.2 to 0.9,
56 to 68 bytes per edge with the regions' share (1357 MiB before, at 0.5), and one of
0.33 M regions and 1.6 M edges with 64 bins 482 MiB, 317 bytes per edge (1401 MiB
before); that is 0.7 to 0.92 of the formula. The top chunk
holds what every level below froze, which on real data, where frozen regions
propagate, can be a large part of the volume's graph: it is the one task that grows
with the volume. The merges of all chunks (at most one per fragment, 16 bytes each)
are joined into the lookup tables at the end (:func:`threshold_tables`), which take 8
bytes per fragment and threshold, and 16 more per fragment while they are made (8 for
the fragment sizes, with dust).

References:
    R. Lu, A. Zlateski and H. S. Seung (2021). Large-scale image segmentation based on
    distributed clustering algorithms. arXiv:2106.10795 (ABISS).
    F. Murtagh (1983). A survey of recent advances in hierarchical clustering
    algorithms. The Computer Journal 26(4) (reducibility, nearest-neighbour chains).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from emkit.blockwise.stitch import FACE_BITS
from emkit.postprocess.agglomeration import edge_scores, index_dtype, initial_order, merge_edges
from emkit.postprocess.graph_kernels import roots

#: Face bound of a region that touches no face on an axis (lower / upper).
NO_FACE = (np.int32(2**30), np.int32(-1))
#: The score recorded for uniting the pieces of a fragment cut by a face: below every
#: threshold, so that every segmentation has them together.
JOINED = -1.0


@dataclass(frozen=True)
class Chunk:
    """A chunk of blocks at one level of the hierarchy: ``2^level`` blocks per axis.

    Attributes:
        level: 0 for a block, up to :func:`top_level` for the whole grid.
        index: Position among the chunks of its level, per axis.
        id: That position in C order; names the chunk's file and marker.
        lo: First block index per axis.
        hi: One past the last block index per axis.
        write: The voxels the chunk covers (for messages).
    """

    level: int
    index: tuple[int, int, int]
    id: int
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    write: tuple[slice, slice, slice]


def top_level(grid_shape) -> int:
    """The level whose one chunk is the whole grid of ``grid_shape`` blocks."""
    return max(math.ceil(math.log2(n)) if n > 1 else 0 for n in grid_shape)


def level_shape(grid, level: int) -> tuple[int, ...]:
    """Chunks per axis at one level.

    Args:
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid`.
        level: The level (a chunk is ``2^level`` blocks per axis).

    Returns:
        The number of chunks along each axis.
    """
    return tuple(-(-n // (1 << level)) for n in grid.shape)


def chunk_at(grid, level: int, index) -> Chunk:
    """One chunk.

    Args:
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid`.
        level: Its level.
        index: Its position among the chunks of the level, per axis.

    Returns:
        The :class:`Chunk`.
    """
    side = 1 << level
    lo = tuple(i * side for i in index)
    hi = tuple(min((i + 1) * side, n) for i, n in zip(index, grid.shape))
    write = tuple(slice(a * b, min(z * b, v)) for a, z, b, v in
                  zip(lo, hi, grid.block_shape, grid.volume_shape))
    flat = 0
    for i, n in zip(index, level_shape(grid, level)):
        flat = flat * n + i
    return Chunk(level, tuple(index), flat, lo, hi, write)


def chunks(grid, level: int) -> list[Chunk]:
    """Every chunk of one level.

    Args:
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid`.
        level: The level.

    Returns:
        The chunks in C order (their ids 0, 1, ...).
    """
    return [chunk_at(grid, level, index)
            for index in itertools.product(*map(range, level_shape(grid, level)))]


def children(chunk: Chunk, grid) -> list[Chunk]:
    """The chunks one level down that make up a chunk.

    Args:
        chunk: A :class:`Chunk` of level 1 or more.
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid`.

    Returns:
        Up to eight chunks of ``chunk.level - 1``.
    """
    below = level_shape(grid, chunk.level - 1)
    return [chunk_at(grid, chunk.level - 1, index) for index in itertools.product(*(
        [j for j in (2 * i, 2 * i + 1) if j < n] for i, n in zip(chunk.index, below)))]


def inner_faces(chunk: Chunk, grid) -> list[tuple[int, int]]:
    """The block faces a chunk adds: those between its children.

    Args:
        chunk: A :class:`Chunk` of level 1 or more.
        grid: The job's :class:`~emkit.blockwise.grid.BlockGrid`.

    Returns:
        ``(block id, axis)`` of each face: the block is the one after the face, whose
        face file holds the edges to the block before it along ``axis``.
    """
    found = []
    for axis in range(3):
        plane = chunk.lo[axis] + (1 << (chunk.level - 1))
        if plane >= chunk.hi[axis]:
            continue
        ranges = [range(a, z) for a, z in zip(chunk.lo, chunk.hi)]
        ranges[axis] = range(plane, plane + 1)
        found += [(grid.block(index).id, axis) for index in itertools.product(*ranges)]
    return found


def block_bounds(faces, index, grid_shape):
    """Face bounds of a block's fragments from their face masks.

    Args:
        faces: uint8 per fragment, the bits of :data:`~emkit.blockwise.stitch.FACE_BITS`
            of the block faces it touches.
        index: The block's position in the grid.
        grid_shape: Blocks per axis.

    Returns:
        ``(fmin, fmax)``, int32 arrays of shape (n, 3): per axis the least and greatest
        face plane touched that has a block on its other side (:data:`NO_FACE` if none).
    """
    faces = np.asarray(faces, np.uint8)
    fmin = np.full((faces.size, 3), NO_FACE[0], np.int32)
    fmax = np.full((faces.size, 3), NO_FACE[1], np.int32)
    for axis, (lower, upper) in enumerate(FACE_BITS):
        i = index[axis]
        if i > 0:
            touch = (faces & lower) != 0
            fmin[touch, axis] = i
            fmax[touch, axis] = i
        if i + 1 < grid_shape[axis]:
            touch = (faces & upper) != 0
            fmin[touch, axis] = np.minimum(fmin[touch, axis], i + 1)
            fmax[touch, axis] = i + 1
    return fmin, fmax


def touches(fmin, fmax, chunk: Chunk) -> np.ndarray:
    """Whether regions touch the boundary of a chunk.

    Args:
        fmin, fmax: Face bounds of the regions, shape (n, 3) (:func:`block_bounds`).
        chunk: The :class:`Chunk`; its boundary planes are ``lo`` and ``hi`` per axis.

    Returns:
        Bool ndarray of shape (n,).
    """
    lo, hi = np.asarray(chunk.lo), np.asarray(chunk.hi)
    return ((np.asarray(fmin) == lo) | (np.asarray(fmax) == hi)).any(axis=1)


# --------------------------------------------------------------------------- one chunk
# A chunk's graph, as :func:`block_graph` and :func:`joined_graph` build it and
# :func:`agglomerate_chunk` takes it, names its regions by index into ``nodes`` (local
# indices, int32 while they fit); its results name them by global fragment id.


def block_graph(graph, block, grid_shape, stride: int) -> dict:
    """The leaf graph of one block: its fragments and inner edges.

    Args:
        graph: The block's graph from :func:`~emkit.blockwise.stitch.block_fragments`
            (a dict or an opened ``.npz``).
        block: The :class:`~emkit.blockwise.grid.Block`.
        grid_shape: Blocks per axis.
        stride: The id stride of a block (global id = ``block.id * stride + k``).

    Returns:
        The graph layout of :func:`agglomerate_chunk`, with the boundary fragments
        (``frag``, ``frag_fmin``, ``frag_fmax``) being all of them.
    """
    base = block.id * stride
    n = int(graph["n"])
    dtype = index_dtype(n, 0)
    nodes = base + np.arange(1, n + 1, dtype=np.int64)
    fmin, fmax = block_bounds(graph["faces"], block.index, grid_shape)
    u, v = (np.asarray(graph[key]).astype(dtype) for key in ("u", "v"))
    u -= 1  # ids 1..n are nodes 0..n-1
    v -= 1
    return {"nodes": nodes, "fmin": fmin, "fmax": fmax, "u": u, "v": v,
            "count": _counts([graph["count"]]),
            "total": np.asarray(graph["total"], np.float64),
            "hist": np.asarray(graph["hist"], np.uint32),
            "frag": nodes, "frag_fmin": fmin, "frag_fmax": fmax,
            "frag_rep": np.arange(n, dtype=dtype)}


def joined_graph(parts, faces, bins: int) -> dict:
    """The graph of a chunk from its children's reduced graphs and its inner faces.

    Args:
        parts: The children's results of :func:`agglomerate_chunk` (dicts, or ``.npz``
            files opened with :func:`numpy.load`, whose edges are read a slice at a
            time into the joined arrays).
        faces: Face edges between the children (dicts of
            :func:`~emkit.blockwise.stitch.face_edges`, global fragment ids).
        bins: Histogram bins per edge (0 for none).

    Returns:
        The graph layout of :func:`agglomerate_chunk` (parallel edges are left for it
        to sum; children's edges first, then the faces', in the order given), with the
        fragment pieces that a watershed joined across a face (``joined_u, joined_v``
        of the faces) united: ``joined_a, joined_b`` record it.
    """
    parts = list(parts)  # a chunk has 1+ children
    nodes = np.concatenate([np.asarray(p["nodes"], np.int64) for p in parts])
    order = np.argsort(nodes, kind="stable")
    nodes = nodes[order]
    fmin, fmax = (np.concatenate([np.asarray(p[k], np.int32) for p in parts])[order]
                  for k in ("fmin", "fmax"))
    del order
    dtype = index_dtype(nodes.size, 0)
    graph = {"nodes": nodes, "fmin": fmin, "fmax": fmax}
    for key in ("frag", "frag_fmin", "frag_fmax"):
        graph[key] = np.concatenate([p[key] for p in parts])
    graph["frag_rep"] = np.concatenate([_local(nodes, p["frag_rep"], dtype) for p in parts])
    order = np.argsort(graph["frag"], kind="stable")
    by_fragment = (order, graph["frag"][order])
    del order
    edges = [f for f in faces if len(f["u"])]
    sizes = [_shape(p, "u")[0] for p in parts] + [len(f["u"]) for f in edges]
    starts = np.cumsum([0, *sizes])
    width = _shape(parts[0], "hist")[1:] if bins else (1,)
    graph |= {"u": np.empty(starts[-1], dtype), "v": np.empty(starts[-1], dtype),
              "count": np.empty(starts[-1], np.int32), "total": np.empty(starts[-1]),
              "hist": np.zeros((starts[-1] if bins else 0, *width), np.uint32)}
    pairs = 0  # voxel pairs so far: counts stay int32 below 2^31
    for i, (source, start) in enumerate(zip(parts + edges, starts)):
        child = i < len(parts)  # region ids, else a face's fragment ids
        for key in ("u", "v", "count", "total", "hist"):
            if key == "hist" and not bins:
                continue
            at = start
            for piece in _pieces(source, key):
                if key in ("u", "v"):
                    piece = (_local(nodes, piece, dtype) if child else
                             _regions(graph, by_fragment, np.asarray(piece, np.int64)))
                elif key == "count":
                    pairs += int(np.sum(piece, dtype=np.int64))
                    if pairs >= 2**31 and graph["count"].dtype == np.int32:
                        graph["count"] = graph["count"].astype(np.int64)
                graph[key][at:at + len(piece)] = piece
                at += len(piece)
    joined = [(np.asarray(f["joined_u"], np.int64), np.asarray(f["joined_v"], np.int64))
              for f in faces if len(f.get("joined_u", ()))]
    if joined:
        ends = [_regions(graph, by_fragment, np.concatenate(side)) for side in zip(*joined)]
        graph = _unite(graph, *ends)
    return graph


def _shape(part, key) -> tuple[int, ...]:
    """The shape of one array of a child's result (an opened ``.npz``: its header)."""
    from emkit.blockwise.store import npz_shape

    if isinstance(part, np.lib.npyio.NpzFile):
        return npz_shape(part, key)
    return np.shape(part[key])


def _pieces(part, key, step: int = 1 << 16):
    """One array of a child's result or a face, ``step`` rows at a time (from an opened
    ``.npz``, read a piece at a time)."""
    from emkit.blockwise.store import npz_rows

    if isinstance(part, np.lib.npyio.NpzFile):
        yield from npz_rows(part, key, step)
        return
    array = np.asarray(part[key])
    for start in range(0, len(array), step):
        yield array[start:start + step]


def _counts(pieces) -> np.ndarray:
    """Voxel-pair counts joined into one array: int32 while their sum fits (no merge of
    edges can pass it), else int64."""
    narrow, total = [], 0
    for piece in pieces:
        piece = np.asarray(piece, np.int64)
        total += int(piece.sum())
        narrow.append(piece.astype(np.int32) if piece.max(initial=0) < 2**31 else piece)
    joined = np.concatenate(narrow) if narrow else np.zeros(0, np.int32)
    return joined if total < 2**31 else joined.astype(np.int64)


def _local(nodes, ids, dtype, step: int = 1 << 20) -> np.ndarray:
    """The indices in ``nodes`` (sorted) of region ids (all in it), of ``dtype``; a
    slice at a time, so that only ``ids`` and the result are whole."""
    ids = np.asarray(ids, np.int64)
    found = np.empty(ids.size, dtype)
    for start in range(0, ids.size, step):
        found[start:start + step] = np.searchsorted(nodes, ids[start:start + step])
    return found


def _regions(graph, by_fragment, fragments) -> np.ndarray:
    """The regions (local indices) that ``fragments`` belong to, from ``graph``'s
    boundary fragments; ``by_fragment`` is ``(order, frag[order])``, them sorted."""
    frag = graph["frag"]
    order, ordered = by_fragment
    at = np.minimum(np.searchsorted(ordered, fragments), max(len(frag) - 1, 0))
    found = order[at] if len(frag) else at
    if len(fragments) and (not len(frag) or (frag[found] != fragments).any()):
        missing = fragments[frag[found] != fragments][:5] if len(frag) else fragments[:5]
        raise RuntimeError(f"face edges name fragments {missing.tolist()} that no child "
                           "chunk lists on its boundary")
    return graph["frag_rep"][found]


def _unite(graph, u, v) -> dict:
    """Unites the regions of the pairs ``u, v`` of ``graph`` into one region each, in
    place (``graph`` is :func:`joined_graph`'s own).

    The edges between united regions are dropped (they are inside a fragment now) and
    the united ones recorded as ``joined_a, joined_b`` (the region kept, the one united
    into it), merges that every threshold applies.
    """
    from emkit.postprocess.agglomeration import apply_merges

    nodes = graph["nodes"]
    n = nodes.size
    parent = np.arange(n)
    apply_merges(parent, u, v, 0, u.size)
    root = roots(parent)
    del parent
    kept = root == np.arange(n)
    merged = np.flatnonzero(~kept)
    for key, at in (("fmin", np.minimum.at), ("fmax", np.maximum.at)):
        bounds = graph[key].copy()
        at(bounds, root, graph[key])
        graph[key] = bounds[kept]
    renumber = (np.cumsum(kept) - 1).astype(graph["frag_rep"].dtype)[root]  # to its root
    graph["frag_rep"] = renumber[graph["frag_rep"]]
    graph["joined_a"], graph["joined_b"] = nodes[root[merged]], nodes[merged]
    graph["nodes"] = nodes[kept]
    del nodes, root, kept, merged
    edges = [graph[key] for key in ("u", "v", "count", "total", "hist")]
    kept = _renumber_edges(renumber, *edges)  # in place; prefixes, no copies
    for key, edge in zip(("u", "v", "count", "total", "hist"), edges):
        graph[key] = edge[:kept] if len(edge) == len(edges[0]) else edge
    return graph


@njit(cache=True)
def _renumber_edges(renumber, u, v, count, total, hist):
    """Renumbers the ends of edges through ``renumber`` and packs the edges whose ends
    differ at the front, in order, in place; returns their number."""
    rows = hist.shape[0] == u.size
    k = 0
    for i in range(u.size):
        a, b = renumber[u[i]], renumber[v[i]]
        if a != b:
            u[k], v[k], count[k], total[k] = a, b, count[i], total[i]
            if rows:
                for j in range(hist.shape[1]):
                    hist[k, j] = hist[i, j]
            k += 1
    return k


def agglomerate_chunk(graph: dict, chunk: Chunk, *, scoring: str, quantile: float,
                      stop: float) -> dict:
    """Agglomerates one chunk's graph, freezing the regions on its boundary.

    It takes ``graph`` over: the dict is left as it is, but its edge arrays are
    reordered and summed in place (the histograms are the largest), and each array is
    let go once used, so a caller that keeps no reference to the graph
    (``agglomerate_chunk(joined_graph(...), ...)``) frees it as it goes (memory:
    :func:`chunk_memory`).

    Args:
        graph: ``nodes`` (int64, sorted global fragment ids naming the regions),
            ``fmin, fmax`` (their face bounds), the edges ``u, v`` (local indices of
            regions in ``nodes``, any order, parallel edges allowed), ``count`` (voxel
            pairs, int32 while their sum fits, else int64), ``total`` (float64), ``hist`` (``(E, bins)``; ``(E, 1)`` or ``(0, 1)`` unless
            ``scoring="quantile"``), the boundary fragments ``frag`` (global ids) with
            their ``frag_fmin, frag_fmax`` and region ``frag_rep`` (local), and optionally
            ``joined_a, joined_b`` (:func:`joined_graph`).
        chunk: The :class:`Chunk`; regions that touch its boundary are frozen.
        scoring, quantile: As for :func:`~emkit.postprocess.merge_history`.
        stop: Merge only below this score (the largest threshold).

    Returns:
        The merges ``a, b, score`` (global ids; first the unions ``joined_a, joined_b``
        of ``graph``, if any, at score :data:`JOINED`) and the reduced graph with global
        ids: the frozen regions (``nodes, fmin, fmax``), the edges between them (``u, v,
        count`` (int64), ``total, hist``), and the fragments on the chunk's boundary
        with their regions (``frag, frag_fmin, frag_fmax, frag_rep``); plus
        ``edges_in`` (edges agglomerated).
    """
    graph = dict(graph)  # each array is dropped from this copy once it is used
    nodes = graph.pop("nodes")
    n = nodes.size
    on_boundary = touches(graph["frag_fmin"], graph["frag_fmax"], chunk)
    frag, frag_fmin, frag_fmax, rep = (graph.pop(key)[on_boundary] for key in
                                       ("frag", "frag_fmin", "frag_fmax", "frag_rep"))
    del on_boundary
    joined_a = np.asarray(graph.pop("joined_a", ()), np.int64)
    joined_b = np.asarray(graph.pop("joined_b", ()), np.int64)
    if (graph["u"] == graph["v"]).any():
        raise RuntimeError(f"chunk {chunk.index} of level {chunk.level}: an edge joins a "
                           "region to itself")
    quantiled = scoring == "quantile"
    eu, ev, count, total, hist = _summed_edges(graph, n, quantiled)
    dtype = eu.dtype
    frozen = touches(graph["fmin"], graph["fmax"], chunk)
    order = initial_order(edge_scores(total, count, hist, float(quantile)), stop, dtype)
    a, b, score, alive = merge_edges(n, eu, ev, total, count, hist, float(quantile),
                                      float(stop), order, frozen)
    del order
    parent = np.arange(n)
    parent[b] = a  # a absorbed b while a was a root: the merges make a forest
    root = roots(parent)
    del parent
    fmin, fmax = graph.pop("fmin"), graph.pop("fmax")
    fmin_root, fmax_root = fmin.copy(), fmax.copy()
    np.minimum.at(fmin_root, root, fmin)
    np.maximum.at(fmax_root, root, fmax)
    del fmin, fmax
    kept = alive & frozen[eu] & frozen[ev]
    del alive
    result = {
        "a": np.concatenate([joined_a, nodes[a]]), "b": np.concatenate([joined_b, nodes[b]]),
        "score": np.concatenate([np.full(joined_a.size, JOINED), score]),
        "nodes": nodes[frozen], "fmin": fmin_root[frozen], "fmax": fmax_root[frozen],
        "frag": frag, "frag_fmin": frag_fmin, "frag_fmax": frag_fmax,
        "frag_rep": nodes[root[rep]], "edges_in": eu.size,
    }
    del a, b, score, root, fmin_root, fmax_root
    # The edges between frozen regions, one array at a time, each let go once used.
    result["u"] = nodes[eu[kept]]
    del eu
    result["v"] = nodes[ev[kept]]
    del ev
    result["count"] = count[kept].astype(np.int64)
    del count
    result["total"] = total[kept]
    del total
    result["hist"] = (hist[:_pack_rows(hist, kept)] if quantiled  # in place
                      else np.zeros((0, 1), np.uint32))
    return result


@njit(cache=True)
def _pack_rows(rows, keep):
    """Packs the rows of ``rows`` where ``keep`` at the front, in order, in place;
    returns their number."""
    k = 0
    for i in range(keep.size):
        if keep[i]:
            if k != i:
                rows[k, :] = rows[i, :]
            k += 1
    return k


def _summed_edges(graph, n: int, quantiled: bool):
    """Pops ``u, v, count, total, hist`` from ``graph``; returns them with parallel edges
    summed, sorted by (lower end, higher end): ``eu < ev``.

    The sums run in the edges' order (a stable sort), as a ``bincount`` over them would,
    so they are the same to the last bit. The edges are sorted by one int64 key that
    holds both ends; ``count, total, hist`` are permuted and summed in place.
    """
    m = max(n, 1)
    u, v = graph.pop("u"), graph.pop("v")
    key = np.minimum(u, v).astype(np.int64)
    key *= m
    key += np.maximum(u, v)
    del u, v
    order = np.argsort(key, kind="stable")
    key = key[order]
    count = graph.pop("count")
    count = count if count.dtype.kind == "i" else _counts([count])
    total = np.asarray(graph.pop("total"), np.float64)
    hist = graph.pop("hist")
    hist = (np.asarray(hist, np.uint32) if quantiled
            else np.zeros((0, np.shape(hist)[1]), np.uint32))
    _permute(order, count, total, hist)  # in place: no second histogram
    del order
    k = _sum_runs(key, count, total, hist)
    dtype = index_dtype(n, k)
    eu = (key[:k] // m).astype(dtype)
    ev = (key[:k] % m).astype(dtype)
    del key
    if k < count.size:  # shrink, one array at a time; the histograms stay in place
        count, total = count[:k].copy(), total[:k].copy()
        hist = hist[:k] if quantiled else hist
    return eu, ev, count, total, hist


@njit(cache=True)
def _permute(order, count, total, hist):
    """Puts item ``order[i]`` of ``count``, ``total`` and the rows of ``hist`` (if it has
    one per item) at ``i``, in place, cycle by cycle; uses up ``order`` (-1 when done)."""
    rows = hist.shape[0] == order.size and hist.shape[0] > 0
    held = np.empty(hist.shape[1], hist.dtype)
    for start in range(order.size):
        if order[start] < 0:
            continue
        c, t = count[start], total[start]
        if rows:
            held[:] = hist[start, :]
        j = start
        while True:
            k = order[j]
            order[j] = -1
            if k == start:
                count[j], total[j] = c, t
                if rows:
                    hist[j, :] = held
                break
            count[j], total[j] = count[k], total[k]
            if rows:
                hist[j, :] = hist[k, :]
            j = k


@njit(cache=True)
def _sum_runs(key, count, total, hist):
    """Sums each run of equal ``key`` into its first place and packs the runs at the
    front, in place; returns their number. Each sum of ``total`` starts from 0.0 and
    adds in order, as ``np.bincount`` does."""
    k = -1
    rows = hist.shape[0]
    for i in range(key.size):
        if k < 0 or key[i] != key[k]:
            k += 1
            key[k] = key[i]
            count[k] = count[i]
            total[k] = 0.0 + total[i]
            if rows:
                for j in range(hist.shape[1]):
                    hist[k, j] = hist[i, j]
        else:
            count[k] += count[i]
            total[k] += total[i]
            if rows:
                for j in range(hist.shape[1]):
                    hist[k, j] += hist[i, j]
    return k + 1


# --------------------------------------------------------------------------- memory

#: Peak bytes of a chunk task per edge it reads (parallel edges counted apart), per
#: histogram bin of an edge, per region, and once (see "Memory" in the module docstring).
BYTES_PER_EDGE, BYTES_PER_BIN, BYTES_PER_REGION, BYTES_ONCE = 64, 4, 64, 16 << 20


def chunk_memory(regions: int, edges: int, bins: int = 0) -> int:
    """About the most memory a chunk task takes above what its worker held before.

    Args:
        regions: Regions of the chunk's graph (its children's frozen regions, or the
            block's fragments).
        edges: Its edges, parallel ones counted apart (children's and face edges).
        bins: Histogram bins per edge (quantile scoring), else 0.

    Returns:
        Bytes: ``BYTES_PER_EDGE * edges + BYTES_PER_BIN * bins * edges +
        BYTES_PER_REGION * regions + BYTES_ONCE``.
    """
    per_edge = BYTES_PER_EDGE + BYTES_PER_BIN * bins
    return int(per_edge * edges + BYTES_PER_REGION * regions + BYTES_ONCE)


def check_memory(chunk: Chunk, regions: int, edges: int, bins: int, *, memory_limit: float,
                 in_use: int, fraction: float = 0.95) -> None:
    """Refuses a chunk whose task would pass its worker's memory limit, where Dask would
    restart the worker and retry the task, again and again.

    Args:
        chunk: The :class:`Chunk`.
        regions, edges, bins: As for :func:`chunk_memory`.
        memory_limit: The worker's memory limit, bytes (``--memory-limit``).
        in_use: Bytes the worker holds now.
        fraction: Of the limit, where Dask restarts a worker (its
            ``distributed.worker.memory.terminate``).

    Raises:
        InputError: ``in_use`` + :func:`chunk_memory` is over ``fraction *
            memory_limit``; the message names the chunk, its size, and a memory limit
            that would do.
    """
    from emkit.errors import InputError

    need = chunk_memory(regions, edges, bins)
    if in_use + need <= fraction * memory_limit:
        return
    mib, gib = 1 << 20, 1 << 30
    enough = math.ceil((in_use + need) / fraction / gib * 4) / 4
    raise InputError(
        f"agglomerate-{chunk.level}: chunk {chunk.index} (voxels "
        f"{', '.join(f'{s.start}:{s.stop}' for s in chunk.write)}) holds {regions:,} "
        f"regions and {edges:,} edges, for which it needs about {need / mib:,.0f} MiB; its "
        f"worker holds {in_use / mib:,.0f} MiB and is restarted at {fraction:.0%} of its "
        f"memory limit of {memory_limit / mib:,.0f} MiB. Rerun with a larger --memory-limit "
        f"(memory_limit=), about {enough:g} GiB or more: the job resumes from the chunks "
        "already done")


# --------------------------------------------------------------------------- the tables


def threshold_tables(a, b, score, n_nodes: int, thresholds, sizes=None, dust_size: int = 0):
    """For each threshold, the table node -> segment id, whole objects dusted.

    Args:
        a, b, score: Every merge of every chunk, in node indices (1..n_nodes - 1).
        n_nodes: Nodes, background (0) included.
        thresholds: The thresholds; threshold ``t`` applies the merges below ``t``.
        sizes: Voxels of each node (int64, ``sizes[0]`` ignored); needed for dust.
        dust_size: Objects (segments at a threshold) of fewer voxels become 0.

    Returns:
        A list of int64 tables of length ``n_nodes``: ids consecutive from 1 (ordered by
        the segment's least node), 0 for node 0 and for dust.

    >>> [t.tolist() for t in threshold_tables(np.array([1]), np.array([2]),
    ...     np.array([0.3]), 4, [0.2, 0.5], np.array([0, 2, 1, 2]), dust_size=3)]
    [[0, 0, 0, 0], [0, 1, 1, 0]]
    """
    from emkit.postprocess.agglomeration import threshold_luts

    a, b, score = np.asarray(a), np.asarray(b), np.asarray(score, np.float64)
    if score.size > 1 and not (score[1:] >= score[:-1]).all():  # else a stable sort is a no-op
        order = np.argsort(score, kind="stable")
        a, b, score = a[order], b[order], score[order]
        del order
    tables = threshold_luts(a, b, score, int(n_nodes), np.asarray(thresholds, np.float64))
    if not dust_size:
        return tables
    sizes = np.asarray(sizes, np.int64)
    for i, table in enumerate(tables):
        voxels = np.bincount(table, weights=sizes, minlength=int(table.max(initial=0)) + 1)
        keep = voxels >= dust_size
        keep[0] = False
        renumber = np.zeros(keep.size, np.int64)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1)
        tables[i] = renumber[table]
    return tables


__all__ = ["Chunk", "agglomerate_chunk", "block_bounds", "block_graph", "check_memory",
           "children", "chunk_at", "chunk_memory", "chunks", "inner_faces", "joined_graph",
           "level_shape", "threshold_tables", "top_level", "touches"]
