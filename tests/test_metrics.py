"""Metrics: hand-computed cases, agreement with scikit-image, cremi_python's formulas."""

import doctest

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_variation_of_information

import emkit.metrics.contingency
import emkit.metrics.cremi
import emkit.metrics.isbi
import emkit.metrics.kernels
import emkit.metrics.pixel
import emkit.metrics.rand
import emkit.metrics.voi
from emkit.errors import InputError
from emkit.metrics import (
    adapted_rand_error,
    border_mask,
    contingency_table,
    cremi_score,
    evaluate,
    info_from_table,
    isbi_scores,
    pixel_error,
    rand_scores,
    thinned_segmentation,
    variation_of_information,
)
from emkit.metrics.contingency import ContingencyCounter


@pytest.mark.parametrize(
    "module",
    [
        emkit.metrics.contingency,
        emkit.metrics.cremi,
        emkit.metrics.isbi,
        emkit.metrics.pixel,
        emkit.metrics.rand,
        emkit.metrics.voi,
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# --- hand-computed cases ---------------------------------------------------------------


def test_contingency_counts_and_ignores_gt_zero():
    seg = np.array([[1, 1, 2, 2, 3, 3]])
    gt = np.array([[5, 5, 5, 0, 0, 7]])
    table = contingency_table(seg, gt)
    cells = sorted(
        zip(table.gt_ids[table.gt_index].tolist(), table.seg_ids[table.seg_index].tolist(),
            table.counts.tolist())
    )
    assert cells == [(5, 1, 2), (5, 2, 1), (7, 3, 1)]
    assert table.total == 4
    dense = table.to_sparse().toarray()
    assert dense.sum() == 4 and dense.shape == (2, 3)


def test_rand_split_of_one_object():
    # gt: one object of 4 voxels; seg splits it in two halves.
    # pairs = 2*1 + 2*1 = 4, gt_pairs = 4*3 = 12, seg_pairs = 4.
    r = rand_scores(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]))
    assert r.split == pytest.approx(4 / 12, abs=1e-15)
    assert r.merge == 1.0
    assert r.fscore == pytest.approx(8 / 16, abs=1e-15)
    assert r.error == pytest.approx(0.5, abs=1e-15)


def test_rand_merge_of_two_objects():
    r = rand_scores(np.array([3, 3, 3, 3]), np.array([1, 1, 2, 2]))
    assert r.split == 1.0
    assert r.merge == pytest.approx(4 / 12, abs=1e-15)


def test_predicted_zero_voxels_are_singletons():
    # seg 0 voxels are segments of their own: only the (1, 1) cell of 2 voxels pairs.
    r = rand_scores(np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1]))
    assert r.split == pytest.approx(2 / 12, abs=1e-15)
    assert r.merge == 1.0
    assert r.fscore == pytest.approx(4 / 14, abs=1e-15)
    # and it is the same as giving each of them a fresh label
    r2 = rand_scores(np.array([8, 9, 1, 1]), np.array([1, 1, 1, 1]))
    assert r == r2


def test_voi_hand_computed():
    # seg splits the single object into halves: H(seg|gt) = 1 bit, H(gt|seg) = 0.
    assert variation_of_information(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1])) == (1.0, 0.0)
    # seg merges two equal objects: H(gt|seg) = 1 bit.
    split, merge = variation_of_information(np.array([1, 1, 1, 1]), np.array([1, 1, 2, 2]))
    assert (split, merge) == (0.0, 1.0)
    # 2x2 images of the skimage docs: VI(x, y) with x all one label.
    split, merge = variation_of_information(np.array([[1, 1], [1, 1]]), np.array([[1, 2], [3, 3]]))
    assert split == pytest.approx(0.0, abs=1e-15)
    assert merge == pytest.approx(1.5, abs=1e-15)


def test_voi_singletons_match_fresh_labels():
    a = variation_of_information(np.array([0, 0, 1, 1, 2]), np.array([1, 1, 1, 2, 2]))
    b = variation_of_information(np.array([7, 8, 1, 1, 2]), np.array([1, 1, 1, 2, 2]))
    assert a == pytest.approx(b, abs=1e-12)


def test_pixel_error_hand_computed():
    pred = np.array([[[0.9, 0.2], [0.6, 0.1]]])
    gt = np.array([[[1, 0], [0, 0]]])
    assert pixel_error(pred, gt) == 0.25
    assert pixel_error(pred, gt, threshold=0.7) == 0.0
    assert pixel_error(pred, gt, mask=np.array([[[True, True], [False, True]]])) == 0.0


