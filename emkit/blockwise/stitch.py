r"""Stitching blockwise fragments into one segmentation: block faces and one global graph.

The scheme is the one of lsd/daisy (Funke et al. 2019) and ABISS (Lu, Zlateski and
Seung 2021): fragments are made block by block, and agglomeration runs on the region
graph of the whole volume, whose edges across block faces come from a second pass.

1. **Fragments, per block** (:func:`block_fragments`). The affinity watershed with
   size-dependent merging (:func:`~emkit.postprocess.affinity_watershed`) runs on the
   block's write region grown by a halo, and is cut back to the write region, so
   fragments near a face see the affinities beyond it. A block's fragments get ids
   ``block.id * stride + k`` (``k`` = 1, 2, ...; ``stride`` = voxels of a full
   block), unique across the volume without any coordination. The block also counts
   the region graph of its own fragments (number, sum and, for quantile scoring, a
   histogram of the affinities of the voxel edges between each pair), their voxels,
   the block faces they touch, and where its watershed joined a face voxel to the
   halo voxel across the face.
2. **Faces, per block** (:func:`face_edges`). The voxel edges that cross the face
   between a block and its lower neighbour on each axis join the block's first plane
   to the neighbour's last one; the affinity of the channel of that axis on the
   block's first plane carries each. Their pairs are counted the same way. The pairs
   of pieces that either block's watershed put in one fragment across the face are
   listed too: they are one fragment and are united before any merge.
3. **Agglomeration** (:mod:`~emkit.blockwise.hierarchy`). Inner and face edges are
   disjoint and together are every voxel edge of the volume, so their union is
   exactly the region graph of the stitched fragment volume. The greedy agglomeration
   of :mod:`~emkit.postprocess.agglomeration` (waterz's ``MeanAffinity``, or a
   quantile) is run on it hierarchically, chunk by chunk, with the merges of one run
   on the whole graph; a lookup table per threshold maps fragments to segment ids,
   consecutive from 1, with whole objects under ``dust_size`` voxels set to 0.
4. **Relabel, per block and threshold** (:func:`relabel_block`): each block's
   fragments are mapped through a table.

Why this scheme and not overlap-and-match. Agglomeration decides on the affinities
of a whole boundary, and a boundary may run through many blocks; on the global graph
those are the same as in a whole-volume run, and the merges are the same too. Only
the fragments differ, near faces, where each block's watershed saw only its read
region: a fragment that crosses a face is split there into two, which the joined
pairs unite again, and basins near a face may be split or merged otherwise than a
whole-volume watershed would. Overlap-and-match instead matches segments in the
overlaps of independently agglomerated blocks, where each block's decisions saw only
part of each boundary; its errors are merges and splits that no later pass undoes.

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

from emkit.postprocess.rag import region_graph_unchecked
from emkit.postprocess.watershed import affinity_watershed

NN_CHANNELS = (0, 1, 2)
#: The bit of a fragment's face mask for the lower (``2 * axis``) and upper
#: (``2 * axis + 1``) face of its block along each axis.
FACE_BITS = tuple((1 << (2 * axis), 1 << (2 * axis + 1)) for axis in range(3))


def block_fragments(affs, write_in_read, *, bins: int = 0, **watershed):
    """Fragments of one block and the region graph of its write region.

    Args:
        affs: ndarray of shape (Z, Y, X, 3), float32 in [0, 1], channels last: the
            nearest-neighbour affinities of the block's read region (write + halo,
            cut to the volume).
        write_in_read: Slices of ``affs`` that are the block's write region.
        bins: Histogram bins per edge (for quantile scoring), 0 for none.
        **watershed: Options of :func:`~emkit.postprocess.affinity_watershed`.

    Returns:
        ``(fragments, graph)``: int64 ndarray of the write region's shape, ids
        consecutive from 1 (0 where the watershed leaves background), and a dict with
        ``n`` (fragments), ``u, v, count, total`` (the region graph, ids ``1..n``),
        ``hist`` (``(E, bins)`` uint32, or ``(0, 1)`` without bins), ``sizes`` (voxels
        of fragments ``1..n``), ``faces`` (uint8 per fragment ``1..n``: the bits of
        :data:`FACE_BITS` of the block faces it touches), and ``same_<side>_<axis>``
        for each face (``side`` lower or upper): a bool plane of the face's shape,
        True where the watershed of the read region put the voxel on the face and the
        voxel across it, in the halo, in one fragment (:func:`face_edges` says why).
    """
    import fastremap

    grown = affinity_watershed(affs, **watershed)
    same = {}
    for axis in range(3):
        ends = write_in_read[axis]
        for side, inside, outside in (("lower", ends.start, ends.start - 1),
                                      ("upper", ends.stop - 1, ends.stop)):
            near, far = list(write_in_read), list(write_in_read)
            near[axis], far[axis] = inside, max(min(outside, grown.shape[axis] - 1), 0)
            a, b = grown[tuple(near)], grown[tuple(far)]
            within = 0 <= outside < grown.shape[axis]
            same[f"same_{side}_{axis}"] = (a == b) & (a != 0) & within
    inner = np.ascontiguousarray(grown[write_in_read])
    fragments, mapping = fastremap.renumber(inner, preserve_zero=True, in_place=True)
    fragments = fragments.astype(np.int64, copy=False)
    n = int(max(mapping.values(), default=0))
    inner_affs = np.ascontiguousarray(affs[write_in_read])
    rag = region_graph_unchecked(fragments, n, inner_affs, NN_CHANNELS, bins=bins)
    hist = rag.histogram if bins else np.zeros((0, 1), np.uint32)
    faces = np.zeros(n + 1, np.uint8)
    for axis, (lower, upper) in enumerate(FACE_BITS):
        faces[np.unique(np.take(fragments, 0, axis=axis))] |= lower
        faces[np.unique(np.take(fragments, -1, axis=axis))] |= upper
    sizes = np.bincount(fragments.ravel(), minlength=n + 1)[1:]
    return fragments, {"n": n, "u": rag.u, "v": rag.v, "count": rag.count,
                       "total": rag.total, "hist": hist, "sizes": sizes, "faces": faces[1:],
                       **same}


def face_edges(first, last, affs_first, *, bins: int = 0, joined=None):
    """The edges across one face: pairs of ids and their affinity counts and sums.

    A block's fragments are cut at its faces, so a fragment of the whole volume that
    crosses a face comes out as two pieces. Each block's watershed ran on its read
    region, which reaches across the face into the halo; where it put the two voxels of
    a face edge into one fragment (``joined``, from either block's ``same_*`` planes of
    :func:`block_fragments`), their pieces are one fragment, as in a whole-volume
    watershed, and are returned as a joined pair, which the agglomeration unites
    before any merge. Without this, a small basin that size-dependent merging joined
    to a fragment across the face would stay a segment of its own.

    Args:
        first: ndarray of shape (A, B), the block's first plane along the face's axis
            (global fragment ids, 0 = none).
        last: ndarray of shape (A, B), the lower neighbour's last plane.
        affs_first: ndarray of shape (A, B), float: the affinity of that axis's
            channel on the block's first plane (the edge to the voxel before it).
        bins: Histogram bins per edge, binned as
            :func:`~emkit.postprocess.region_graph` bins, or 0 for none.
        joined: Bool ndarray of shape (A, B), or None: where a watershed joined the two
            voxels.

    Returns:
        A dict ``u, v`` (uint64, ``u < v``), ``count`` (int64), ``total`` (float64),
        ``hist`` (uint32, ``(E, bins)``, or ``(0, 1)`` without bins) and ``joined_u,
        joined_v`` (uint64, the joined pairs, ``u < v``).

    >>> e = face_edges(np.array([[5, 5]]), np.array([[7, 9]]), np.array([[0.5, 1.0]]))
    >>> e["u"].tolist(), e["v"].tolist(), e["count"].tolist(), e["total"].tolist()
    ([5, 5], [7, 9], [1, 1], [0.5, 1.0])
    """
    a, b = first.ravel().astype(np.uint64), last.ravel().astype(np.uint64)
    w = np.asarray(affs_first, np.float64).ravel()
    together = np.zeros(a.size, bool) if joined is None else np.asarray(joined, bool).ravel()
    keep = (a != 0) & (b != 0) & (a != b)
    a, b, w, together = a[keep], b[keep], w[keep], together[keep]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    unique, inverse, count = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    total = np.bincount(inverse, weights=w, minlength=len(unique)).astype(np.float64)
    hist = np.zeros((len(unique) if bins else 0, max(bins, 1)), np.uint32)
    if bins:
        np.add.at(hist, (inverse, np.minimum((w * bins).astype(np.int64), bins - 1)), 1)
    united = unique[np.bincount(inverse, weights=together, minlength=len(unique)) > 0]
    return {"u": unique[:, 0], "v": unique[:, 1], "count": count.astype(np.int64),
            "total": total, "hist": hist, "joined_u": united[:, 0], "joined_v": united[:, 1]}


def global_to_node(ids, offsets, stride: int) -> np.ndarray:
    """Global fragment ids ``block * stride + k`` to graph nodes ``offsets[block] + k``.

    Args:
        ids: Global fragment ids (nonzero).
        offsets: The fragments before each block (block id order).
        stride: The id stride of a block.

    Returns:
        int64 ndarray of the node indices, 1 .. the number of fragments.
    """
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
        lut: The segments of the block's fragments ``k = 1..n`` (a slice of a table of
            :func:`~emkit.blockwise.hierarchy.threshold_tables`:
            ``lut[offsets[b] + 1 : offsets[b] + n + 1]``).

    Returns:
        ndarray of the shape of ``fragments``, uint64.
    """
    fragments = np.asarray(fragments, np.uint64)
    local = np.where(fragments == 0, 0, fragments - np.uint64(block_id * stride))
    table = np.concatenate([[0], np.asarray(lut, np.int64)]).astype(np.uint64)
    return np.take(table, local.astype(np.int64))


__all__ = ["FACE_BITS", "block_fragments", "face_edges", "global_to_node", "relabel_block"]
