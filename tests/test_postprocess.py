"""Tests for emkit.postprocess: exact answers on tiny arrays, then the medulla cube."""

import doctest
from pathlib import Path

import numpy as np
import pytest

import emkit.postprocess
import emkit.postprocess.agglomeration
import emkit.postprocess.pipeline
import emkit.postprocess.rag
import emkit.postprocess.watershed
import emkit.postprocess.watershed2d
from emkit.errors import InputError
from emkit.metrics import adapted_rand_error
from emkit.postprocess import (
    RegionGraph,
    affinity_watershed,
    agglomerate,
    merge_history,
    noisy_affinities,
    region_graph,
    segment_affinities,
    watershed_2d,
)
from emkit.targets import seg_to_affinities

MEDULLA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / (
    "neuroproof_medulla/neuroproof_medulla.h5"
)


def line_affs(x_edges, fill=0.0):
    """Affinities of a (1, 1, len + 1) line; ``x_edges[i]`` joins voxels i and i + 1."""
    affs = np.full((1, 1, len(x_edges) + 1, 3), fill, np.float32)
    affs[0, 0, 1:, 2] = x_edges
    return affs


def same_partition(a, b):
    """True when two label volumes are equal up to renaming."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


@pytest.mark.parametrize(
    "module",
    [
        emkit.postprocess,
        emkit.postprocess.agglomeration,
        emkit.postprocess.pipeline,
        emkit.postprocess.rag,
        emkit.postprocess.watershed,
        emkit.postprocess.watershed2d,
    ],
)
def test_docstring_examples(module):
    failures, _ = doctest.testmod(module, extraglobs={"np": np})
    assert failures == 0


# ----------------------------------------------------------------------------- 3D watershed


def test_two_cubes_split_by_a_low_affinity_plane():
    affs = np.full((4, 4, 8, 3), 0.9, np.float32)
    affs[:, :, 4, 2] = 0.05  # x-edges between x = 3 and x = 4
    for options in ({}, {"size_threshold": 0}):
        fragments = affinity_watershed(affs, **options)
        assert fragments.dtype == np.uint64
        assert (fragments[..., :4] == 1).all() and (fragments[..., 4:] == 2).all()


def test_plateau_is_split_between_the_two_basins_it_separates():
    # Voxels 0-1 and 7-8 are joined strongly (two basins); voxels 2..6 form a plateau
    # of equal edges. The breadth-first search from the plateau's rim splits it.
    affs = line_affs([0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9])
    fragments = affinity_watershed(affs, size_threshold=0)
    assert fragments[0, 0].tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 2]


def test_plateau_without_exit_is_one_basin_and_high_edges_always_join():
    assert affinity_watershed(line_affs([0.7] * 5), size_threshold=0)[0, 0].tolist() == [1] * 6
    affs = line_affs([0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9])
    joined = affinity_watershed(affs, high=0.5, size_threshold=0)
    assert joined[0, 0].tolist() == [1] * 9


def test_voxels_whose_edges_are_all_cut_are_background():
    affs = line_affs([0.9, 0.0, 0.0, 0.9])
    assert affinity_watershed(affs, size_threshold=0)[0, 0].tolist() == [1, 1, 0, 2, 2]
    affs = line_affs([0.9, 0.25, 0.25, 0.9])  # <= low is cut
    assert affinity_watershed(affs, low=0.25, size_threshold=0)[0, 0].tolist() == [1, 1, 0, 2, 2]


def test_size_threshold_merges_small_regions_along_strong_edges():
    # A region of 30 voxels and one of 5, joined by one edge of affinity 0.6.
    affs = line_affs([0.9] * 29 + [0.6] + [0.9] * 4)
    big_small = [1] * 30 + [2] * 5
    assert affinity_watershed(affs)[0, 0].tolist() == [1] * 35  # 5 < 25, 0.6 >= 0.5
    assert affinity_watershed(affs, merge_threshold=0.7)[0, 0].tolist() == big_small
    assert affinity_watershed(affs, size_threshold=5)[0, 0].tolist() == big_small
    dusted = affinity_watershed(affs, merge_threshold=0.7, dust_size=6)
    assert dusted[0, 0].tolist() == [1] * 30 + [0] * 5


def test_watershed_reads_nearest_neighbour_channels_by_offset():
    affs = np.full((2, 2, 4, 3), 0.9, np.float32)
    affs[:, :, 2, 2] = 0.1
    expected = affinity_watershed(affs)
    shuffled = np.concatenate([affs[..., [2, 0, 1]], np.zeros_like(affs[..., :1])], axis=-1)
    offsets = [(0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 9, 9)]
    assert (affinity_watershed(shuffled, offsets=offsets) == expected).all()
    long_range = np.concatenate([affs, np.zeros_like(affs[..., :2])], axis=-1)
    assert (affinity_watershed(long_range) == expected).all()  # channels 3+ ignored


def test_watershed_accepts_channels_first_views_and_leaves_input_alone():
    rng = np.random.default_rng(0)
    affs = rng.random((6, 7, 8, 3), dtype=np.float32)
    before = affs.copy()
    view = np.moveaxis(np.ascontiguousarray(np.moveaxis(affs, -1, 0)), 0, -1)
    assert (affinity_watershed(view) == affinity_watershed(affs)).all()
    assert (affs == before).all()


@pytest.mark.parametrize(
    "affs, options, match",
    [
        (np.zeros((2, 2, 2), np.float32), {}, "shape"),
        (np.zeros((2, 2, 2, 2), np.float32), {}, "channels"),
        (np.zeros((2, 2, 2, 3), np.uint8), {}, "float"),
        (np.full((2, 2, 2, 3), 1.5, np.float32), {}, r"\[0, 1\]"),
        (np.full((2, 2, 2, 3), np.nan, np.float32), {}, r"\[0, 1\]"),
        (np.zeros((2, 2, 2, 3), np.float32), {"low": 0.6, "high": 0.5}, "low"),
        (np.zeros((2, 2, 2, 3), np.float32), {"size_threshold": -1}, "size_threshold"),
    ],
)
def test_watershed_rejects_bad_input(affs, options, match):
    with pytest.raises(InputError, match=match):
        affinity_watershed(affs, **options)


# ----------------------------------------------------------------------------- region graph


def test_region_graph_counts_sums_and_maxima_per_boundary():
    fragments = np.array([[[7, 3], [7, 3], [7, 7]]])  # ids need not be consecutive
    affs = np.ones((1, 3, 2, 3), np.float32)
    affs[0, 0, 1, 2], affs[0, 1, 1, 2] = 0.2, 0.4  # x-edges 7|3 in rows 0 and 1
    affs[0, 2, 1, 1] = 0.6  # y-edge between (1, 1) = 3 and (2, 1) = 7
    rag = region_graph(fragments, affs)
    assert rag.u.tolist() == [3] and rag.v.tolist() == [7]
    assert rag.count.tolist() == [3]
    assert rag.total[0] == pytest.approx(1.2)
    assert rag.mean[0] == pytest.approx(0.4)
    assert rag.maximum.tolist() == [pytest.approx(0.6)]


def test_region_graph_skips_label_zero_and_builds_histograms():
    fragments = np.array([[[1, 0, 2, 2, 1]]])
    affs = line_affs([0.5, 0.5, 1.0, 0.25])
    rag = region_graph(fragments, affs, bins=4)
    assert (rag.u.tolist(), rag.v.tolist(), rag.count.tolist()) == ([1], [2], [1])
    assert rag.histogram.tolist() == [[0, 1, 0, 0]]  # 0.25 falls in bin 1 of 4


# ----------------------------------------------------------------------------- agglomeration


def hand_rag():
    # (1, 2) mean 0.9; (1, 3) mean 0.8; (2, 3) mean 0.1; (3, 4) mean 0.3.
    return RegionGraph(
        u=np.array([1, 1, 2, 3]),
        v=np.array([2, 3, 3, 4]),
        count=np.array([4, 1, 3, 2]),
        total=np.array([3.6, 0.8, 0.3, 0.6]),
        maximum=np.array([0.95, 0.8, 0.2, 0.4], np.float32),
    )


def test_merge_history_recomputes_joined_boundaries_as_count_weighted_means():
    history = merge_history(hand_rag())
    # 1+2 first; then 3's boundaries with 1 and 2 join: (0.8 + 0.3) / (1 + 3) = 0.275,
    # so 3 merges with 4 (mean 0.3) before it joins 1+2 (score 1 - 0.275).
    assert history.score.tolist() == pytest.approx([0.1, 0.7, 0.725])
    merged = [{int(a), int(b)} for a, b in zip(history.a, history.b)]
    assert merged[:2] == [{1, 2}, {3, 4}]
    assert len(merge_history(hand_rag(), stop=0.7)) == 1  # scores >= stop are not merged


def test_agglomerate_merges_exactly_the_boundaries_above_the_threshold():
    fragments = np.array([[[1, 1, 2, 2, 3, 3, 4, 4]]])
    affs = line_affs([1, 0.8, 1, 0.45, 1, 0.5, 1])
    segs = agglomerate(fragments, affs, thresholds=[0.5, 0.6, 0.1])
    assert [s[0, 0].tolist() for s in segs] == [
        [1, 1, 1, 1, 2, 2, 3, 3],  # t = 0.5 merges means > 0.5 (0.5 itself is not)
        [1, 1, 1, 1, 1, 1, 1, 1],  # t = 0.6 merges means > 0.4
        [1, 1, 2, 2, 3, 3, 4, 4],  # t = 0.1 merges means > 0.9
    ]
    assert all(s.dtype == np.uint64 for s in segs)


def test_agglomerate_keeps_zero_and_quantile_scoring_reads_the_median():
    fragments = np.array([[[1, 1, 1, 1, 1, 0], [2, 2, 2, 2, 2, 0]]])
    affs = np.ones((1, 2, 6, 3), np.float32)
    affs[0, 1, :5, 1] = [0.0, 0.0, 0.7, 0.7, 0.7]  # the boundary 1|2: mean 0.42, median 0.7
    [by_mean] = agglomerate(fragments, affs, thresholds=[0.5])
    [by_median] = agglomerate(fragments, affs, thresholds=[0.5], scoring="quantile")
    assert by_mean[0].tolist() == [[1, 1, 1, 1, 1, 0], [2, 2, 2, 2, 2, 0]]
    assert by_median[0].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]]
    [kept] = agglomerate(fragments, affs, thresholds=[0.5], scoring="quantile", quantile=0.2)
    assert kept[0].tolist() == by_mean[0].tolist()  # the 20% quantile is 0


def test_segment_affinities_equals_watershed_then_agglomerate():
    rng = np.random.default_rng(3)
    gt = rng.integers(1, 5, (4, 6, 6)).repeat(2, axis=1).repeat(2, axis=2)
    affs = noisy_affinities(gt, seed=1, leaks=3)
    thresholds = [0.3, 0.6]
    segs, fragments = segment_affinities(affs, thresholds=thresholds, return_fragments=True)
    assert (fragments == affinity_watershed(affs)).all()
    for seg, other in zip(segs, agglomerate(fragments, affs, thresholds=thresholds)):
        assert same_partition(seg, other)


def test_matches_waterz_without_size_merging():
    waterz = pytest.importorskip("waterz")
    rng = np.random.default_rng(0)
    gt = rng.integers(1, 6, (3, 5, 5)).repeat(3, axis=0).repeat(3, axis=1).repeat(3, axis=2)
    affs = noisy_affinities(gt, seed=2)
    thresholds = [0.2, 0.5, 0.8]
    ours = segment_affinities(affs, thresholds=thresholds, size_threshold=0)
    channels_first = np.ascontiguousarray(np.moveaxis(affs, -1, 0))
    theirs = [s.copy() for s in waterz.agglomerate(channels_first, thresholds=thresholds)]
    for a, b in zip(ours, theirs):
        assert same_partition(a, b)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"thresholds": []}, "thresholds"),
        ({"thresholds": [1.5]}, "thresholds"),
        ({"scoring": "max"}, "scoring"),
        ({"quantile": 2.0}, "quantile"),
    ],
)
def test_agglomerate_rejects_bad_options(options, match):
    with pytest.raises(InputError, match=match):
        agglomerate(np.ones((1, 1, 2), np.uint64), np.ones((1, 1, 2, 3), np.float32), **options)


# ----------------------------------------------------------------------------- 2D watershed


def test_watershed_2d_seeds_ids_and_min_size():
    boundaries = np.zeros((2, 20, 41), np.float32)
    boundaries[:, :, 20] = 1.0
    boundaries[1, 9:11, 20] = 0.0  # section 1: a gap in the membrane
    by_threshold = watershed_2d(boundaries, seeds="threshold", min_size=0)
    by_distance = watershed_2d(boundaries, seeds="distance", min_size=0)
    assert np.unique(by_threshold[0]).tolist() == [1, 2]
    assert np.unique(by_threshold[1]).tolist() == [3]  # the gap joins the two seeds
    assert np.unique(by_distance[1]).tolist() == [3, 4]  # distance seeds split at the neck
    assert by_distance.dtype == np.uint64


def test_watershed_2d_absorbs_small_segments_and_takes_2d_input():
    boundaries = np.zeros((10, 12), np.float32)
    boundaries[:, 5] = 1.0  # left and right halves
    boundaries[1:5, 7:11] = 1.0
    boundaries[2:4, 8:10] = 0.0  # a 2 x 2 cell in a ring of membrane, on the right
    seg = watershed_2d(boundaries, min_size=0)
    assert seg.shape == (10, 12)
    assert np.bincount(seg.ravel()).tolist() == [0, 54, 58, 8]
    merged = watershed_2d(boundaries, min_size=20)
    assert np.bincount(merged.ravel()).tolist() == [0, 54, 66]  # the cell joins the right


@pytest.mark.parametrize(
    "boundaries, options, match",
    [
        (np.zeros(5, np.float32), {}, "shape"),
        (np.zeros((2, 2), np.uint8), {}, "float"),
        (np.full((2, 2), 2.0), {}, r"\[0, 1\]"),
        (np.zeros((2, 2)), {"seeds": "maxima"}, "seeds"),
    ],
)
def test_watershed_2d_rejects_bad_input(boundaries, options, match):
    with pytest.raises(InputError, match=match):
        watershed_2d(boundaries, **options)


# ----------------------------------------------------------------------------- real data


def test_noise_model_is_seeded_and_noisy():
    seg = np.arange(1, 9).reshape(2, 2, 2).repeat(4, 0).repeat(4, 1).repeat(4, 2)
    a = noisy_affinities(seg, seed=5)
    assert a.shape == seg.shape + (3,) and a.dtype == np.float32
    assert (a == noisy_affinities(seg, seed=5)).all()
    assert 0 < a.min() and a.max() < 1


@pytest.fixture(scope="module")
def medulla():
    if not MEDULLA.is_file():
        pytest.skip(f"shared medulla cube not found at {MEDULLA}")
    h5py = pytest.importorskip("h5py")
    with h5py.File(MEDULLA, "r") as f:
        gt = f["volumes/labels/neuron_ids"][:40, :128, :128]
    return gt, noisy_affinities(gt, seed=0)


def test_medulla_noise_is_a_real_test(medulla):
    import cc3d

    gt, affs = medulla
    exact, mask = seg_to_affinities(gt)
    boundary = (exact == 0) & (mask == 1)
    assert (affs[boundary] > 0.5).mean() > 0.03  # boundary edges read as "same object"
    assert (affs[exact == 1] < 0.5).mean() > 0.03  # interior edges read as "cut"
    naive = cc3d.connected_components(affs.mean(-1) > 0.5, connectivity=6)
    assert adapted_rand_error(naive.astype(np.uint64), gt) > 0.2


def test_medulla_segments_back_with_watershed_and_agglomeration(medulla):
    gt, affs = medulla
    [seg], fragments = segment_affinities(affs, thresholds=[0.5], return_fragments=True)
    assert adapted_rand_error(fragments, gt) > 0.05  # the watershed alone over-segments
    assert adapted_rand_error(seg, gt) < 0.05
    [seg_2] = agglomerate(fragments, affs, thresholds=[0.5])
    assert same_partition(seg, seg_2)


def test_blending_roundoff_above_one_passes_but_real_overshoot_is_refused():
    affs = np.ones((4, 6, 6, 3), np.float32)
    affs[:, :, 3, 2] = 0.0  # x-edges between x = 2 and x = 3
    rounded = affs.copy()
    rounded[affs == 1] = np.float32(1.0000001)  # what normalized tile blending gives
    np.testing.assert_array_equal(affinity_watershed(rounded), affinity_watershed(affs))
    with pytest.raises(InputError, match=r"values in \[0, 1\].*to 1\.00999"):
        affinity_watershed(np.where(affs == 1, np.float32(1.01), affs))