def test_per_section_counts_pairs_within_sections_only():
    rng = np.random.default_rng(3)
    seg = rng.integers(1, 4, (3, 5, 6))
    gt = rng.integers(1, 4, (3, 5, 6))
    per_section = rand_scores(seg, gt, per_section=True)
    # the same thing in 3D once every section has labels of its own
    offset = (np.arange(3) * 10)[:, None, None]
    assert per_section == rand_scores(seg + offset, gt + offset)


def test_all_zero_prediction_scores_zero_split():
    r = rand_scores(np.zeros((1, 3, 3), int), np.ones((1, 3, 3), int))
    assert r.split == 0.0 and r.fscore == 0.0


# --- agreement with scikit-image -------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_skimage_on_random_volumes(seed):
    rng = np.random.default_rng(seed)
    shape = (4, 20, 30)
    gt = rng.integers(0, 1 + 5 * (seed + 1), shape).astype(np.uint64)
    seg = rng.integers(1, 1 + 7 * (seed + 1), shape).astype(np.uint32)
    are, split, merge = sk_adapted_rand_error(gt, seg)
    r = rand_scores(seg, gt)
    assert adapted_rand_error(seg, gt) == pytest.approx(are, abs=1e-12)
    # skimage's "precision" is the split score and its "recall" the merge score
    assert r.split == pytest.approx(split, abs=1e-12)
    assert r.merge == pytest.approx(merge, abs=1e-12)
    sk_split, sk_merge = sk_variation_of_information(gt, seg, ignore_labels=(0,))
    ours = variation_of_information(seg, gt)
    assert ours[0] == pytest.approx(sk_split, abs=1e-9)
    assert ours[1] == pytest.approx(sk_merge, abs=1e-9)


