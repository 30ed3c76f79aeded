"""One sparse contingency table that every segmentation metric is built on.

The table counts, for each pair (ground-truth segment i, predicted segment j), the
number of voxels labelled i in the ground truth and j in the prediction. Rand scores,
variation of information, the ISBI 2012 scores and the CREMI score are all functions of
these counts (Meila 2007; Arganda-Carreras et al. 2015).

Counting is a numba-compiled pass over the voxels in storage order, with no sort and no
volume-sized temporary. A run of voxels with the same pair of labels (what real and
blobby segmentations consist of) costs one comparison per voxel, and each run adds its
length to a hash table keyed by the pair. Labels are numbered through lookup tables (or,
for label values of 2**23 and more, hash tables). Where runs are short and the table is
not much larger than the volume (white-noise labels), the pairs are counted in a dense
array instead, a block of voxels at a time: the block's new labels are numbered first, so
that the counting loop has no test but the run test. Counts are exact integers.

The volumes are read in slabs of sections along axis 0 (:func:`iter_slabs`), so a volume
stored in a file (an :class:`emkit.io.Volume`, an h5py dataset, a Zarr array) is counted
in memory bounded by one slab plus the tables, and the counts of the slabs add up to the
table of the whole volume exactly (:class:`ContingencyCounter`). A pair of
100 x 1024 x 1024 uint64 volumes is counted in 0.2 s (blobby or real labels) to 2 s
(white noise) on one core; see BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import sparse

from emkit.errors import InputError
from emkit.metrics import kernels

#: Default slab size, in voxels, for volumes read from files: whole sections along axis 0
#: up to this many voxels (128 MiB of uint64 labels per volume).
SLAB_VOXELS = 1 << 24


@dataclass(frozen=True)
class Contingency:
    """Sparse contingency table between a ground truth and a prediction.

    Attributes:
        counts: ndarray of shape (C,), int64: voxels in each non-empty cell.
        gt_index: ndarray of shape (C,): row of each cell, an index into ``gt_ids``.
        seg_index: ndarray of shape (C,): column of each cell, an index into ``seg_ids``.
        gt_ids: ndarray of shape (R,): the ground-truth label of each row.
        seg_ids: ndarray of shape (K,): the predicted label of each column.

    A table from :func:`contingency_table` has ``gt_ids`` and ``seg_ids`` sorted and its
    cells sorted by (row, column). When a table is built per section, the same label
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
    return _group_sum_kernel(index, counts.astype(np.int64, copy=False), size)


@njit(cache=True)
def _group_sum_kernel(index, counts, size):
    sums = np.zeros(size, dtype=np.int64)
    for k in range(len(index)):
        sums[index[k]] += counts[k]
    return sums


@dataclass(frozen=True)
class CellSums:
    """What the Rand and information scores need from a table, in one pass over it.

    Predicted label 0 is "no segment" here: its cells are singletons (see
    :mod:`emkit.metrics.rand`).

    Attributes:
        total: voxels counted.
        gt_sizes: int64 ndarray of shape (R,), row sums.
        seg_sizes: int64 ndarray of shape (K,), column sums; 0 for predicted label 0.
        singletons: voxels with predicted label 0.
        paired: sum of n (n - 1) over the cells of other predicted labels.
        joint_plogp: sum of p log2 p, p = n / total, over those cells (0.0 unless asked).
    """

    total: int
    gt_sizes: np.ndarray
    seg_sizes: np.ndarray
    singletons: int
    paired: int
    joint_plogp: float


def cell_sums(table: Contingency, *, logs: bool = False) -> CellSums:
    """Row and column sums and the pair and entropy sums of a table.

    Args:
        table: a :class:`Contingency`.
        logs: also compute ``joint_plogp`` (a logarithm per cell).

    Returns:
        :class:`CellSums`; integer sums are exact.
    """
    zero_cols = table.seg_ids == 0
    gt_sizes, seg_sizes, singletons, paired, plogp = _cell_sums_kernel(
        table.counts.astype(np.int64, copy=False), table.gt_index, table.seg_index,
        len(table.gt_ids), zero_cols, bool(logs),
    )
    return CellSums(
        total=int(gt_sizes.sum()),
        gt_sizes=gt_sizes,
        seg_sizes=seg_sizes,
        singletons=int(singletons),
        paired=int(paired),
        joint_plogp=float(plogp),
    )


