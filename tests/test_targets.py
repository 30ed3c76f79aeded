"""Tests for emkit.targets: exact answers on tiny arrays, brute-force references, real data."""

import doctest
import itertools
from pathlib import Path

import numpy as np
import pytest

import emkit.targets.affinities
import emkit.targets.boundaries
import emkit.targets.isbi
import emkit.targets.labels
from emkit.errors import InputError
from emkit.targets import (
    DEFAULT_OFFSETS,
    affinities_to_boundaries,
    boundaries_to_seg,
    isbi_labels_to_boundaries,
    isbi_labels_to_seg,
    relabel_consecutive,
    relabel_sections,
    seg_to_affinities,
    seg_to_boundaries,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ISBI_LABELS = DATA / "isbi2012" / "train-labels.tif"


def readonly(arr):
    """A read-only copy, so that any attempt to write into an input fails loudly."""
    arr = np.array(arr)
    arr.flags.writeable = False
    return arr


# A 1x4x4 seg with two objects (1 left, 2 right) and two unlabelled voxels.
SEG_1x4x4 = readonly(
    [[[1, 1, 2, 2],
      [1, 1, 2, 2],
      [1, 0, 2, 2],
      [1, 1, 0, 2]]]
)  # fmt: skip


# ----------------------------------------------------------------------------- brute force


def affinities_reference(seg, offsets):
    """Python-loop reference: affinity and mask of every voxel and offset."""
    affs = np.zeros(seg.shape + (len(offsets),), np.float32)
    mask = np.zeros_like(affs)
    for c, d in enumerate(offsets):
        for v in itertools.product(*map(range, seg.shape)):
            u = tuple(a - b for a, b in zip(v, d))
            if all(0 <= a < n for a, n in zip(u, seg.shape)) and seg[v] != 0 and seg[u] != 0:
                mask[v + (c,)] = 1
                affs[v + (c,)] = float(seg[v] == seg[u])
    return affs, mask


def boundaries_reference(seg, thickness, axes):
    """Python-loop reference: 0, or another label within city-block distance along axes."""
    out = np.zeros(seg.shape, np.uint8)
    for v in itertools.product(*map(range, seg.shape)):
        if seg[v] == 0:
            out[v] = 1
            continue
        for u in itertools.product(*map(range, seg.shape)):
            if any(u[a] != v[a] for a in range(seg.ndim) if a not in axes):
                continue
            if sum(abs(p - q) for p, q in zip(u, v)) <= thickness and seg[u] != seg[v]:
                out[v] = 1
                break
    return out


# ----------------------------------------------------------------------------- affinities


def test_seg_to_affinities_exact_1x4x4():
    affs, mask = seg_to_affinities(SEG_1x4x4)
    assert affs.shape == mask.shape == (1, 4, 4, 3)
    assert affs.dtype == mask.dtype == np.float32
    # z: a single section, every z-edge leaves the volume.
    assert not affs[..., 0].any() and not mask[..., 0].any()
    # y: voxel (y, x) against (y - 1, x); row 0 leaves the volume.
    np.testing.assert_array_equal(
        affs[0, ..., 1], [[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 0, 1]]
    )
    np.testing.assert_array_equal(
        mask[0, ..., 1], [[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 0, 1]]
    )
    # x: voxel (y, x) against (y, x - 1); column 0 leaves the volume.
    np.testing.assert_array_equal(
        affs[0, ..., 2], [[0, 1, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1], [0, 1, 0, 0]]
    )
    np.testing.assert_array_equal(
        mask[0, ..., 2], [[0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 0, 0]]
    )


def test_seg_to_affinities_negative_long_range_and_too_long_offsets_2d():
    seg = readonly([[1, 1, 2, 1]])
    affs, mask = seg_to_affinities(seg, [(0, -1), (0, 2), (0, 4), (1, 0)], dtype=np.uint8)
    assert affs.shape == (1, 4, 4) and affs.dtype == mask.dtype == np.uint8
    np.testing.assert_array_equal(affs[0].T, [[1, 0, 0, 0], [0, 0, 0, 1], [0] * 4, [0] * 4])
    np.testing.assert_array_equal(mask[0].T, [[1, 1, 1, 0], [0, 0, 1, 1], [0] * 4, [0] * 4])


def test_seg_to_affinities_2d_defaults_and_channels_last():
    affs, mask = seg_to_affinities(readonly([[1, 1], [1, 2]]))
    assert affs.shape == (2, 2, 2)
    np.testing.assert_array_equal(affs[..., 0], [[0, 0], [1, 0]])  # (1, 0): against y - 1
    np.testing.assert_array_equal(affs[..., 1], [[0, 1], [0, 0]])  # (0, 1): against x - 1
    np.testing.assert_array_equal(mask[..., 1], [[0, 1], [0, 1]])
    assert affs.flags.c_contiguous


@pytest.mark.parametrize("seed", [0, 1])
def test_seg_to_affinities_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    seg = readonly(rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint16))
    assert (seg == 0).any()
    offsets = [
        *DEFAULT_OFFSETS, (2, 0, 0), (0, 3, 0), (0, 0, 3),  # long range
        (-1, 0, 0), (0, -2, 1), (1, -1, -3),  # negative and mixed
        (0, 0, 9), (-5, 0, 0),  # longer than the volume: all masked
    ]  # fmt: skip
    affs, mask = seg_to_affinities(seg, offsets)
    ref_affs, ref_mask = affinities_reference(seg, offsets)
    np.testing.assert_array_equal(affs, ref_affs)
    np.testing.assert_array_equal(mask, ref_mask)
    assert not mask[..., -2:].any()
    # Same answer for a non-contiguous view of the same labels.
    strided = np.asfortranarray(seg)
    np.testing.assert_array_equal(seg_to_affinities(strided, offsets)[0], affs)