def _perturb(labels, rng):
    """Split some objects along x, merge a few pairs: a realistic imperfect segmentation."""
    seg = labels.astype(np.int64).copy()
    ids = np.unique(seg[seg > 0])
    for i in rng.choice(ids, size=max(1, len(ids) // 5), replace=False):
        half = (seg == i) & (np.arange(seg.shape[-1]) > seg.shape[-1] // 2)
        seg[half] = seg.max() + 1
    for a, b in rng.choice(ids, size=(max(1, len(ids) // 10), 2), replace=False):
        seg[seg == b] = a
    seg[seg == 0] = seg.max() + 1  # no predicted 0: the skimage-comparable case
    return seg


def test_agrees_with_skimage_on_real_medulla(shared_data):
    h5py = pytest.importorskip("h5py")
    with h5py.File(shared_data / "neuroproof_medulla" / "neuroproof_medulla.h5", "r") as f:
        gt = f["volumes/labels/neuron_ids"][:40, :120, :120]
    seg = _perturb(gt, np.random.default_rng(0))
    are, split, merge = sk_adapted_rand_error(gt, seg)
    r = rand_scores(seg, gt)
    assert 0.01 < r.error < 0.9
    assert r.error == pytest.approx(are, abs=1e-9)
    assert (r.split, r.merge) == pytest.approx((split, merge), abs=1e-9)
    sk_vi = sk_variation_of_information(gt, seg, ignore_labels=(0,))
    assert variation_of_information(seg, gt) == pytest.approx(tuple(sk_vi), abs=1e-9)


def test_agrees_with_skimage_on_real_isbi(shared_data):
    tifffile = pytest.importorskip("tifffile")
    from emkit.targets import isbi_labels_to_seg

    labels = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif")[:3]
    gt = isbi_labels_to_seg(labels)
    seg = _perturb(gt, np.random.default_rng(1))
    are, split, merge = sk_adapted_rand_error(gt, seg)
    assert adapted_rand_error(seg, gt) == pytest.approx(are, abs=1e-9)
    r = rand_scores(seg, gt)
    assert (r.split, r.merge) == pytest.approx((split, merge), abs=1e-9)
    sk_vi = sk_variation_of_information(gt, seg, ignore_labels=(0,))
    assert variation_of_information(seg, gt) == pytest.approx(tuple(sk_vi), abs=1e-9)


# --- the contingency table: every counting path, pieces, slabs -----------------------


def _reference_cells(seg, gt, ignore_gt=(0,), mask=None):
    """(gt label, seg label, count) of every non-empty cell, sorted, by np.unique."""
    keep = ~np.isin(gt, ignore_gt)
    if mask is not None:
        keep &= mask
    pairs = np.stack([gt[keep].astype(np.uint64), seg[keep].astype(np.uint64)], axis=1)
    cells, counts = np.unique(pairs, axis=0, return_counts=True)
    return [(int(g), int(s), int(c)) for (g, s), c in zip(cells, counts)]


def _cells(table):
    return list(
        zip(
            table.gt_ids[table.gt_index].astype(np.uint64).tolist(),
            table.seg_ids[table.seg_index].astype(np.uint64).tolist(),
            table.counts.tolist(),
        )
    )


def _same_table(a, b):
    for field in ("counts", "gt_index", "seg_index", "gt_ids", "seg_ids"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field


def test_counter_hand_computed_pieces_ignore_and_mask():
    counter = ContingencyCounter(ignore_gt=(0, 9))
    counter.add(np.array([4, 4, 4, 7]), np.array([1, 1, 0, 1]))
    counter.add(np.array([[7, 7], [4, 5]]), np.array([[2, 9], [2, 2]]))
    counter.add(np.array([5, 5, 5]), np.array([2, 2, 2]), mask=np.array([True, False, True]))
    table = counter.table()
    # (gt 1, seg 4) x2, (1, 7) x1, (2, 7) x1, (2, 4) x1, (2, 5) x1 + 2 unmasked
    assert _cells(table) == [(1, 4, 2), (1, 7, 1), (2, 4, 1), (2, 5, 3), (2, 7, 1)]
    assert table.gt_ids.tolist() == [1, 2] and table.seg_ids.tolist() == [4, 5, 7]
    assert table.total == 8


def test_predicted_labels_only_in_ignored_voxels_are_not_columns():
    table = contingency_table(np.array([1, 1, 2, 3]), np.array([5, 5, 0, 0]))
    assert table.seg_ids.tolist() == [1] and _cells(table) == [(5, 1, 2)]
    empty = contingency_table(np.array([1, 2]), np.array([0, 0]))
    assert empty.total == 0 and len(empty.gt_ids) == 0 and len(empty.seg_ids) == 0


def _label_pair(kind, rng, shape=(6, 40, 50)):
    if kind == "noise":
        # No runs: the hash table fills up and becomes a dense array; more labels in the
        # second half make that grow.
        half = (shape[0] // 2, *shape[1:])
        gt = np.concatenate([rng.integers(0, 60, half), rng.integers(0, 120, half)])
        seg = np.concatenate([rng.integers(1, 90, half), rng.integers(1, 180, half)])
        return gt, seg
    if kind == "blobby":
        coarse = tuple(s // 4 + 1 for s in shape)
        gt = rng.integers(0, 40, coarse).repeat(4, 0).repeat(4, 1).repeat(4, 2)
        seg = rng.integers(1, 70, coarse).repeat(4, 0).repeat(4, 1).repeat(4, 2)
        crop = tuple(slice(0, s) for s in shape)
        return gt[crop], np.roll(seg[crop], 2, axis=2)
    raise ValueError(kind)


# Every path: lookup tables (grown for sparse labels) or hash maps for the labels (huge
# label values, or a tiny lookup-table limit), a hash table or a dense array for the pairs (a small dense limit
# sends the dense array of the noise back to a hash table when more labels come).
MODES = {
    "default": ({}, 1, (np.uint64, np.int32, np.uint16)),
    "sparse labels": ({}, 997, (np.uint32,)),
    "huge labels": ({}, 1 << 40, (np.uint64,)),
    "small lookup tables": ({"LUT_LABELS": 16}, 1, (np.uint64, np.int64)),
    "small dense array": ({"DENSE_CELLS": 6000}, 1, (np.uint32,)),
}
PATHS = [(mode, dtype) for mode, (_, _, dtypes) in MODES.items() for dtype in dtypes]


@pytest.mark.parametrize(("mode", "dtype"), PATHS)
@pytest.mark.parametrize("kind", ["noise", "blobby"])
@pytest.mark.parametrize("seed", [7, 8])
def test_table_is_exact_on_every_path(kind, mode, dtype, seed, monkeypatch):
    settings, scale, _ = MODES[mode]
    for name, value in settings.items():
        monkeypatch.setattr(emkit.metrics.kernels, name, value)
    gt, seg = _label_pair(kind, np.random.default_rng(seed))
    gt, seg = (gt * scale).astype(dtype), (seg * scale).astype(dtype)
    table = contingency_table(seg, gt)
    assert _cells(table) == _reference_cells(seg, gt)
    assert table.gt_ids.dtype == dtype and table.seg_ids.dtype == dtype
    # the same table from slabs of one section, and from pieces cut anywhere
    _same_table(contingency_table(seg, gt, slab_voxels=1), table)
    counter = ContingencyCounter()
    cuts = np.sort(np.random.default_rng(1).integers(0, gt.size, 7))
    for s, g in zip(np.split(seg.ravel(), cuts), np.split(gt.ravel(), cuts)):
        counter.add(s, g)
    _same_table(counter.table(), table)
    mask = np.random.default_rng(2).random(gt.shape) < 0.7
    masked = contingency_table(seg, gt, mask=mask, slab_voxels=2000)
    assert _cells(masked) == _reference_cells(seg, gt, mask=mask)
    # non-contiguous arrays are copied a slab at a time
    turned = contingency_table(seg.transpose(2, 1, 0), gt.transpose(2, 1, 0), slab_voxels=500)
    assert _cells(turned) == _cells(table)


@pytest.mark.parametrize("kind", ["noise", "blobby"])
@pytest.mark.parametrize("seed", range(2))
def test_agrees_with_skimage_on_noise_and_blobs(kind, seed):
    gt, seg = _label_pair(kind, np.random.default_rng(seed))
    are, split, merge = sk_adapted_rand_error(gt, seg)
    r = rand_scores(seg, gt)
    assert r.error == pytest.approx(are, abs=1e-9)
    assert (r.split, r.merge) == pytest.approx((split, merge), abs=1e-9)
    sk_vi = sk_variation_of_information(gt, seg, ignore_labels=(0,))
    assert variation_of_information(seg, gt) == pytest.approx(tuple(sk_vi), abs=1e-9)


def test_thousands_of_huge_labels():
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 50, 30000).astype(np.uint64) << np.uint64(33)
    seg = rng.integers(0, 3000, 30000).astype(np.uint64) * np.uint64(1 << 40) + np.uint64(7)
    table = contingency_table(seg, gt)
    assert len(table.seg_ids) == 3000
    assert _cells(table) == _reference_cells(seg, gt)


def test_negative_labels_are_refused_on_every_path(monkeypatch):
    seg = np.arange(1, 201).reshape(2, 10, 10)
    gt = np.ones((2, 10, 10), np.int64)
    gt[1, 3, 4] = -5
    with pytest.raises(InputError, match=r"ground truth has negative labels \(min -5\)"):
        contingency_table(seg, gt)
    with pytest.raises(InputError, match="prediction has negative labels"):
        contingency_table(-seg, np.abs(gt))
    monkeypatch.setattr(emkit.metrics.kernels, "LUT_LABELS", 4)  # hash maps
    with pytest.raises(InputError, match="ground truth has negative labels"):
        contingency_table(seg, gt)
    with pytest.raises(InputError, match="prediction has negative labels"):
        contingency_table(-seg, np.abs(gt), mask=np.ones(gt.shape, bool))


def test_contingency_rejects_bad_input():
    with pytest.raises(InputError, match="integer labels"):
        contingency_table(np.ones(3, np.float32), np.ones(3, int))
    with pytest.raises(InputError, match=r"prediction shape \(3,\) does not match"):
        contingency_table(np.ones(3, int), np.ones(4, int))
    with pytest.raises(InputError, match="mask shape"):
        contingency_table(np.ones(3, int), np.ones(3, int), mask=np.ones(2, bool))
    with pytest.raises(InputError, match="ignore_gt must hold labels >= 0"):
        ContingencyCounter(ignore_gt=(-1,))


class _SlabRecorder:
    """A lazy array that records the sections each read asks for."""

    def __init__(self, volume):
        self.volume, self.reads = volume, []

    @property
    def shape(self):
        return self.volume.shape

    @property
    def dtype(self):
        return self.volume.dtype

    def __getitem__(self, index):
        self.reads.append(index)
        return self.volume[index]


@pytest.mark.parametrize("per_section", [False, True])
def test_evaluate_from_file_slabs_equals_whole_arrays(tmp_path, per_section):
    h5py = pytest.importorskip("h5py")
    from emkit.io import open_volume

    gt, seg = _label_pair("blobby", np.random.default_rng(3), shape=(9, 30, 40))
    gt, seg = gt.astype(np.uint64), seg.astype(np.uint32)
    path = tmp_path / "vols.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gt", data=gt, chunks=(1, 30, 40))
        f.create_dataset("seg", data=seg, chunks=(1, 30, 40))
    whole = evaluate(seg, gt, voxel_size_nm=(40, 4, 4), per_section=per_section)
    pred = _SlabRecorder(open_volume(f"{path}:seg"))
    truth = _SlabRecorder(open_volume(f"{path}:gt"))
    slabs = evaluate(
        pred, truth, voxel_size_nm=(40, 4, 4), per_section=per_section, slab_voxels=2 * 30 * 40
    )
    assert slabs == whole  # exactly, every metric
    assert whole["cremi_score"] is not None and 0 < whole["adapted_rand_error"] < 1
    # read once, two sections at a time, never the whole volume
    assert pred.reads == [slice(z, min(z + 2, 9)) for z in range(0, 9, 2)]
    assert truth.reads == pred.reads
    table = contingency_table(open_volume(f"{path}:seg"), open_volume(f"{path}:gt"),
                              slab_voxels=1)
    _same_table(table, contingency_table(seg, gt))
    assert cremi_score(pred, truth, voxel_size_nm=(40, 4, 4), slab_voxels=1) == cremi_score(
        seg, gt, voxel_size_nm=(40, 4, 4)
    )


# --- CREMI ---------------------------------------------------------------------------


def _cremi_reference(seg, gt, max_dist_px):
    """cremi_python's NeuronIds recomputed with dense loops and its published formulas."""
    from scipy import ndimage

    gt = gt.astype(np.int64).copy()
    for z in range(gt.shape[0]):  # border mask, as in cremi/evaluation/border_mask.py
        s = gt[z]
        p = np.pad(s, 1, mode="edge")
        inside = (s == p[:-2, 1:-1]) & (s == p[2:, 1:-1]) & (s == p[1:-1, :-2]) & (s == p[1:-1, 2:])
        masked = ndimage.distance_transform_edt(inside) <= max_dist_px
        s[masked] = -1
    gt = gt + 1  # masked -> 0, every label up by one, as NeuronIds does
    n = seg.size
    a_ids = np.unique(gt)
    b_ids = np.unique(seg)
    table = np.zeros((a_ids.max() + 1, b_ids.max() + 1))
    np.add.at(table, (gt.ravel(), seg.ravel()), 1)
    a = table[1:, :]
    b = table[1:, 1:]
    c = table[1:, 0]
    sum_a = (a.sum(1) ** 2).sum()
    sum_b = (b.sum(0) ** 2).sum() + c.sum() / n
    sum_ab = (b**2).sum() + c.sum() / n
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    arand = 1 - 2 * precision * recall / (precision + recall)
    keep = gt.ravel() > 0  # voi ignores ground truth 0 (the masked voxels) only
    x, y = seg.ravel()[keep], gt.ravel()[keep]
    pxy = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(pxy, (x, y), 1)
    pxy /= pxy.sum()
    px, py = pxy.sum(1), pxy.sum(0)
    nz = pxy > 0
    h_xy = -(pxy[nz] * np.log2(pxy[nz])).sum()
    h_x = -(px[px > 0] * np.log2(px[px > 0])).sum()
    h_y = -(py[py > 0] * np.log2(py[py > 0])).sum()
    split, merge = h_xy - h_y, h_xy - h_x
    return np.sqrt((split + merge) * arand), arand, split, merge


@pytest.mark.parametrize("seed", range(3))
def test_cremi_score_matches_cremi_python_formulas(seed):
    rng = np.random.default_rng(seed)
    gt = np.kron(rng.integers(1, 6, (3, 4, 4)), np.ones((1, 5, 5), int))  # blocky objects
    seg = np.kron(rng.integers(0, 4, (3, 5, 5)), np.ones((1, 4, 4), int))  # with label 0
    ours = cremi_score(seg, gt, voxel_size_nm=(40, 4, 4), border_threshold_nm=4.0, unlabelled=None)
    ref = _cremi_reference(seg, gt, 1.0)
    assert ours.cremi_score == pytest.approx(ref[0], abs=1e-12)
    assert ours.adapted_rand_error == pytest.approx(ref[1], abs=1e-12)
    assert (ours.voi_split, ours.voi_merge) == pytest.approx(ref[2:], abs=1e-12)


def test_cremi_border_mask_distance():
    gt = np.zeros((1, 1, 9), int)
    gt[..., 5:] = 1
    # boundary pixels 4 and 5; distance <= 2 masks pixels 2..7
    assert border_mask(gt, 2.0)[0, 0].astype(int).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0]


def test_cremi_perfect_segmentation_scores_zero():
    gt = np.kron(np.arange(1, 17).reshape(1, 4, 4), np.ones((2, 8, 8), int))
    s = cremi_score(gt * 3, gt, voxel_size_nm=(40, 4, 4))
    assert s.cremi_score == 0.0 and s.adapted_rand_error == pytest.approx(0.0, abs=1e-15)


# --- ISBI V_rand / V_info --------------------------------------------------------------


def test_thinning_leaves_one_pixel_lines():
    b = np.ones((1, 5, 9), np.float32)
    b[:, :, :3] = 0.0
    b[:, :, 6:] = 0.0  # two interiors separated by a three-pixel membrane
    seg = thinned_segmentation(b, 0.5)
    assert set(np.unique(seg[0, :, :3])) == {1} and set(np.unique(seg[0, :, 6:])) == {2}
    assert (seg[0] == 0).sum(axis=1).tolist() == [1] * 5


def test_isbi_perfect_boundary_map_scores_one(shared_data):
    tifffile = pytest.importorskip("tifffile")
    from emkit.targets import isbi_labels_to_boundaries, isbi_labels_to_seg

    labels = tifffile.imread(shared_data / "isbi2012" / "train-labels.tif")[:2]
    boundaries = isbi_labels_to_boundaries(labels).astype(np.float32)
    scores = isbi_scores(boundaries, isbi_labels_to_seg(labels))
    assert scores.v_rand == pytest.approx(1.0, abs=1e-12)
    assert scores.v_info == pytest.approx(1.0, abs=1e-12)


def test_isbi_best_threshold_beats_a_bad_one():
    # one 10x10 object split by a faint line (0.3): thresholds above 0.3 keep it whole
    b = np.zeros((1, 10, 10), np.float32)
    b[0, :, 5] = 0.3
    gt = np.ones((1, 10, 10), np.uint32)
    scores = isbi_scores(b, gt)
    assert scores.v_rand == pytest.approx(1.0)
    assert scores.v_rand_threshold > 0.3
    low = scores.per_threshold[0.2][0]
    assert low.split < 0.6  # split in two at 0.2


def test_v_info_is_mutual_information_ratio():
    table = contingency_table(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]))
    info = info_from_table(table)
    # H(gt) = 0, so I = 0 and V_info = 0
    assert info.v_info == 0.0 and info.split == 1.0


# --- evaluate() ------------------------------------------------------------------------


def test_evaluate_segmentation_keys_and_nulls():
    gt = np.kron(np.arange(1, 5).reshape(1, 2, 2), np.ones((2, 4, 4), np.uint32))
    result = evaluate(gt, gt, voxel_size_nm=(40, 4, 4))
    assert result["pixel_error"] is None
    assert result["rand_error"] == 1.0 and result["adapted_rand_error"] == 0.0
    assert result["voi_split"] == 0.0 and result["voi_merge"] == 0.0
    assert result["cremi_score"] == 0.0
    subset = evaluate(gt, gt, metrics=("voi_split",))
    assert subset["voi_split"] == 0.0 and subset["rand_error"] is None


def test_evaluate_boundary_map_against_isbi_labels():
    labels = np.full((1, 6, 6), 255, np.uint8)
    labels[0, :, 3] = 0
    pred = (labels == 0).astype(np.float32)
    result = evaluate(pred, labels)
    assert result["gt_kind"] == "isbi" and result["pred_kind"] == "boundaries"
    assert result["pixel_error"] == 0.0
    assert result["v_rand"] == 1.0 and result["rand_error"] == 1.0
    assert result["adapted_rand_error"] is None and result["cremi_score"] is None
    inverted = evaluate(1.0 - pred, labels, invert=True)
    assert inverted["pixel_error"] == 0.0


def test_evaluate_rejects_bad_input():
    gt = np.ones((1, 4, 4), np.uint32)
    with pytest.raises(InputError, match="does not match"):
        evaluate(np.ones((1, 4, 5), np.uint32), gt)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        evaluate(np.full((1, 4, 4), 2.0, np.float32), gt)
    with pytest.raises(InputError, match="integer labels"):
        evaluate(gt, gt.astype(np.float32))
    with pytest.raises(InputError, match="unknown metrics"):
        evaluate(gt, gt, metrics=("accuracy",))
    with pytest.raises(InputError, match="negative"):
        evaluate(-np.ones((1, 4, 4), np.int32), gt)
    with pytest.raises(InputError, match="unexpected values 7"):
        evaluate(gt, np.full((1, 4, 4), 7, np.uint64), gt_kind="isbi")