@njit(cache=True)
def _cell_sums_kernel(counts, rows, cols, n_rows, zero_cols, logs):
    gt_sizes = np.zeros(n_rows, dtype=np.int64)
    seg_sizes = np.zeros(len(zero_cols), dtype=np.int64)
    total = 0
    for k in range(len(counts)):
        gt_sizes[rows[k]] += counts[k]
        total += counts[k]
    singletons = 0
    paired = 0
    # Kahan-Babuska-Neumaier sum of p log2 p: exact to a few ulps over millions of cells.
    plogp = 0.0
    carry = 0.0
    for k in range(len(counts)):
        n = counts[k]
        if zero_cols[cols[k]]:
            singletons += n
            continue
        seg_sizes[cols[k]] += n
        paired += n * (n - 1)
        if logs and n > 0:
            p = n / total
            term = p * np.log2(p)
            after = plogp + term
            if abs(plogp) >= abs(term):
                carry += (plogp - after) + term
            else:
                carry += (term - after) + plogp
            plogp = after
    return gt_sizes, seg_sizes, singletons, paired, plogp + carry


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
    check_label_dtype(labels.dtype, name=name)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError(f"{name} has negative labels (min {labels.min()}); labels must be >= 0")
    return labels


def check_label_dtype(dtype, *, name: str) -> None:
    """Check that ``dtype`` can hold labels (bool or integer), without reading any data.

    Args:
        dtype: the dtype of a label volume.
        name: what to call the input in an error message.

    Raises:
        InputError: a float (or other non-integer) dtype.
    """
    dtype = np.dtype(dtype)
    if dtype != bool and dtype.kind not in "iu":
        raise InputError(
            f"{name} must hold integer labels, got dtype {dtype}; "
            "a float volume is a probability map, not a segmentation"
        )


def is_lazy(array) -> bool:
    """True for a stored array read only when indexed (emkit Volume, h5py, Zarr).

    Args:
        array: anything.

    Returns:
        True when ``array`` is not an ndarray but has ``shape``, ``dtype`` and indexing.
    """
    return not isinstance(array, np.ndarray) and all(
        hasattr(array, attr) for attr in ("shape", "dtype", "__getitem__")
    )


def as_array_or_lazy(array):
    """``array`` itself when it is lazy (see :func:`is_lazy`), else ``np.asarray(array)``."""
    return array if is_lazy(array) else np.asarray(array)


