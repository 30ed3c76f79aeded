"""Tiles, mirror padding and blending weights: plain NumPy, exact answers."""

import itertools

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.inference import tta
from emkit.inference.tiling import (
    axis_starts,
    blend_window,
    iter_blocks,
    mirror_indices,
    read_mirrored,
    tile_grid,
)


def test_axis_starts_step_shift_and_centre():
    assert axis_starts(10, 4) == [0, 4, 6]
    assert axis_starts(10, 4, overlap=1) == [0, 3, 6]
    assert axis_starts(8, 4) == [0, 4]
    assert axis_starts(4, 4) == [0]
    assert axis_starts(3, 7) == [-2]  # centred: 2 before, 2 after
    # On a period (a U-Net's pooling product): the last tile overhangs instead of shifting.
    assert axis_starts(10, 4, period=4) == [0, 4, 8]
    assert axis_starts(23, 12, overlap=3, period=4) == [0, 8, 12]
    assert axis_starts(3, 12, period=4) == [-4]
    with pytest.raises(InputError, match="overlap"):
        axis_starts(10, 4, overlap=4)


def test_mirror_indices_are_numpy_reflect_also_past_one_period():
    assert mirror_indices(-3, 9, 4).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert mirror_indices(-2, 5, 1).tolist() == [0] * 5
    axis = np.arange(5)
    padded = np.pad(axis, (13, 17), mode="reflect")
    assert mirror_indices(-13, 35, 5).tolist() == padded.tolist()


@pytest.mark.parametrize(
    "start, shape",
    [((-4, -9, 3), (6, 20, 5)), ((1, 2, 3), (3, 3, 3)), ((-7, 5, -12), (19, 4, 30))],
)
def test_read_mirrored_is_the_crop_of_the_padded_volume(start, shape):
    raw = np.random.default_rng(0).random((5, 8, 7))
    pad = [(max(-s, 0), max(s + n - size, 0)) for s, n, size in zip(start, shape, raw.shape)]
    padded = np.pad(raw, pad, mode="reflect")
    crop = padded[tuple(slice(s + p[0], s + p[0] + n) for s, p, n in zip(start, pad, shape))]
    np.testing.assert_array_equal(read_mirrored(raw, start, shape), crop)


def test_read_mirrored_inside_is_a_view_and_keeps_channels():
    raw = np.arange(4 * 5 * 6 * 2).reshape(4, 5, 6, 2)
    inside = read_mirrored(raw, (1, 1, 1), (2, 3, 4))
    assert np.shares_memory(inside, raw) and inside.shape == (2, 3, 4, 2)
    edge = read_mirrored(raw, (0, -1, 0), (1, 2, 6))
    np.testing.assert_array_equal(edge[0, 0], raw[0, 1])


def test_blend_windows_are_positive_symmetric_and_peak_one():
    for blend in ("bump", "gaussian"):
        w = blend_window(9, blend)
        assert w.min() > 0 and w.max() == pytest.approx(1.0)
        np.testing.assert_allclose(w, w[::-1])
    assert blend_window(1, "bump").tolist() == [1.0]
    assert blend_window(1000, "bump").min() >= 1e-6  # no underflow at the tile's edge
    with pytest.raises(InputError, match="allowed: bump, gaussian, valid"):
        blend_window(4, "linear")


@pytest.mark.parametrize("blend", ["bump", "gaussian", "valid"])
@pytest.mark.parametrize(
    "volume, inp, out, overlap",
    [
        ((7, 31, 23), (9, 12, 12), (5, 8, 8), (2, 3, 3)),  # 3D, odd sizes, shifted last tiles
        ((5, 37, 29), (1, 14, 14), (1, 10, 10), 4),  # 2D model: one section per tile
        ((2, 3, 5), (6, 10, 10), (4, 8, 8), 1),  # volume smaller than one tile
    ],
)
def test_weights_sum_to_one_at_every_voxel(blend, volume, inp, out, overlap):
    grid = tile_grid(volume, inp, out, overlap=overlap, blend=blend)
    total = np.zeros(volume)
    covered = np.zeros(volume, int)
    for tile in grid.tiles():
        w = grid.weights(tile)
        assert w.shape == out and w.dtype == np.float32
        total[tile.write] += w[tile.write_in_output]
        covered[tile.write] += w[tile.write_in_output] > 0
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)
    if blend == "valid":
        assert (covered == 1).all()  # each voxel from exactly one tile