def test_seg_to_affinities_masks_label_zero_and_volume_edges():
    seg = readonly(np.ones((3, 3, 3), np.int32))
    affs, mask = seg_to_affinities(seg)
    # All labelled, one object: every inside edge is 1, exactly the edges leaving are masked.
    np.testing.assert_array_equal(affs, mask)
    assert mask[0, :, :, 0].sum() == 0 and mask[1:, :, :, 0].all()
    seg0 = np.ones((3, 3, 3), np.int32)
    seg0[1, 1, 1] = 0
    affs0, mask0 = seg_to_affinities(readonly(seg0))
    # The centre voxel's own edges and the edges of its upper neighbours pointing at it.
    assert not mask0[1, 1, 1].any()
    assert mask0[2, 1, 1, 0] == 0 and mask0[1, 2, 1, 1] == 0 and mask0[1, 1, 2, 2] == 0
    assert mask.sum() - mask0.sum() == 6 and not (affs0 > mask0).any()


@pytest.mark.parametrize(
    ("seg", "offsets", "match"),
    [
        (
            np.zeros((2, 2), np.float32),
            None,
            r"seg must have an integer or bool dtype, got float32",
        ),
        (np.zeros((1, 2, 2, 2), np.int32), None, r"seg must be 2D or 3D, got shape \(1, 2, 2, 2\)"),
        (np.zeros((2, 2, 2), np.int32), [(0, 1)], r"3 values each .* got 2 .*\(0, dy, dx\)"),
        (np.zeros((2, 2, 2), np.int32), [(1, 0, 0), (0, 0, 0)], r"zero offset.*entry 1"),
        (np.zeros((2, 2, 2), np.int32), [], r"non-empty list of integer 3-tuples"),
        (np.zeros((2, 2, 2), np.int32), [(0.5, 0, 0)], r"integer 3-tuples.*float64"),
        (np.zeros((2, 2, 2), np.int32), [(1, 0, 0), (0, 1)], r"ragged"),
        ([[1, 2]], None, r"seg must be a numpy ndarray, got list"),
    ],
)
def test_seg_to_affinities_rejects_bad_input(seg, offsets, match):
    with pytest.raises(InputError, match=match):
        seg_to_affinities(seg, offsets)