def iter_slabs(*arrays, slab_voxels: int = SLAB_VOXELS):
    """Read arrays of one shape together, in slabs of whole sections along axis 0.

    Args:
        *arrays: ndarrays or lazy arrays (see :func:`is_lazy`) of the same shape, at
            least 1-D; None entries are passed through as None.
        slab_voxels: voxels per slab; a slab has at least one section.

    Yields:
        ``(start, stop, slabs)``: the sections ``start:stop`` of axis 0 and a list with
        each array's slab as an ndarray (a view where the array is an ndarray).
    """
    shape = tuple(next(a for a in arrays if a is not None).shape)
    if not shape:
        yield 0, 1, [None if a is None else np.asarray(a) for a in arrays]
        return
    section = int(np.prod(shape[1:], dtype=np.int64))
    step = max(1, int(slab_voxels) // max(section, 1))
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        yield start, stop, [None if a is None else np.asarray(a[start:stop]) for a in arrays]


class ContingencyCounter:
    """Adds up a contingency table over pieces of a volume (slabs, blocks, sections).

    Every piece is counted exactly; the table of a volume counted in pieces equals the
    table counted in one go. Memory is what the caller passes in plus the tables kept
    between pieces: two label maps and a hash table of about 32 bytes per (gt, seg) pair
    seen, or, for labels without runs (white noise), a dense array of at most
    ``DENSE_CELLS`` int64 cells.

    Args:
        ignore_gt: ground-truth labels whose voxels are not counted (default: 0, the
            unlabelled voxels).

    >>> counter = ContingencyCounter()
    >>> counter.add(np.array([1, 1, 2]), np.array([1, 1, 1]))
    >>> counter.add(np.array([2, 5]), np.array([1, 0]))
    >>> counter.table().counts.tolist()
    [2, 2]
    """

    def __init__(self, *, ignore_gt=(0,)):
        ignore = [int(v) for v in ignore_gt]
        if any(v < 0 for v in ignore):
            raise InputError(f"ignore_gt must hold labels >= 0, got {tuple(ignore_gt)}")
        self._ignore = np.array(ignore, dtype=np.uint64)
        self._gt = _LabelMap()
        self._seg = _LabelMap()
        # Pair counts: the hash table ``pairs``, or, once it holds a good part of all
        # (gt, seg) pairs of the labels seen (labels without runs, such as white noise),
        # the array dense[gt_id * seg_stride + seg_id] of ``rows`` x ``seg_stride``
        # (then ``pairs`` is empty, and vice versa).
        self._rows, self._seg_stride = 0, 0
        self._dense = np.zeros(0, dtype=np.int64)
        self._pairs = np.full(2 << 12, -1, dtype=np.int64)
        # [gt ids, seg ids, hashed pairs, negative label (1 gt, 2 seg), why it stopped,
        #  runs counted through the hash table]
        self._state = np.zeros(6, dtype=np.int64)
        self._hashed_voxels = 0  # voxels counted through the hash table
        self._voxels = 0  # voxels handed to add() before the current piece
        self._gt_dtype = None
        self._seg_dtype = None

    def add(self, seg, gt, mask=None) -> None:
        """Count one piece.

        Args:
            seg: ndarray (any shape), predicted labels, bool or integer >= 0.
            gt: ndarray of the same shape, ground-truth labels.
            mask: optional boolean ndarray of the same shape; only voxels where it is
                True are counted.

        Raises:
            InputError: shapes differ, float labels, or negative labels.
        """
        seg = _flat_labels(seg, "prediction")
        gt = _flat_labels(gt, "ground truth")
        if seg.shape != gt.shape:
            raise InputError(
                f"prediction piece of {seg.size} voxels does not match ground truth piece "
                f"of {gt.size} voxels"
            )
        if mask is None:
            flat_mask, use_mask = np.ones(1, dtype=bool), False
        else:
            flat_mask = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
            if flat_mask.size != gt.size:
                raise InputError(
                    f"mask of {flat_mask.size} voxels does not match ground truth of "
                    f"{gt.size} voxels"
                )
            use_mask = True
        self._gt_dtype = _merge_dtype(self._gt_dtype, gt.dtype)
        self._seg_dtype = _merge_dtype(self._seg_dtype, seg.dtype)
        state = self._state
        start, n = 0, gt.size
        while start < n:
            state[4] = 0
            fast = not use_mask and self._gt.lut.size and self._seg.lut.size and self._dense.size
            if fast:
                at = start = kernels.count_lut_dense(
                    gt, seg, self._gt.lut, self._seg.lut, self._rows, self._seg_stride,
                    self._dense, self._seg_stride, state, start,
                )
            else:
                at = kernels.count_pairs(
                    gt, seg, flat_mask, use_mask,
                    self._gt.lut, self._gt.keys, self._gt.ids,
                    self._gt.id_limit(self._rows if self._dense.size else None),
                    self._seg.lut, self._seg.keys, self._seg.ids,
                    self._seg.id_limit(self._seg_stride if self._dense.size else None),
                    self._dense, self._seg_stride, self._pairs, state, start,
                )
                if not self._dense.size:
                    self._hashed_voxels += at - start
                start = at
            self._make_room(int(state[4]), int(state[3]), at, gt, seg)
        self._voxels += n

    def _make_room(self, reason: int, negative: int, at: int, gt, seg) -> None:
        """Grow the table that stopped the count at voxel ``at``; reject negative labels."""
        if negative or reason in (kernels.GT_LABEL, kernels.SEG_LABEL):
            in_gt = negative == 1 or (not negative and reason == kernels.GT_LABEL)
            which, labels = ("ground truth", gt) if in_gt else ("prediction", seg)
            if int(labels[at]) < 0:
                raise InputError(
                    f"{which} has negative labels (min {labels.min()}); labels must be >= 0"
                )
        if reason == kernels.GT_LABEL:
            self._gt.make_room(int(gt[at]), int(self._state[0]))
        elif reason == kernels.SEG_LABEL:
            self._seg.make_room(int(seg[at]), int(self._state[1]))
        elif reason == kernels.GT_ID:
            if self._gt.full(int(self._state[0])):
                self._gt.grow()
            if self._dense.size and self._state[0] >= self._rows:
                self._grow_dense()
        elif reason == kernels.SEG_ID:
            if self._seg.full(int(self._state[1])):
                self._seg.grow()
            if self._dense.size and self._state[1] >= self._seg_stride:
                self._grow_dense()
        elif reason == kernels.PAIRS:
            n_gt, n_seg, n_pairs, runs = (int(self._state[i]) for i in (0, 1, 2, 5))
            cells = n_gt * n_seg
            shape = kernels.dense_shape(n_gt, n_seg)
            # Dense when the hash table holds a good part of all pairs, or when runs
            # are short (white noise: a hash lookup per voxel) and the array is not
            # much larger than the volume.
            short_runs = 2 * runs >= self._hashed_voxels
            small = cells <= 2 * (self._voxels + len(gt))
            dense_enough = n_pairs * kernels.DENSE_FILL >= cells
            if shape is not None and (dense_enough or short_runs and small):
                self._rows, self._seg_stride = shape
                self._dense = np.zeros(shape[0] * shape[1], dtype=np.int64)
                kernels.pairs_to_dense(self._pairs, self._dense, self._seg_stride)
                self._pairs = np.zeros(0, dtype=np.int64)
            else:
                self._pairs = kernels.grow_pairs(self._pairs)

    def _grow_dense(self) -> None:
        """Re-lay the dense table out for more labels, or move it to a hash table."""
        old = self._dense.reshape(self._rows, self._seg_stride)
        rows, stride = self._rows, self._seg_stride
        shape = kernels.dense_shape(
            2 * rows if self._state[0] >= rows else rows,
            2 * stride if self._state[1] >= stride else stride,
            headroom=False,
        )
        if shape is not None:
            dense = np.zeros(shape, dtype=np.int64)
            dense[: self._rows, : self._seg_stride] = old
            self._dense, (self._rows, self._seg_stride) = dense.reshape(-1), shape
            return
        cells = int(np.count_nonzero(old))
        capacity = 1 << max(12, int(cells * 2 - 1).bit_length())
        self._pairs = np.full(2 * capacity, -1, dtype=np.int64)
        self._state[2] = kernels.dense_to_pairs(self._dense, self._seg_stride, self._pairs)
        self._dense = np.zeros(0, dtype=np.int64)
        self._rows = self._seg_stride = 0

    def table(self) -> Contingency:
        """The table of everything added so far, labels and cells sorted."""
        gt_ids, gt_order = self._gt.sorted_labels(int(self._state[0]))
        seg_ids, seg_order = self._seg.sorted_labels(int(self._state[1]))
        # Ignored ground-truth labels were numbered and counted like the others (one
        # test less per voxel): their rows are dropped here, and the columns left empty.
        kept = ~np.isin(gt_ids, self._ignore)
        row_of = np.where(kept, np.cumsum(kept) - 1, -1)  # by sorted position
        if self._dense.size:
            counts, rows, cols, used = kernels.dense_cells(
                self._dense, self._seg_stride, gt_order, row_of, seg_order
            )
        else:
            id_row = np.empty(len(gt_order), dtype=np.int64)
            id_row[gt_order] = row_of
            counts, rows, cols, used = kernels.hashed_cells(
                self._pairs, id_row, int(kept.sum()), _rank(seg_order)
            )
        return Contingency(
            counts, rows, cols, _as_dtype(gt_ids[kept], self._gt_dtype),
            _as_dtype(seg_ids[used], self._seg_dtype),
        )


def _as_dtype(labels: np.ndarray, dtype) -> np.ndarray:
    return labels.astype(np.uint8 if dtype is None else dtype)


class _LabelMap:
    """Numbers labels 0, 1, 2, ... in order of first appearance.

    Labels below ``LUT_LABELS`` (:mod:`~emkit.metrics.kernels`) go through a lookup table
    ``lut`` (int32, -1 = not seen),
    grown to the largest label seen; once a larger label appears, every label goes
    through an open-addressing hash table (``keys``, ``ids``; id -1 = empty slot) and
    ``lut`` is emptied.
    """

    def __init__(self):
        self.lut = np.full(min(256, kernels.LUT_LABELS), -1, dtype=np.int32)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.ids = np.zeros(0, dtype=np.int64)

    def id_limit(self, dense_limit: int | None) -> int:
        """How many ids may be handed out before the kernel must stop."""
        full = kernels.HASH_FULL * len(self.keys) // kernels.HASH_PARTS
        limit = full if not self.lut.size else 1 << 62
        return limit if dense_limit is None else min(limit, dense_limit)

    def full(self, n_ids: int) -> bool:
        full = kernels.HASH_FULL * len(self.keys) // kernels.HASH_PARTS
        return not self.lut.size and n_ids >= full

    def make_room(self, label: int, n_ids: int) -> None:
        """Make the lookup table take ``label``, or move every label to the hash table."""
        if label < kernels.LUT_LABELS:
            lut = np.full(min(kernels.LUT_LABELS, max(2 * len(self.lut), label + 1)), -1, np.int32)
            lut[: len(self.lut)] = self.lut
            self.lut = lut
            return
        capacity = 1 << max(10, int(2 * n_ids + 1).bit_length())
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.ids = np.full(capacity, -1, dtype=np.int64)
        kernels.lut_to_hash(self.lut, self.keys, self.ids)
        self.lut = np.zeros(0, dtype=np.int32)

    def grow(self) -> None:
        keys = np.zeros(2 * len(self.keys), dtype=np.uint64)
        ids = np.full(2 * len(self.keys), -1, dtype=np.int64)
        kernels.rehash_labels(self.keys, self.ids, keys, ids)
        self.keys, self.ids = keys, ids

    def sorted_labels(self, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
        """(the labels sorted, as uint64; the id of each label in that order)."""
        labels = np.empty(n_ids, dtype=np.uint64)
        if self.lut.size:
            seen = np.flatnonzero(self.lut >= 0)
            labels[self.lut[seen]] = seen
        else:
            used = self.ids >= 0
            labels[self.ids[used]] = self.keys[used]
        order = np.argsort(labels, kind="stable")
        return labels[order], order


def _rank(order: np.ndarray) -> np.ndarray:
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def _merge_dtype(old, new):
    if old is None or old == new:
        return new
    merged = np.promote_types(old, new)
    return merged if merged.kind in "iu" else np.dtype(np.uint64)


def _flat_labels(labels, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = np.ascontiguousarray(labels).view(np.uint8)
    check_label_dtype(labels.dtype, name=name)
    return np.ascontiguousarray(labels).reshape(-1)


def check_label_pair(seg, gt):
    """A prediction and its ground truth as arrays or lazy arrays, checked to be integer
    labels of one shape.

    Args:
        seg: the predicted segmentation (ndarray or lazy array).
        gt: the ground truth, of the same shape.

    Returns:
        ``(seg, gt)``, each an ndarray or the lazy array as given.
    """
    seg = as_array_or_lazy(seg)
    gt = as_array_or_lazy(gt)
    check_label_dtype(seg.dtype, name="prediction")
    check_label_dtype(gt.dtype, name="ground truth")
    if tuple(seg.shape) != tuple(gt.shape):
        raise InputError(
            f"prediction shape {tuple(seg.shape)} does not match ground truth shape "
            f"{tuple(gt.shape)}"
        )
    return seg, gt


def contingency_table(
    seg,
    gt,
    *,
    ignore_gt: tuple[int, ...] = (0,),
    mask=None,
    per_section: bool = False,
    slab_voxels: int = SLAB_VOXELS,
) -> Contingency:
    """Count the overlap of every predicted segment with every ground-truth segment.

    Args:
        seg: ndarray of shape (Z, Y, X) (any shape), predicted label volume, or a lazy
            array of that shape (an :class:`emkit.io.Volume`, h5py dataset or Zarr
            array), which is read in slabs of sections.
        gt: ndarray or lazy array of the same shape, ground-truth label volume.
        ignore_gt: ground-truth labels whose voxels are not counted. Default ``(0,)``:
            label 0 means unlabelled in ground truth.
        mask: optional boolean ndarray (or lazy array) of the same shape; voxels where
            it is False are not counted.
        per_section: if True, count each section ``z`` (axis 0) separately, so that a
            label in two sections is two segments and only pairs of voxels in the same
            section are compared (2D evaluation of a stack, as ISBI 2012 does).
        slab_voxels: read and count this many voxels at a time (whole sections along
            axis 0, at least one). The table does not depend on it.

    Returns:
        A :class:`Contingency`, labels sorted and cells sorted by (row, column).
        Predicted label 0 is kept as an ordinary column; the metrics decide what it means.

    Raises:
        InputError: shapes differ, float labels, or negative labels.

    >>> t = contingency_table(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 2]))
    >>> t.counts.tolist(), t.gt_ids[t.gt_index].tolist(), t.seg_ids[t.seg_index].tolist()
    ([2, 1, 1], [1, 1, 2], [1, 2, 2])
    """
    seg, gt = check_label_pair(seg, gt)
    if mask is not None:
        mask = as_array_or_lazy(mask)
        if tuple(mask.shape) != tuple(gt.shape):
            raise InputError(
                f"mask shape {tuple(mask.shape)} does not match ground truth {tuple(gt.shape)}"
            )
    if per_section and len(gt.shape) < 2:
        raise InputError(
            f"per-section counting needs (Z, Y, X) volumes, got shape {tuple(gt.shape)}"
        )
    if not per_section:
        counter = ContingencyCounter(ignore_gt=ignore_gt)
        for _, _, (s, g, m) in iter_slabs(seg, gt, mask, slab_voxels=slab_voxels):
            counter.add(s, g, m)
        return counter.table()
    tables = []
    for _, _, (s, g, m) in iter_slabs(seg, gt, mask, slab_voxels=slab_voxels):
        for z in range(g.shape[0]):
            counter = ContingencyCounter(ignore_gt=ignore_gt)
            counter.add(s[z], g[z], None if m is None else m[z])
            tables.append(counter.table())
    return concatenate(tables)


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