def test_valid_stitching_splits_overlaps_at_their_middle():
    grid = tile_grid((1, 1, 10), (1, 1, 4), (1, 1, 4), overlap=0, blend="valid")
    assert grid.starts[2] == (0, 4, 6)
    owned = [np.flatnonzero(w) + s for w, s in zip(grid.axis_weights(2), grid.starts[2])]
    # tiles 1 and 2 share [6, 8): each keeps the half nearer its centre
    assert [o.tolist() for o in owned] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    "blend, kept", [("bump", (0, 4, 8, 12)), ("valid", (4, 8, 12))]
)
def test_restricted_grid_keeps_the_tiles_of_a_box_with_their_weights(blend, kept):
    # y starts 0, 4, 8, 12, 16, 17 (tile 6, step 4); "valid" owners split at
    # 5, 9, 13, 17, 19: the box's y [5, 14) meets tiles 0-3, and tiles 1-3 own it.
    grid = tile_grid((5, 23, 19), (5, 10, 10), (3, 6, 6), overlap=(1, 2, 2), blend=blend)
    assert grid.starts[1] == (0, 4, 8, 12, 16, 17)
    box = (slice(1, 4), slice(5, 14), slice(0, 7))
    part = grid.restrict(box)
    assert part.volume_shape == (3, 9, 7) and part.blend == blend
    assert part.starts[1] == tuple(s - 5 for s in kept)
    total = np.zeros(part.volume_shape)
    for tile in part.tiles():
        start = tuple(s + b.start for s, b in zip(tile.output_start, box))
        index = tuple(starts.index(s) for starts, s in zip(grid.starts, start))
        whole = grid.tile(index)
        assert whole.input_start == tuple(s + b.start for s, b in zip(tile.input_start, box))
        # its write region: the whole grid's, cut to the box and shifted
        cut = [slice(max(w.start, b.start), min(w.stop, b.stop)) for w, b in zip(whole.write, box)]
        assert tile.write == tuple(slice(c.start - b.start, c.stop - b.start)
                                   for c, b in zip(cut, box))
        inner = tuple(slice(c.start - s, c.stop - s) for c, s in zip(cut, start))
        assert tile.write_in_output == inner
        # its weights there: the whole grid's
        np.testing.assert_array_equal(part.weights(tile)[inner], grid.weights(whole)[inner])
        total[tile.write] += part.weights(tile)[tile.write_in_output]
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)
    # the tiles kept are all that reach into the box with a non-zero weight
    reach = {t.index for t in grid.tiles()
             if (grid.weights(t)[t.write_in_output][
                 tuple(slice(max(b.start - w.start, 0), max(b.stop - w.start, 0))
                       for w, b in zip(t.write, box))] > 0).any()}
    assert len(part) == len(reach)


def test_restricted_grid_refuses_a_box_outside_the_volume():
    grid = tile_grid((5, 23, 19), (5, 10, 10), (3, 6, 6))
    for box in [(slice(0, 5), slice(0, 24), slice(0, 19)), (slice(0, 5), slice(3, 3), slice(0, 1)),
                (slice(0, 5), slice(0, 9))]:
        with pytest.raises(InputError, match="box: expected 3 slices"):
            grid.restrict(box)


def test_tiles_read_their_context_centred():
    grid = tile_grid((1, 10, 10), (1, 8, 8), (1, 4, 4), overlap=2)
    assert grid.shape == (1, 4, 4) and len(grid) == 16
    tile = grid.tile((0, 3, 1))
    assert tile.output_start == (0, 6, 2) and tile.input_start == (0, 4, 0)
    small = tile_grid((1, 3, 3), (1, 9, 9), (1, 7, 7)).tile((0, 0, 0))
    assert small.output_start == (0, -2, -2)
    assert small.write == (slice(0, 1), slice(0, 3), slice(0, 3))
    assert small.write_in_output == (slice(0, 1), slice(2, 5), slice(2, 5))


def test_blocks_cover_every_tile_once_within_budget():
    grid = tile_grid((9, 40, 33), (6, 10, 10), (4, 8, 8), overlap=2)
    for max_voxels in (1, 4 * 8 * 33, 10**9):
        blocks = list(iter_blocks(grid, max_voxels=max_voxels))
        indices = [t.index for b in blocks for t in b.tiles]
        assert sorted(indices) == sorted(itertools.product(*map(range, grid.shape)))
        for block in blocks:
            size = np.prod([s.stop - s.start for s in block.write])
            assert size <= max_voxels or len(block.tiles) == 1
            for tile in block.tiles:
                assert all(b.start <= w.start and w.stop <= b.stop
                           for w, b in zip(tile.write, block.write))
    assert len(list(iter_blocks(grid, max_voxels=10**9))) == 1


def test_tta_channel_moves_flip_shifts_and_transpose_swaps():
    offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 3)]
    flip_x = tta.Transform(flip=(False, False, True), transpose=False)
    assert tta.channel_moves(offsets, flip_x) == [
        (0, 0, None), (1, 1, None), (2, 2, (0, 0, 1)), (3, 3, (0, 0, 3))
    ]
    transpose = tta.Transform(flip=(False, False, False), transpose=True)
    with pytest.raises(InputError, match="not closed"):
        tta.channel_moves(offsets, transpose)  # (0, 3, 0) is missing
    assert tta.channel_moves(None, transpose) is None
    assert tta.normalize_offsets([(0, 1), (2, 0, 0)]) == [(0, 0, 1), (2, 0, 0)]


def test_tta_shifted_channel_is_the_unflipped_affinity():
    """aff(v, v - 1) along x from a flipped prediction, by hand, edge masked."""
    x = np.array([0.0, 1.0, 3.0, 6.0], np.float32).reshape(1, 1, 1, 4, 1)

    def run(batch):  # aff(v, v - 1) = -|x(v) - x(v - 1)|, 0 at v = 0 (no left neighbour)
        out = np.zeros_like(batch)
        out[..., 1:, :] = -np.abs(np.diff(batch, axis=3))
        return out

    transforms = [tta.Transform((False, False, False), False), tta.Transform((False, False, True), False)]
    got = tta.predict_tta(run, x, transforms=transforms, offsets=[(0, 0, 1)])
    np.testing.assert_array_equal(got.ravel(), [0.0, -1.0, -2.0, -3.0])
    assert len(tta.dihedral_transforms()) == 8 and len(tta.dihedral_transforms(flip_z=True)) == 16
