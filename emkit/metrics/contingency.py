"""One sparse contingency table that every segmentation metric is built on.

The table counts, for each pair (ground-truth segment i, predicted segment j), the
number of voxels labelled i in the ground truth and j in the prediction. Rand scores,
variation of information, the ISBI 2012 scores and the CREMI score are all functions of
these counts (Meila 2007; Arganda-Carreras et al. 2015).

Counting sorts nothing per voxel: the flattened volumes are run-length encoded (runs of
voxels with the same pair of labels, which is what real segmentations consist of), the
labels of the runs are renumbered by hashing (fastremap), and the run lengths are summed
per pair with a bincount (or, for very many label pairs, one sort of the runs). A pair of
100 x 1024 x 1024 volumes is counted in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np
from scipy import sparse

from emkit.errors import InputError


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table between a ground truth and a prediction.

    Attributes:
        counts: ndarray of shape (C,), int64: voxels in each non-empty cell.
        gt_index: ndarray of shape (C,): row of each cell, an index into ``gt_ids``.
        seg_index: ndarray of shape (C,): column of each cell, an index into ``seg_ids``.
        gt_ids: ndarray of shape (R,): the ground-truth label of each row.
        seg_ids: ndarray of shape (K,): the predicted label of each column.

    Rows and columns are segments. When a table is built per section, the same label
    value in two sections is two different segments, so ``gt_ids`` and ``seg_ids``
    may repeat values.
    """

    counts: np.ndarray
    gt_index: np.ndarray
    seg_index: np.ndarray
    gt_ids: np.ndarray
    seg_ids: np.ndarray

    @property
    def total(self) -> int:
        """Number of voxels counted."""
        return int(self.counts.sum())

    def gt_sizes(self) -> np.ndarray:
        """Voxels in each ground-truth segment (row sums)."""
        return _group_sum(self.gt_index, self.counts, len(self.gt_ids))

    def seg_sizes(self, *, skip_zero: bool = False) -> np.ndarray:
        """Voxels in each predicted segment (column sums).

        Args:
            skip_zero: give predicted label 0 size 0, for metrics that count each
                predicted-0 voxel as a singleton segment of its own.
        """
        cells = ~self.seg_is_zero() if skip_zero else slice(None)
        return _group_sum(self.seg_index[cells], self.counts[cells], len(self.seg_ids))

    def seg_is_zero(self) -> np.ndarray:
        """Boolean ndarray of shape (C,): cells whose predicted label is 0."""
        return self.seg_ids[self.seg_index] == 0

    def to_sparse(self) -> sparse.csr_array:
        """The table as a ``scipy.sparse.csr_array`` of shape (R, K)."""
        return sparse.csr_array(
            (self.counts, (self.gt_index, self.seg_index)),
            shape=(len(self.gt_ids), len(self.seg_ids)),
        )


