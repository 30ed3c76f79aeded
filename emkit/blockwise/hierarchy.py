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

Memory: one chunk task holds its children's frozen regions and the edges between
them, plus the face edges on its inner planes, which grow with the chunk's surface;
the merges of all chunks (one per merge, 24 bytes, at most one per fragment) are
joined into the lookup tables at the end, which hold 8 bytes per fragment and
threshold (:func:`threshold_tables`).

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

from emkit.blockwise.stitch import FACE_BITS
from emkit.postprocess.agglomeration import edge_scores, merge_edges
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


def empty_graph(bins: int) -> dict:
    """A graph without nodes or edges, in the layout of :func:`agglomerate_chunk`."""
    return {"nodes": np.zeros(0, np.int64), "fmin": np.zeros((0, 3), np.int32),
            "fmax": np.zeros((0, 3), np.int32), "u": np.zeros(0, np.int64),
            "v": np.zeros(0, np.int64), "count": np.zeros(0, np.int64),
            "total": np.zeros(0, np.float64), "hist": np.zeros((0, max(bins, 1)), np.uint32)}


def block_graph(graph, block, grid_shape, stride: int) -> dict:
    """The leaf graph of one block: its fragments and inner edges, in global ids.

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
    nodes = base + np.arange(1, n + 1, dtype=np.int64)
    fmin, fmax = block_bounds(graph["faces"], block.index, grid_shape)
    return {"nodes": nodes, "fmin": fmin, "fmax": fmax,
            "u": base + np.asarray(graph["u"], np.int64),
            "v": base + np.asarray(graph["v"], np.int64),
            "count": np.asarray(graph["count"], np.int64),
            "total": np.asarray(graph["total"], np.float64),
            "hist": np.asarray(graph["hist"], np.uint32),
            "frag": nodes, "frag_fmin": fmin, "frag_fmax": fmax, "frag_rep": nodes}


def joined_graph(parts, faces, bins: int) -> dict:
    """The graph of a chunk from its children's reduced graphs and its inner faces.

    Args:
        parts: The children's results of :func:`agglomerate_chunk` (dicts or ``.npz``).
        faces: Face edges between the children (dicts of
            :func:`~emkit.blockwise.stitch.face_edges`, global fragment ids).
        bins: Histogram bins per edge (0 for none).

    Returns:
        The graph layout of :func:`agglomerate_chunk` (parallel edges are left for it
        to sum), with the fragment pieces that a watershed joined across a face
        (``joined_u, joined_v`` of the faces) united: ``joined_a, joined_b`` record it.
    """
    parts = [{k: np.asarray(p[k]) for k in p} for p in parts]  # a chunk has 1+ children
    graph = {k: np.concatenate([p[k] for p in parts]) for k in
             ("nodes", "fmin", "fmax", "u", "v", "count", "total", "hist", "frag",
              "frag_fmin", "frag_fmax", "frag_rep")}
    edges = [f for f in faces if len(f["u"])]
    if edges:
        for key in ("u", "v"):
            ids = np.concatenate([np.asarray(f[key], np.int64) for f in edges])
            graph[key] = np.concatenate([graph[key], _regions(graph, ids)])
        for key, dtype in (("count", np.int64), ("total", np.float64), ("hist", np.uint32)):
            graph[key] = np.concatenate(
                [graph[key], *(np.asarray(f[key], dtype) for f in edges)])
    order = np.argsort(graph["nodes"], kind="stable")
    for key in ("nodes", "fmin", "fmax"):
        graph[key] = graph[key][order]
    pairs = [(np.asarray(f["joined_u"], np.int64), np.asarray(f["joined_v"], np.int64))
             for f in faces if len(f.get("joined_u", ()))]
    if pairs:
        ends = [_regions(graph, np.concatenate(side)) for side in zip(*pairs)]
        graph = _unite(graph, *ends)
    return graph


def _regions(graph, fragments) -> np.ndarray:
    """The regions (of ``graph``'s boundary fragments) that ``fragments`` belong to."""
    frag = graph["frag"]
    order = np.argsort(frag, kind="stable")
    at = np.minimum(np.searchsorted(frag[order], fragments), max(len(frag) - 1, 0))
    found = order[at] if len(frag) else at
    if len(fragments) and (not len(frag) or (frag[found] != fragments).any()):
        missing = fragments[frag[found] != fragments][:5] if len(frag) else fragments[:5]
        raise RuntimeError(f"face edges name fragments {missing.tolist()} that no child "
                           "chunk lists on its boundary")
    return graph["frag_rep"][found]


def _unite(graph, u, v) -> dict:
    """``graph`` with the regions of the pairs ``u, v`` united into one region each.

    The edges between united regions are dropped (they are inside a fragment now) and
    the united ones recorded as ``joined_a, joined_b`` (the region kept, the one united
    into it), merges that every threshold applies.
    """
    from emkit.postprocess.agglomeration import apply_merges

    nodes = graph["nodes"]
    parent = np.arange(nodes.size)
    lu, lv = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
    apply_merges(parent, lu, lv, 0, lu.size)
    root = roots(parent)
    merged = np.flatnonzero(root != np.arange(nodes.size))
    fmin, fmax = graph["fmin"].copy(), graph["fmax"].copy()
    np.minimum.at(fmin, root, graph["fmin"])
    np.maximum.at(fmax, root, graph["fmax"])
    kept = root == np.arange(nodes.size)
    eu = nodes[root[np.searchsorted(nodes, graph["u"])]]
    ev = nodes[root[np.searchsorted(nodes, graph["v"])]]
    inner = eu == ev
    hist = graph["hist"]
    return {**graph, "nodes": nodes[kept], "fmin": fmin[kept], "fmax": fmax[kept],
            "u": eu[~inner], "v": ev[~inner], "count": graph["count"][~inner],
            "total": graph["total"][~inner],
            "hist": hist[~inner] if len(hist) == len(inner) else hist,
            "frag_rep": nodes[root[np.searchsorted(nodes, graph["frag_rep"])]],
            "joined_a": nodes[root[merged]], "joined_b": nodes[merged]}


def agglomerate_chunk(graph: dict, chunk: Chunk, *, scoring: str, quantile: float,
                      stop: float) -> dict:
    """Agglomerates one chunk's graph, freezing the regions on its boundary.

    Args:
        graph: ``nodes`` (int64, sorted global fragment ids naming the regions),
            ``fmin, fmax`` (their face bounds), the edges ``u, v`` (region ids, any
            order, parallel edges allowed), ``count``, ``total``, ``hist`` (``(E,
            bins)``; ``(E, 1)`` or ``(0, 1)`` unless ``scoring="quantile"``), and the
            boundary fragments ``frag`` with their ``frag_fmin, frag_fmax`` and region
            ``frag_rep``.
        chunk: The :class:`Chunk`; regions that touch its boundary are frozen.
        scoring, quantile: As for :func:`~emkit.postprocess.merge_history`.
        stop: Merge only below this score (the largest threshold).

    Returns:
        The merges ``a, b, score`` (global ids; first the unions ``joined_a, joined_b``
        of ``graph``, if any, at score :data:`JOINED`) and the reduced graph in the
        layout of ``graph``: the frozen regions, the edges between them, and the
        fragments on the chunk's boundary with their regions; plus ``edges_in`` (edges
        agglomerated).
    """
    nodes = np.asarray(graph["nodes"], np.int64)
    n = nodes.size
    m = max(n, 1)
    eu = np.searchsorted(nodes, np.asarray(graph["u"], np.int64))
    ev = np.searchsorted(nodes, np.asarray(graph["v"], np.int64))
    if (eu == ev).any():
        raise RuntimeError(f"chunk {chunk.index} of level {chunk.level}: an edge joins a "
                           "region to itself")
    key = np.minimum(eu, ev) * m  # temporaries are freed as soon as they are used
    key += np.maximum(eu, ev)
    del eu, ev
    keys, inverse = np.unique(key, return_inverse=True)  # parallel edges become one
    del key
    eu, ev = keys // m, keys % m
    count = np.bincount(inverse, weights=graph["count"], minlength=keys.size)
    total = np.bincount(inverse, weights=graph["total"], minlength=keys.size)
    quantiled = scoring == "quantile"
    hist = np.zeros((keys.size if quantiled else 0, np.shape(graph["hist"])[1]), np.uint32)
    if quantiled and keys.size == inverse.size:  # no parallel edges: a permutation
        hist[inverse] = graph["hist"]
    elif quantiled:
        np.add.at(hist, inverse, np.asarray(graph["hist"], np.uint32))
    frozen = touches(graph["fmin"], graph["fmax"], chunk)
    initial = edge_scores(total, count, hist, float(quantile))
    order = np.argsort(initial, kind="stable")
    a, b, score, alive = merge_edges(n, eu, ev, total, count, hist, float(quantile),
                                      float(stop), initial, order, frozen)
    parent = np.arange(n)
    parent[b] = a  # a absorbed b while a was a root: the merges make a forest
    root = roots(parent)
    fmin, fmax = np.asarray(graph["fmin"]).copy(), np.asarray(graph["fmax"]).copy()
    np.minimum.at(fmin, root, graph["fmin"])
    np.maximum.at(fmax, root, graph["fmax"])
    kept = alive & frozen[eu] & frozen[ev]
    frag = np.asarray(graph["frag"], np.int64)
    on_boundary = touches(graph["frag_fmin"], graph["frag_fmax"], chunk)
    rep = np.searchsorted(nodes, np.asarray(graph["frag_rep"], np.int64)[on_boundary])
    joined_a = np.asarray(graph.get("joined_a", ()), np.int64)
    joined_b = np.asarray(graph.get("joined_b", ()), np.int64)
    return {
        "a": np.concatenate([joined_a, nodes[a]]), "b": np.concatenate([joined_b, nodes[b]]),
        "score": np.concatenate([np.full(joined_a.size, JOINED), score]),
        "nodes": nodes[frozen], "fmin": fmin[frozen], "fmax": fmax[frozen],
        "u": nodes[eu[kept]], "v": nodes[ev[kept]],
        "count": np.rint(count[kept]).astype(np.int64), "total": total[kept],
        "hist": hist[kept] if quantiled else np.zeros((0, 1), np.uint32),
        "frag": frag[on_boundary], "frag_fmin": np.asarray(graph["frag_fmin"])[on_boundary],
        "frag_fmax": np.asarray(graph["frag_fmax"])[on_boundary],
        "frag_rep": nodes[root[rep]], "edges_in": keys.size,
    }


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

    order = np.argsort(score, kind="stable")
    tables = threshold_luts(np.asarray(a, np.int64)[order], np.asarray(b, np.int64)[order],
                            np.asarray(score, np.float64)[order], int(n_nodes),
                            np.asarray(thresholds, np.float64))
    if not dust_size:
        return tables
    sizes = np.asarray(sizes, np.int64)
    dusted = []
    for table in tables:
        voxels = np.bincount(table, weights=sizes, minlength=int(table.max(initial=0)) + 1)
        keep = voxels >= dust_size
        keep[0] = False
        renumber = np.zeros(keep.size, np.int64)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1)
        dusted.append(renumber[table])
    return dusted


__all__ = ["Chunk", "agglomerate_chunk", "block_bounds", "block_graph", "children", "chunk_at",
           "chunks", "inner_faces", "joined_graph", "level_shape", "threshold_tables",
           "top_level", "touches"]