def test_seg_to_affinities_rejects_bad_dtype():
    with pytest.raises(InputError, match="dtype must be a numeric or bool dtype, got complex"):
        seg_to_affinities(np.ones((2, 2), np.int32), dtype=np.complex64)


# ----------------------------------------------------------------------------- affs -> boundaries


def test_affinities_to_boundaries_exact():
    affs = np.zeros((1, 2, 2, 4), np.float32)
    affs[0, ..., 0] = 0.75
    affs[0, ..., 1] = [[1, 0.5], [0, 1]]
    affs[0, ..., 2] = [[1, 1], [0.5, 0]]
    affs[0, ..., 3] = [[0.25, 0.25], [0.75, 0.75]]
    affs = readonly(affs)
    mean = affinities_to_boundaries(affs)
    assert mean.shape == (1, 2, 2) and mean.dtype == np.float32
    np.testing.assert_allclose(mean[0], [[0, 0.25], [0.75, 0.5]])
    np.testing.assert_allclose(affinities_to_boundaries(affs, reduce="min")[0], [[0, 0.5], [1, 1]])
    np.testing.assert_allclose(affinities_to_boundaries(affs, channels=[0])[0], 0.25)
    offsets = [*DEFAULT_OFFSETS, (0, 0, 3)]
    np.testing.assert_allclose(
        affinities_to_boundaries(affs, channels=[(0, 0, 3)], offsets=offsets)[0],
        [[0.75, 0.75], [0.25, 0.25]],
    )
    np.testing.assert_allclose(affinities_to_boundaries(affs, channels=[(1, 0, 0)])[0], 0.25)


def test_seg_affinities_boundaries_roundtrip():
    affs, _ = seg_to_affinities(SEG_1x4x4, dtype=np.uint8)
    out = affinities_to_boundaries(affs)
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out[0], [[1, 0.5, 1, 0.5], [0.5, 0, 0.5, 0], [0.5, 1, 0.5, 0], [0.5, 0.5, 1, 0.5]]
    )
    # 2D affinities default to channels (1, 0) and (0, 1).
    affs2d, _ = seg_to_affinities(SEG_1x4x4[0])
    np.testing.assert_allclose(affinities_to_boundaries(affs2d), out[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduce": "max"}, r"reduce must be one of \['mean', 'min'\], got 'max'"),
        ({"channels": [3]}, r"channels entry 3 is out of range .* \(3 channels\)"),
        ({"channels": [(0, 0, 3)]}, r"\(0, 0, 3\) is neither .* offsets: \[\(1, 0, 0\)"),
        ({"channels": []}, r"channels must be a non-empty sequence"),
        ({"offsets": [(1, 0, 0)]}, r"one offset per channel .* 3 channels\), got 1"),
    ],
)
def test_affinities_to_boundaries_rejects_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        affinities_to_boundaries(np.ones((1, 2, 2, 3), np.float32), **kwargs)


# ----------------------------------------------------------------------------- seg -> boundaries