def _group_sum(index: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:
    # float64 sums are exact for counts below 2**53 voxels.
    return np.bincount(index, weights=counts, minlength=size).astype(np.int64)


def check_labels(labels: np.ndarray, *, name: str) -> np.ndarray:
    """Check that ``labels`` is an integer label volume and return it as an ndarray.

    Args:
        labels: array-like of non-negative integers (bool is accepted).
        name: what to call the input in an error message, e.g. ``"ground truth"``.

    Returns:
        The labels as an ndarray (no copy when already an integer ndarray).

    Raises:
        InputError: float or negative labels.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise InputError(
            f"{name} must hold integer labels, got dtype {labels.dtype}; "
            "a float volume is a probability map, not a segmentation"
        )
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{name} has negative labels (min {labels.min()}); labels must be >= 0")
    return labels


def contingency_table(
    seg: np.ndarray,
    gt: np.ndarray,
    *,
    ignore_gt: tuple[int, ...] = (0,),
    mask: np.ndarray | None = None,
    per_section: bool = False,
) -> Contingency:
    """Count the overlap of every predicted segment with every ground-truth segment.

    Args:
        seg: ndarray of shape (Z, Y, X) (any shape), predicted label volume.
        gt: ndarray of the same shape, ground-truth label volume.
        ignore_gt: ground-truth labels whose voxels are not counted. Default ``(0,)``:
            label 0 means unlabelled in ground truth.
        mask: optional boolean ndarray of the same shape; voxels where it is False are
            not counted.
        per_section: if True, count each section ``z`` (axis 0) separately, so that a
            label in two sections is two segments and only pairs of voxels in the same
            section are compared (2D evaluation of a stack, as ISBI 2012 does).

    Returns:
        A :class:`Contingency`. Predicted label 0 is kept as an ordinary column; the
        metrics decide what it means.

    >>> t = contingency_table(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 2]))
    >>> t.counts.tolist(), t.gt_ids[t.gt_index].tolist(), t.seg_ids[t.seg_index].tolist()
    ([2, 1, 1], [1, 1, 2], [1, 2, 2])
    """
    seg = check_labels(seg, name="prediction")
    gt = check_labels(gt, name="ground truth")
    if seg.shape != gt.shape:
        raise InputError(
            f"prediction shape {seg.shape} does not match ground truth shape {gt.shape}"
        )
    if mask is not None and np.shape(mask) != gt.shape:
        raise InputError(f"mask shape {np.shape(mask)} does not match ground truth {gt.shape}")
    if per_section:
        if gt.ndim < 2:
            raise InputError(f"per-section counting needs (Z, Y, X) volumes, got shape {gt.shape}")
        tables = [
            contingency_table(
                seg[z], gt[z], ignore_gt=ignore_gt, mask=None if mask is None else mask[z]
            )
            for z in range(gt.shape[0])
        ]
        return concatenate(tables)

    keep = None
    for value in ignore_gt:
        drop = gt == value
        keep = ~drop if keep is None else keep & ~drop
    if mask is not None:
        keep = np.asarray(mask, bool) if keep is None else keep & np.asarray(mask, bool)
    s = seg.ravel()
    g = gt.ravel()
    if keep is not None and not keep.all():
        keep = keep.ravel()
        s = s[keep]
        g = g[keep]
    return _count_pairs(s, g)


def _count_pairs(s: np.ndarray, g: np.ndarray) -> Contingency:
    n = s.size
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Contingency(empty, empty, empty, g[:0].copy(), s[:0].copy())
    # Run-length encode the pairs: a new run starts where either label changes.
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(s[1:], s[:-1], out=change[1:])
    change[1:] |= g[1:] != g[:-1]
    starts = np.flatnonzero(change)
    del change
    lengths = np.diff(np.append(starts, n)).astype(np.int64)
    gt_ids, run_g = _compact(g[starts])
    seg_ids, run_s = _compact(s[starts])
    # One int64 key per (gt, seg) pair; sum the run lengths of equal keys.
    n_seg = len(seg_ids)
    key = run_g * n_seg + run_s
    n_keys = len(gt_ids) * n_seg
    if n_keys <= max(4 * key.size, 1 << 24):
        dense = np.bincount(key, weights=lengths, minlength=n_keys)
        cells = np.flatnonzero(dense)
        counts = dense[cells]
    else:
        cells, inverse = np.unique(key, return_inverse=True)
        counts = np.bincount(inverse, weights=lengths)
    # float64 sums are exact below 2**53 voxels
    return Contingency(
        counts.astype(np.int64), cells // n_seg, cells % n_seg, gt_ids, seg_ids
    )


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to 0..K-1; return (ids, compact int64 labels)."""
    if labels.size > 1 << 16 and len(fastremap.unique(labels)) < labels.size // 8:
        # Few distinct labels: a hash map is linear time.
        compact, mapping = fastremap.renumber(labels, start=0, preserve_zero=False)
        ids = np.empty(len(mapping), dtype=labels.dtype)
        ids[np.fromiter(mapping.values(), np.int64, len(mapping))] = np.fromiter(
            mapping.keys(), labels.dtype, len(mapping)
        )
        return ids, compact.astype(np.int64, copy=False)
    ids, compact = np.unique(labels, return_inverse=True)
    return ids, compact.astype(np.int64, copy=False)


def concatenate(tables: list[Contingency]) -> Contingency:
    """Stack tables of disjoint regions (e.g. sections) into one; segments stay distinct."""
    if not tables:
        raise InputError("no tables to concatenate")
    gt_offset = np.cumsum([0] + [len(t.gt_ids) for t in tables[:-1]])
    seg_offset = np.cumsum([0] + [len(t.seg_ids) for t in tables[:-1]])
    return Contingency(
        counts=np.concatenate([t.counts for t in tables]),
        gt_index=np.concatenate([t.gt_index + o for t, o in zip(tables, gt_offset)]),
        seg_index=np.concatenate([t.seg_index + o for t, o in zip(tables, seg_offset)]),
        gt_ids=np.concatenate([t.gt_ids for t in tables]),
        seg_ids=np.concatenate([t.seg_ids for t in tables]),
    )
