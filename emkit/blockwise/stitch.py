r"""Stitching blockwise fragments into one segmentation: block faces and one global graph.

The scheme is the one of lsd/daisy (Funke et al. 2019) and ABISS (Lu, Zlateski and
Seung 2021): fragments are made block by block, and agglomeration runs on one region
graph of the whole volume, whose edges across block faces come from a second pass.

1. **Fragments, per block** (:func:`block_fragments`). The affinity watershed with
   size-dependent merging (:func:`~emkit.postprocess.affinity_watershed`) runs on the
   block's write region grown by a halo, and is cut back to the write region, so
   fragments near a face see the affinities beyond it. A block's fragments get ids
   ``block.id * stride + k`` (``k`` = 1, 2, ...; ``stride`` = voxels of a full
   block), unique across the volume without any coordination. The block also counts
   the region graph of its own fragments (number and sum of affinities of the voxel
   edges between each pair).
2. **Faces, per block** (:func:`face_edges`). The voxel edges that cross the face
   between a block and its lower neighbour on each axis join the block's first plane
   to the neighbour's last one; the affinity of the channel of that axis on the
   block's first plane carries each. Their pairs are counted the same way.
3. **Agglomeration, once** (:func:`agglomerate_graph`). Inner and face edges are
   disjoint and together are every voxel edge of the volume, so their union is
   exactly the region graph of the stitched fragment volume. Greedy mean-affinity
   agglomeration (:mod:`~emkit.postprocess.agglomeration`, waterz's ``MeanAffinity``)
   runs on it to the threshold, and union-find gives a lookup table from fragment to
   segment id, consecutive from 1.
4. **Relabel, per block** (:func:`relabel_block`): each block's fragments are mapped
   through the table.

Why this scheme and not overlap-and-match. Agglomeration decides on the mean affinity
of a whole boundary, and a boundary may run through many blocks; on one global graph
those means are the same as in a whole-volume run, and the merges are the same too.
Only the fragments differ, near faces: a fragment that crosses a face is split there
into two, which the face edges (high affinities inside an object) join again first
thing. Overlap-and-match instead matches segments in the overlaps of independently
agglomerated blocks, where each block's decisions saw only part of each boundary;
its errors are merges and splits that no later pass undoes. The cost of the global
graph is memory for its edges (about 40 bytes each, a few per fragment): fine for
volumes of 10^10 voxels with the default size merging; beyond that ABISS's
hierarchical agglomeration is the next step.

References:
    J. Funke et al. (2019). Large scale image segmentation with structured loss based
    deep learning for connectome reconstruction. IEEE TPAMI 41(7) (lsd, daisy, waterz).
    R. Lu, A. Zlateski and H. S. Seung (2021). Large-scale image segmentation based on
    distributed clustering algorithms. arXiv:2106.10795 (ABISS).
    A. Zlateski and H. S. Seung (2015). Image segmentation by size-dependent single
    linkage clustering of a watershed basin graph. arXiv:1505.00249.
"""

from __future__ import annotations

import numpy as np

from emkit.postprocess.agglomeration import history_indices, threshold_luts
from emkit.postprocess.rag import RegionGraph, region_graph_unchecked
from emkit.postprocess.watershed import affinity_watershed

NN_CHANNELS = (0, 1, 2)


def block_fragments(affs, write_in_read, **watershed):
    """Fragments of one block and the region graph of its write region.

    Args:
        affs: ndarray of shape (Z, Y, X, 3), float32 in [0, 1], channels last: the
            nearest-neighbour affinities of the block's read region (write + halo,
            cut to the volume).
        write_in_read: Slices of ``affs`` that are the block's write region.
        **watershed: Options of :func:`~emkit.postprocess.affinity_watershed`.

    Returns:
        ``(fragments, graph)``: int64 ndarray of the write region's shape, ids
        consecutive from 1 (0 where the watershed leaves background), and a dict with
        ``n`` (fragments) and ``u, v, count, total`` (the region graph, ids ``1..n``).
    """
    import fastremap

    grown = affinity_watershed(affs, **watershed)
    inner = np.ascontiguousarray(grown[write_in_read])
    fragments, mapping = fastremap.renumber(inner, preserve_zero=True, in_place=True)
    fragments = fragments.astype(np.int64, copy=False)
    n = int(max(mapping.values(), default=0))
    inner_affs = np.ascontiguousarray(affs[write_in_read])
    rag = region_graph_unchecked(fragments, n, inner_affs, NN_CHANNELS)
    return fragments, {"n": n, "u": rag.u, "v": rag.v, "count": rag.count, "total": rag.total}


