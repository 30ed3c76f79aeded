"""The numba kernels that count a contingency table's label pairs.

:class:`~emkit.metrics.contingency.ContingencyCounter` drives them: labels are numbered
through lookup tables (or hash tables for large label values), runs of equal pairs are
counted with one comparison per voxel, and pairs go to a hash table or, for short runs
(white noise), to a dense array. Everything here works on flat arrays and returns plain
arrays; see the counter for the bookkeeping between calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Label maps: see contingency._LabelMap. The pair hash table is one int64 array of 2 *
# capacity entries, (key, count) side by side so that a lookup touches one cache line; the
# key is gt_id << 32 | seg_id (ids below 2**31) and -1 marks an empty slot. Hash capacities
# are powers of two, slots are found by Fibonacci hashing and linear probing, and a table is
# grown before it is more than 5/8 full. The kernel stops at the start of a run whenever a
# table must grow (state[4] says which); the caller grows it and calls again from there.

#: Labels below this are numbered through a lookup table (int32, 32 MiB at most).
LUT_LABELS = 1 << 23
#: Pairs are counted in a hash table, or in a dense (gt, seg) array of at most this many
#: cells (128 MiB) once the hash table holds 1 / DENSE_FILL of all pairs of the labels
#: seen, or once runs prove short (under 2 voxels on average) and the array would have
#: at most twice as many cells as the voxels counted.
DENSE_CELLS = 1 << 24
DENSE_FILL = 4

HASH_FULL, HASH_PARTS = 5, 8
_BLOCK = 1 << 15  # voxels numbered, then counted, while they are in cache
GT_LABEL, SEG_LABEL, GT_ID, SEG_ID, PAIRS = 1, 2, 3, 4, 5
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def _shift(capacity):
    bits = 0
    while (1 << bits) < capacity:
        bits += 1
    return np.uint64(64 - bits)


@njit(cache=True, inline="always")
def _slot(key, shift):
    # Fibonacci hashing: the top bits of key * 2**64 / golden ratio.
    return np.int64((np.uint64(key) * _GOLDEN) >> shift)


@njit(cache=True, nogil=True)
def count_lut_dense(g, s, gt_lut, seg_lut, gt_limit, seg_limit, dense, stride, state, start):
    """The common case: both label maps are lookup tables and the pair table is dense.

    Works in blocks that stay in cache: first numbers the labels of the block not seen
    yet, then counts its runs with no test but the run test (each test in that loop
    costs about as much as the counting itself on labels without runs). Returns
    ``g.size``, or the voxel where a table must grow (``state[4]`` says which); the
    voxels before it are counted.
    """
    n = g.size
    for block in range(start, n, _BLOCK):
        stop = min(n, block + _BLOCK)
        numbered = _number_labels(g, s, gt_lut, seg_lut, gt_limit, seg_limit, state, block,
                                  stop)
        _count_numbered(g, s, gt_lut, seg_lut, dense, stride, block, numbered)
        if numbered < stop:
            return numbered
    return n


@njit(cache=True, nogil=True)
def _number_labels(g, s, gt_lut, seg_lut, gt_limit, seg_limit, state, start, stop):
    """Give ids to the labels of voxels ``start:stop`` not seen yet; return ``stop``, or
    the voxel where a table must grow first (``state[4]`` says which)."""
    gt_size = np.uint64(len(gt_lut))
    seg_size = np.uint64(len(seg_lut))
    g = g[start:stop]
    s = s[start:stop]
    if g.size == 0:
        return stop
    last_g = ~np.uint64(g[0])
    last_s = ~np.uint64(s[0])
    for i in range(g.size):
        gk = np.uint64(g[i])  # a negative label becomes huge: outside the table
        sk = np.uint64(s[i])
        if gk != last_g:
            if gk >= gt_size:
                state[4] = GT_LABEL
                return start + i
            if gt_lut[gk] < 0:
                if state[0] >= gt_limit:
                    state[4] = GT_ID
                    return start + i
                gt_lut[gk] = state[0]
                state[0] += 1
            last_g = gk
        if sk != last_s:
            if sk >= seg_size:
                state[4] = SEG_LABEL
                return start + i
            if seg_lut[sk] < 0:
                if state[1] >= seg_limit:
                    state[4] = SEG_ID
                    return start + i
                seg_lut[sk] = state[1]
                state[1] += 1
            last_s = sk
    return stop


@njit(cache=True, nogil=True)
def _count_numbered(g, s, gt_lut, seg_lut, dense, stride, start, stop):
    """Count the runs of voxels ``start:stop``, whose labels all have ids."""
    # Loops here run over slices from 0: numba indexes faster when the index cannot be
    # negative, about 2x on labels without runs.
    g = g[start:stop]
    s = s[start:stop]
    n = g.size
    if n == 0:
        return
    gv = g[0]
    sv = s[0]
    run = 1
    for i in range(1, n):
        g_next = g[i]
        s_next = s[i]
        if g_next == gv and s_next == sv:
            run += 1
        else:
            dense[np.int64(gt_lut[gv]) * stride + np.int64(seg_lut[sv])] += run
            gv = g_next
            sv = s_next
            run = 1
    dense[np.int64(gt_lut[gv]) * stride + np.int64(seg_lut[sv])] += run


@njit(cache=True, nogil=True)
def count_pairs(g, s, m, use_mask, gt_lut, gt_keys, gt_ids, gt_limit, seg_lut, seg_keys,
                 seg_ids, seg_limit, dense, stride, pairs, state, start):
    """Count the runs of equal (gt, seg) pairs from voxel ``start`` on; return ``g.size``,
    or the voxel to go on from once the table that ``state[4]`` names has grown.

    Everything is written out in this one loop: numba adds reference counting around
    calls of helpers that take arrays, which costs more than the counting. Voxels where
    ``use_mask`` and ``m`` is False are skipped.
    """
    total = g.size
    if start >= total:
        return total
    # Loop over slices from 0: numba indexes faster when the index cannot be negative.
    g = g[start:]
    s = s[start:]
    if use_mask:
        m = m[start:]
    n = g.size
    gt_lut_size = np.uint64(len(gt_lut))
    seg_lut_size = np.uint64(len(seg_lut))
    gt_shift = _shift(len(gt_keys))
    seg_shift = _shift(len(seg_keys))
    gt_mask = len(gt_keys) - 1
    seg_mask = len(seg_keys) - 1
    use_dense = len(dense) > 0
    pair_shift = _shift(len(pairs) // 2)
    pair_mask = len(pairs) // 2 - 1
    pair_limit = len(pairs) // 2 * HASH_FULL // HASH_PARTS
    gv = g[0]
    sv = s[0]
    mv = m[0] if use_mask else True
    run = 1
    for i in range(1, n + 1):
        if i < n and g[i] == gv and s[i] == sv and (not use_mask or m[i] == mv):
            run += 1
            continue
        # A run of ``run`` voxels of (gv, sv) ends before voxel i: count it.
        # gv ^ gv is a zero of gv's type: the test folds away for unsigned labels.
        if gv < (gv ^ gv):
            state[3] = 1
            return start + i - run
        if sv < (sv ^ sv):
            state[3] = 2
            return start + i - run
        if mv:
            # ground-truth id
            gk = np.uint64(gv)
            if gt_lut_size > 0:
                if gk >= gt_lut_size:
                    state[4] = GT_LABEL
                    return start + i - run
                gid = np.int64(gt_lut[gk])
                if gid < 0:
                    gid = state[0]
                    if gid >= gt_limit:
                        state[4] = GT_ID
                        return start + i - run
                    gt_lut[gk] = gid
                    state[0] = gid + 1
            else:
                slot = np.int64((gk * _GOLDEN) >> gt_shift)
                while True:
                    gid = gt_ids[slot]
                    if gid < 0:
                        gid = state[0]
                        if gid >= gt_limit:
                            state[4] = GT_ID
                            return start + i - run
                        gt_keys[slot] = gk
                        gt_ids[slot] = gid
                        state[0] = gid + 1
                        break
                    if gt_keys[slot] == gk:
                        break
                    slot = (slot + 1) & gt_mask
            # predicted id
            sk = np.uint64(sv)
            if seg_lut_size > 0:
                if sk >= seg_lut_size:
                    state[4] = SEG_LABEL
                    return start + i - run
                sid = np.int64(seg_lut[sk])
                if sid < 0:
                    sid = state[1]
                    if sid >= seg_limit:
                        state[4] = SEG_ID
                        return start + i - run
                    seg_lut[sk] = sid
                    state[1] = sid + 1
            else:
                slot = np.int64((sk * _GOLDEN) >> seg_shift)
                while True:
                    sid = seg_ids[slot]
                    if sid < 0:
                        sid = state[1]
                        if sid >= seg_limit:
                            state[4] = SEG_ID
                            return start + i - run
                        seg_keys[slot] = sk
                        seg_ids[slot] = sid
                        state[1] = sid + 1
                        break
                    if seg_keys[slot] == sk:
                        break
                    slot = (slot + 1) & seg_mask
            # the pair
            if use_dense:
                dense[gid * stride + sid] += run
            else:
                key = (gid << 32) | sid
                slot = np.int64((np.uint64(key) * _GOLDEN) >> pair_shift)
                while True:
                    at = 2 * slot
                    found = pairs[at]
                    if found == key:
                        pairs[at + 1] += run
                        break
                    if found < 0:
                        if state[2] >= pair_limit:
                            state[4] = PAIRS
                            return start + i - run
                        pairs[at] = key
                        pairs[at + 1] = run
                        state[2] += 1
                        break
                    slot = (slot + 1) & pair_mask
                state[5] += 1
        if i < n:
            gv = g[i]
            sv = s[i]
            if use_mask:
                mv = m[i]
            run = 1
    return total


@njit(cache=True)
def lut_to_hash(lut, keys, ids):
    shift = _shift(len(keys))
    mask = len(keys) - 1
    for label in range(len(lut)):
        if lut[label] >= 0:
            slot = _slot(label, shift)
            while ids[slot] >= 0:
                slot = (slot + 1) & mask
            keys[slot] = label
            ids[slot] = lut[label]


@njit(cache=True)
def rehash_labels(keys, ids, new_keys, new_ids):
    shift = _shift(len(new_keys))
    mask = len(new_keys) - 1
    for old in range(len(keys)):
        if ids[old] >= 0:
            slot = _slot(keys[old], shift)
            while new_ids[slot] >= 0:
                slot = (slot + 1) & mask
            new_keys[slot] = keys[old]
            new_ids[slot] = ids[old]


@njit(cache=True)
def _insert_pairs(keys, counts, pairs):
    shift = _shift(len(pairs) // 2)
    mask = len(pairs) // 2 - 1
    for k in range(len(keys)):
        slot = _slot(keys[k], shift)
        while pairs[2 * slot] >= 0:
            slot = (slot + 1) & mask
        pairs[2 * slot] = keys[k]
        pairs[2 * slot + 1] = counts[k]


def grow_pairs(pairs: np.ndarray) -> np.ndarray:
    # Grow 4x while small, so that a table of millions of pairs is rehashed few times.
    factor = 4 if len(pairs) < (1 << 24) else 2
    used = pairs[0::2] >= 0
    new_pairs = np.full(factor * len(pairs), -1, dtype=np.int64)
    _insert_pairs(pairs[0::2][used], pairs[1::2][used], new_pairs)
    return new_pairs


def dense_shape(n_gt: int, n_seg: int, *, headroom: bool = True) -> tuple[int, int] | None:
    """(rows, stride) of a dense table for this many labels (and some more, if it fits),
    or None when it would have more than ``DENSE_CELLS`` cells."""
    shapes = [(n_gt, n_seg)]
    if headroom:
        shapes.insert(0, (n_gt + n_gt // 4 + 16, n_seg + n_seg // 4 + 16))
    for rows, stride in shapes:
        if rows * stride <= DENSE_CELLS:
            return rows, stride
    return None


@njit(cache=True)
def pairs_to_dense(pairs, dense, stride):
    for at in range(0, len(pairs), 2):
        key = pairs[at]
        if key >= 0:
            dense[(key >> 32) * stride + (key & 0xFFFFFFFF)] = pairs[at + 1]


def dense_to_pairs(dense: np.ndarray, stride: int, pairs: np.ndarray) -> int:
    cells = np.flatnonzero(dense)
    keys = ((cells // stride) << 32) | (cells % stride)
    _insert_pairs(keys, dense[cells], pairs)
    return len(cells)


def dense_cells(dense, stride, gt_order, row_of, seg_order):
    """Cells of the dense table sorted by (row, column), and the columns used.

    Args are the table, its row stride, the id of each label in sorted order (rows and
    columns) and the output row of each sorted row label (-1: dropped). Returns
    ``(counts, rows, cols, used)``: columns are numbered among the ``used`` ones.
    """
    room = int(np.count_nonzero(dense))
    # allocated here, not in numba: NumPy asks for huge pages for large arrays
    counts, rows, cols = (np.empty(room, dtype=np.int64) for _ in range(3))
    used = np.zeros(len(seg_order), dtype=bool)
    k = _fill_dense_cells(dense, stride, gt_order, row_of, seg_order, counts, rows, cols, used)
    return counts[:k], rows[:k], cols[:k], used


@njit(cache=True)
def _fill_dense_cells(dense, stride, gt_order, row_of, seg_order, counts, rows, cols, used):
    n_cols = len(seg_order)
    line = np.empty(n_cols, dtype=np.int64)
    k = 0
    for r in range(len(gt_order)):
        if row_of[r] >= 0:
            base = gt_order[r] * stride
            row = row_of[r]
            line[:] = dense[base:base + n_cols]  # read in order, then pick from cache
            for c in range(n_cols):
                v = line[seg_order[c]]
                if v != 0:
                    counts[k] = v
                    rows[k] = row
                    cols[k] = c
                    used[c] = True
                    k += 1
    n_used = 0
    for c in range(n_cols):
        n_used += used[c]
    if n_used < n_cols:
        col_of = np.cumsum(used) - 1
        for j in range(k):
            cols[j] = col_of[cols[j]]
    return k


@njit(cache=True)
def hashed_cells(pairs, id_row, n_rows, col_rank):
    """Cells of the hash table sorted by (row, column), and the columns used.

    Args are the table, the output row of each gt id (-1: dropped), the number of
    rows, and the sorted position of each seg id. A counting sort by column, then a
    stable one by row.
    """
    n_cols = len(col_rank)
    col_start = np.zeros(n_cols + 1, dtype=np.int64)
    row_start = np.zeros(n_rows + 1, dtype=np.int64)
    for at in range(0, len(pairs), 2):
        key = pairs[at]
        if key >= 0 and id_row[key >> 32] >= 0:
            row_start[id_row[key >> 32] + 1] += 1
            col_start[col_rank[key & 0xFFFFFFFF] + 1] += 1
    used = col_start[1:] > 0
    col_of = np.cumsum(used) - 1
    for c in range(n_cols):
        col_start[c + 1] += col_start[c]
    for r in range(n_rows):
        row_start[r + 1] += row_start[r]
    n_cells = row_start[n_rows]
    by_col_rows = np.empty(n_cells, dtype=np.int64)
    by_col_cols = np.empty(n_cells, dtype=np.int64)
    by_col_counts = np.empty(n_cells, dtype=np.int64)
    for at in range(0, len(pairs), 2):
        key = pairs[at]
        if key >= 0 and id_row[key >> 32] >= 0:
            c = col_rank[key & 0xFFFFFFFF]
            k = col_start[c]
            col_start[c] = k + 1
            by_col_rows[k] = id_row[key >> 32]
            by_col_cols[k] = col_of[c]
            by_col_counts[k] = pairs[at + 1]
    counts = np.empty(n_cells, dtype=np.int64)
    rows = np.empty(n_cells, dtype=np.int64)
    cols = np.empty(n_cells, dtype=np.int64)
    for k in range(n_cells):
        r = by_col_rows[k]
        out = row_start[r]
        row_start[r] = out + 1
        counts[out] = by_col_counts[k]
        rows[out] = r
        cols[out] = by_col_cols[k]
    return counts, rows, cols, used