def test_seg_to_boundaries_exact_2d():
    seg = readonly(
        [[1, 1, 1, 2, 2],
         [1, 1, 1, 2, 2],
         [1, 1, 0, 2, 2],
         [3, 3, 3, 3, 3]]
    )  # fmt: skip
    out = seg_to_boundaries(seg)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(
        out, [[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    )
    np.testing.assert_array_equal(seg_to_boundaries(seg, thickness=0), seg == 0)


def test_seg_to_boundaries_thickness_is_per_side():
    seg = readonly([[1, 1, 1, 1, 2, 2, 2]])
    expected = {
        0: [0, 0, 0, 0, 0, 0, 0],
        1: [0, 0, 0, 1, 1, 0, 0],
        2: [0, 0, 1, 1, 1, 1, 0],
        3: [0, 1, 1, 1, 1, 1, 1],
    }
    for thickness, row in expected.items():
        np.testing.assert_array_equal(seg_to_boundaries(seg, thickness=thickness)[0], row)


def test_seg_to_boundaries_per_section():
    seg = readonly([[[1, 1]], [[2, 2]]])  # two sections, one label each
    assert not seg_to_boundaries(seg).any()
    assert seg_to_boundaries(seg, per_section=False).all()


@pytest.mark.parametrize(
    ("thickness", "per_section"), [(1, True), (2, True), (1, False), (3, False)]
)
def test_seg_to_boundaries_matches_brute_force(thickness, per_section):
    seg = readonly(np.random.default_rng(3).integers(0, 3, size=(3, 5, 6)))
    axes = (1, 2) if per_section else (0, 1, 2)
    out = seg_to_boundaries(seg, thickness=thickness, per_section=per_section)
    np.testing.assert_array_equal(out, boundaries_reference(seg, thickness, axes))


@pytest.mark.parametrize("thickness", [-1, 1.5, True, "1"])
def test_seg_to_boundaries_rejects_bad_thickness(thickness):
    with pytest.raises(InputError, match=r"thickness must be an integer >= 0, got"):
        seg_to_boundaries(np.ones((2, 2), np.int32), thickness=thickness)


# ----------------------------------------------------------------------------- boundaries -> seg


def test_boundaries_to_seg_exact_per_section():
    bnd = readonly(
        [[[0, 1, 0],
          [0, 1, 0],
          [1, 1, 0]],
         [[0, 0, 0],
          [1, 1, 1],
          [0, 1, 0]]]
    )  # fmt: skip
    seg = boundaries_to_seg(bnd)
    assert seg.dtype == np.uint64
    np.testing.assert_array_equal(
        seg,
        [[[1, 0, 2], [1, 0, 2], [0, 0, 2]],
         [[3, 3, 3], [0, 0, 0], [4, 0, 5]]],
    )  # fmt: skip
    # Ids follow C order whatever the memory layout of the input.
    np.testing.assert_array_equal(boundaries_to_seg(np.asfortranarray(bnd)), seg)
    transposed = np.ascontiguousarray(bnd.transpose(0, 2, 1)).transpose(0, 2, 1)
    # In 3D (6-connected) the top row of section 1 joins both columns of section 0.
    np.testing.assert_array_equal(
        boundaries_to_seg(transposed, per_section=False),
        [[[1, 0, 1], [1, 0, 1], [0, 0, 1]],
         [[1, 1, 1], [0, 0, 0], [2, 0, 1]]],
    )  # fmt: skip


def test_boundaries_to_seg_connectivity_3d_and_threshold():
    diagonal = readonly([[0, 1], [1, 0]])
    np.testing.assert_array_equal(boundaries_to_seg(diagonal), [[1, 0], [0, 2]])
    np.testing.assert_array_equal(boundaries_to_seg(diagonal, connectivity=2), [[1, 0], [0, 1]])
    stack = readonly([[[0, 1]], [[0, 0]]])
    np.testing.assert_array_equal(boundaries_to_seg(stack), [[[1, 0]], [[2, 2]]])
    np.testing.assert_array_equal(boundaries_to_seg(stack, per_section=False), [[[1, 0]], [[1, 1]]])
    corner = np.ones((2, 2, 2), np.float32)
    corner[0, 0, 0] = corner[1, 1, 1] = 0
    assert boundaries_to_seg(corner, per_section=False, connectivity=2).max() == 2
    assert boundaries_to_seg(corner, per_section=False, connectivity=3).max() == 1
    soft = readonly(np.array([[0.2, 0.5, 0.7, 0.1, np.nan]]))
    np.testing.assert_array_equal(boundaries_to_seg(soft), [[1, 0, 0, 2, 0]])
    np.testing.assert_array_equal(boundaries_to_seg(soft, threshold=0.6), [[1, 1, 0, 2, 0]])


def test_boundaries_to_seg_inverts_seg_to_boundaries():
    seg = np.repeat(np.repeat(np.arange(1, 10).reshape(1, 3, 3), 4, axis=1), 4, axis=2)
    seg = readonly(np.concatenate([seg, seg + 9]))  # 2 sections of 3x3 blocks of 4x4
    recovered = boundaries_to_seg(seg_to_boundaries(seg))
    assert recovered.max() == 18
    # Each block keeps its interior (the 2x2 core of a central block) under its own id.
    np.testing.assert_array_equal(recovered[:, 5:7, 5:7], np.full((2, 2, 2), [[[5]], [[14]]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"connectivity": 3},
            r"connectivity must be one of \[1, 2\] for 2D or per-section .* got 3",
        ),
        ({"connectivity": 0, "per_section": False}, r"one of \[1, 2, 3\] for 3D labelling, got 0"),
        ({"threshold": "0.5"}, r"threshold must be a real number, got '0.5'"),
    ],
)
def test_boundaries_to_seg_rejects_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        boundaries_to_seg(np.zeros((2, 2, 2), np.float32), **kwargs)


# ----------------------------------------------------------------------------- relabelling


def test_relabel_consecutive_exact():
    seg = readonly(np.array([[0, 7, 3], [7, 100, 0]], np.uint32))
    out, mapping = relabel_consecutive(seg)
    np.testing.assert_array_equal(out, [[0, 2, 1], [2, 3, 0]])
    assert out.dtype == np.uint32 and mapping == {0: 0, 3: 1, 7: 2, 100: 3}
    out, mapping = relabel_consecutive(seg, start=10)
    np.testing.assert_array_equal(out, [[0, 11, 10], [11, 12, 0]])
    signed, mapping = relabel_consecutive(readonly(np.array([-5, 0, 4, -5], np.int16)))
    np.testing.assert_array_equal(signed, [1, 0, 2, 1])
    assert mapping == {0: 0, -5: 1, 4: 2}


def test_relabel_consecutive_upcasts_and_matches_skimage():
    from skimage.segmentation import relabel_sequential

    crowded = readonly(np.arange(200, dtype=np.uint8))
    out, mapping = relabel_consecutive(crowded, start=100)
    assert out.dtype == np.uint64 and out[-1] == 298 and mapping[199] == 298
    seg = readonly(np.random.default_rng(4).integers(0, 2**40, size=(4, 30, 30)) // 2**30)
    out, _ = relabel_consecutive(seg)
    np.testing.assert_array_equal(out, relabel_sequential(seg.copy())[0])
    assert relabel_consecutive(np.zeros((0, 3), np.uint8))[0].shape == (0, 3)


def test_relabel_sections_exact():
    seg = readonly([[[5, 0, 5]], [[5, 9, 9]], [[0, 0, 0]], [[1, 1, 2]]])
    out, mappings = relabel_sections(seg, start=1)
    assert out.dtype == np.uint64
    np.testing.assert_array_equal(out, [[[1, 0, 1]], [[2, 3, 3]], [[0, 0, 0]], [[4, 4, 5]]])
    assert mappings == [{0: 0, 5: 1}, {0: 0, 5: 2, 9: 3}, {0: 0}, {0: 0, 1: 4, 2: 5}]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: relabel_consecutive(np.ones(3, np.float64)), r"seg must have an integer or bool"),
        (
            lambda: relabel_consecutive(np.ones(3, np.int32), start=0),
            r"start must be an integer >= 1",
        ),
        (
            lambda: relabel_sections(np.ones((2, 2), np.int32)),
            r"seg must be 3D, got shape \(2, 2\)",
        ),
    ],
)
def test_relabel_rejects_bad_input(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ----------------------------------------------------------------------------- ISBI 2012


def test_isbi_labels_exact():
    labels = readonly(np.array(
        [[[255, 255, 0, 255],
          [255, 255, 0, 255],
          [0, 0, 0, 255]],
         [[255, 0, 255, 0],
          [0, 255, 0, 255],
          [255, 0, 255, 0]]], np.uint8)
    )  # fmt: skip
    bnd = isbi_labels_to_boundaries(labels)
    assert bnd.dtype == np.uint8
    np.testing.assert_array_equal(bnd, labels == 0)
    seg = isbi_labels_to_seg(labels)
    assert seg.dtype == np.uint64
    np.testing.assert_array_equal(seg[0], [[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 2]])
    # A checkerboard has no 4-connected neighbours: 6 single-pixel cells, ids 3..8.
    np.testing.assert_array_equal(seg[1], [[3, 0, 4, 0], [0, 5, 0, 6], [7, 0, 8, 0]])
    floats = labels.astype(np.float32)
    np.testing.assert_array_equal(isbi_labels_to_seg(floats), seg)
    np.testing.assert_array_equal(isbi_labels_to_seg(labels[0]), seg[0])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0, 128, 255, 7]], np.uint8), r"unexpected values 7, 128$"),
        (np.array([[0, 1, 1]], np.uint8), r"unexpected values 1; 0/1 labels are ambiguous"),
        (np.array([[True, False]]), r"got a bool array of shape \(1, 2\)"),
        (np.array([[0.0, np.nan]]), r"dtype float64 with unexpected values nan"),
        (np.zeros((1, 1, 2, 2), np.uint8), r"labels must be 2D or 3D, got shape \(1, 1, 2, 2\)"),
    ],
)
def test_isbi_labels_reject_other_values(labels, match):
    with pytest.raises(InputError, match=match):
        isbi_labels_to_boundaries(labels)
    with pytest.raises(InputError, match=match):
        isbi_labels_to_seg(labels)