def face_edges(first, last, affs_first):
    """The edges across one face: pairs of ids and their affinity counts and sums.

    Args:
        first: ndarray of shape (A, B), the block's first plane along the face's axis
            (global fragment ids, 0 = none).
        last: ndarray of shape (A, B), the lower neighbour's last plane.
        affs_first: ndarray of shape (A, B), float: the affinity of that axis's
            channel on the block's first plane (the edge to the voxel before it).

    Returns:
        A dict ``u, v`` (uint64, ``u < v``), ``count`` (int64), ``total`` (float64).

    >>> e = face_edges(np.array([[5, 5]]), np.array([[7, 9]]), np.array([[0.5, 1.0]]))
    >>> e["u"].tolist(), e["v"].tolist(), e["count"].tolist(), e["total"].tolist()
    ([5, 5], [7, 9], [1, 1], [0.5, 1.0])
    """
    a, b = first.ravel().astype(np.uint64), last.ravel().astype(np.uint64)
    w = np.asarray(affs_first, np.float64).ravel()
    keep = (a != 0) & (b != 0) & (a != b)
    a, b, w = a[keep], b[keep], w[keep]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    if not len(pairs):
        empty = np.zeros(0, np.uint64)
        return {"u": empty, "v": empty, "count": np.zeros(0, np.int64),
                "total": np.zeros(0, np.float64)}
    unique, inverse, count = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    total = np.bincount(inverse.ravel(), weights=w, minlength=len(unique))
    return {"u": unique[:, 0], "v": unique[:, 1], "count": count.astype(np.int64),
            "total": total}


def agglomerate_graph(counts, inner, faces, *, stride: int, threshold: float):
    """Agglomerates the stitched region graph; returns the fragment -> segment table.

    Args:
        counts: ndarray of shape (B,), fragments of each block (block id order).
        inner: For each block id, its graph from :func:`block_fragments` (ids 1..n),
            or None for a block without one.
        faces: Dicts from :func:`face_edges` (global ids ``block * stride + k``).
        stride: The id stride of a block.
        threshold: Agglomeration score threshold, as
            :func:`~emkit.postprocess.segment_affinities` takes it.

    Returns:
        ``(offsets, lut)``: ``offsets[b]`` is the number of fragments before block
        ``b``; fragment ``k`` of block ``b`` is node ``offsets[b] + k`` and its segment
        is ``lut[offsets[b] + k]`` (``lut[0] == 0``).
    """
    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_nodes = int(counts.sum()) + 1
    us, vs, cs, ts = [], [], [], []
    for b, graph in enumerate(inner):
        if graph is None or not len(graph["u"]):
            continue
        us.append(np.asarray(graph["u"], np.int64) + offsets[b])
        vs.append(np.asarray(graph["v"], np.int64) + offsets[b])
        cs.append(np.asarray(graph["count"], np.int64))
        ts.append(np.asarray(graph["total"], np.float64))
    for face in faces:
        if not len(face["u"]):
            continue
        us.append(global_to_node(face["u"], offsets, stride))
        vs.append(global_to_node(face["v"], offsets, stride))
        cs.append(np.asarray(face["count"], np.int64))
        ts.append(np.asarray(face["total"], np.float64))
    if us:
        u, v = np.concatenate(us), np.concatenate(vs)
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        keys, inverse = np.unique(lo * n_nodes + hi, return_inverse=True)
        count = np.bincount(inverse, weights=np.concatenate(cs), minlength=len(keys))
        total = np.bincount(inverse, weights=np.concatenate(ts), minlength=len(keys))
        u, v = keys // n_nodes, keys % n_nodes
    else:
        u = v = np.zeros(0, np.int64)
        count = total = np.zeros(0, np.float64)
    rag = RegionGraph(u, v, count.astype(np.int64), total, np.zeros(len(u), np.float32))
    a, b, score = history_indices(rag, n_nodes, scoring="mean", quantile=0.5,
                                  stop=float(threshold))
    [lut] = threshold_luts(a, b, score, n_nodes, np.asarray([float(threshold)]))
    return offsets, lut


def global_to_node(ids, offsets, stride: int) -> np.ndarray:
    """Global fragment ids ``block * stride + k`` to graph nodes ``offsets[block] + k``."""
    ids = np.asarray(ids, np.uint64)
    block = (ids // np.uint64(stride)).astype(np.int64)
    local = (ids % np.uint64(stride)).astype(np.int64)
    return offsets[block] + local


def relabel_block(fragments, block_id: int, *, stride: int, lut) -> np.ndarray:
    """A block's global fragment ids mapped to segment ids (0 stays 0), uint64.

    Args:
        fragments: ndarray of the block's global fragment ids (``block_id * stride + k``).
        block_id: The block's id.
        stride: The id stride of a block.
        lut: The segments of the block's fragments ``k = 1..n`` (a slice of the table
            of :func:`agglomerate_graph`: ``lut[offsets[b] + 1 : offsets[b] + n + 1]``).
    """
    fragments = np.asarray(fragments, np.uint64)
    local = np.where(fragments == 0, 0, fragments - np.uint64(block_id * stride))
    table = np.concatenate([[0], np.asarray(lut, np.int64)]).astype(np.uint64)
    return np.take(table, local.astype(np.int64))


__all__ = ["agglomerate_graph", "block_fragments", "face_edges", "global_to_node",
           "relabel_block"]