@pytest.mark.skipif(not ISBI_LABELS.exists(), reason=f"shared ISBI 2012 data absent: {ISBI_LABELS}")
def test_isbi_real_labels():
    tifffile = pytest.importorskip("tifffile")
    labels = tifffile.imread(ISBI_LABELS)
    assert labels.shape == (25, 512, 512) and labels.dtype == np.uint8
    bnd = isbi_labels_to_boundaries(labels)
    assert bnd.mean() == pytest.approx(0.224, abs=5e-4)  # data README: 22.4% membrane
    seg = isbi_labels_to_seg(labels)
    ids_per_section = [np.unique(section[section != 0]) for section in seg]
    all_ids = np.concatenate(ids_per_section)
    assert len(np.unique(all_ids)) == len(all_ids)  # no id in two sections
    assert all_ids.min() == 1 and all_ids.max() == len(all_ids)  # consecutive from 1
    assert np.array_equal(seg == 0, bnd == 1)
    assert all(len(ids) > 50 for ids in ids_per_section)  # 88..137 cells per section


# ----------------------------------------------------------------------------- general


def test_inputs_are_not_mutated():
    seg = np.random.default_rng(5).integers(0, 3, size=(2, 4, 5)).astype(np.int64)
    before = seg.copy()
    affs, _ = seg_to_affinities(seg)
    affs_before = affs.copy()
    bnd = seg_to_boundaries(seg, thickness=2)
    bnd_before = bnd.copy()
    boundaries_to_seg(bnd)
    affinities_to_boundaries(affs)
    relabel_consecutive(seg)
    relabel_sections(seg)
    np.testing.assert_array_equal(seg, before)
    np.testing.assert_array_equal(affs, affs_before)
    np.testing.assert_array_equal(bnd, bnd_before)


@pytest.mark.parametrize("name", ["affinities", "boundaries", "labels", "isbi"])
def test_docstring_examples(name):
    module = getattr(emkit.targets, name)
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
