r"""Tiles over a volume: read and write regions, mirror padding, blending weights.

Plain NumPy. Every tile has a *write* region (the model's output window, ``O``
voxels per axis) and a *read* region (its input window, ``I = O + c`` voxels,
the context ``c`` split ``c // 2`` before and the rest after)::

    volume        |0 .............................................. N)
    write         [  tile 0  ]
                          [  tile 1  ]                 step = O - overlap
                                  [  tile 2  ]
                                          [  tile 3  ] last tile shifted back
                                                       to end at N ("shift" fit)
    read       [c0|  tile 0  |c1]                      c0 = c // 2, c1 = c - c0
               |<-  outside 0: mirrored, raw[-k] = raw[k]

    period p > 1 (a U-Net's poolings): starts and step are multiples of p,
    and the last tile only shifts back to a multiple of p, overhanging N by
    less than p (its input mirrored there, its output cut):
    write         [  tile 0  ][  tile 1  ][  tile 2  ][  tile 3 :]

    small volume (N < O): one tile, centred, mirrored on both sides
    volume           |0 .. N)
    write         [    tile 0    ]
    read       [c0|    tile 0    |c1]

Mirroring is numpy's ``reflect`` (``d c b | a b c d | c b a``), extended
periodically when the pad is longer than the axis, so every tile sees exactly
the crop of ``np.pad(raw, pad, mode="reflect")`` that it would see if the whole
volume were padded first -- but only the blocks of tiles that touch an edge are
padded, each by itself (:func:`read_mirrored`, :func:`iter_blocks`). With tile
starts on the model's period, a tiled prediction of a network of valid
convolutions and poolings equals one pass over the whole mirrored volume.

Blending. Each tile's output is weighted by a separable window ``w`` (``bump``
or ``gaussian``), divided by the sum ``S`` of the windows of all tiles over each
voxel, so that the weights of the tiles covering a voxel sum to one by
construction::

    w, tile 0    __/^^^^\__
    w, tile 1          __/^^^^\__
    w_k(v) / S(v), summed over k = 1 everywhere in the volume

``valid`` stitching takes each voxel from exactly one tile: tile ``k`` owns the
voxels from the midpoint of its overlap with tile ``k - 1`` to the midpoint of
its overlap with tile ``k + 1``.

A box of the volume (a block of blockwise prediction) is predicted exactly as
the whole volume is by the grid's own tiles that reach into it, with the grid's
weights (:meth:`TileGrid.restrict`): tiles that straddle a face of the box are
computed by the boxes on both sides, each keeping its own part.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from emkit.errors import InputError

BLENDS = ("bump", "gaussian", "valid")

# Smallest window value, relative to the peak: keeps S > 0 at tile edges that no
# other tile covers (a bump is exp(-500) there for a 1000-voxel tile).
_FLOOR = 1e-6


# --------------------------------------------------------------------------- regions


def axis_starts(size: int, tile: int, overlap: int = 0, period: int = 1) -> list[int]:
    """Starts of the output tiles along one axis.

    Args:
        size: Length of the axis, in voxels.
        tile: Output tile length ``O``.
        overlap: Voxels shared by neighbouring tiles, ``0 <= overlap < tile``;
            rounded up so that the step ``tile - overlap`` is a multiple of ``period``.
        period: Starts are multiples of it: the shift under which the model is
            equivariant (the product of its poolings for a U-Net), so that every
            tile computes what one pass over the whole volume would.

    Returns:
        Tile starts with step ``tile - overlap``. The last one is shifted back to
        the last multiple of ``period`` at which it still reaches ``size`` (to
        end at ``size`` when ``period`` is 1; otherwise it may overhang by less
        than a period). An axis shorter than a tile gets one tile, centred (to
        the period), whose start is negative.

    >>> axis_starts(10, 4)
    [0, 4, 6]
    >>> axis_starts(10, 4, overlap=2)
    [0, 2, 4, 6]
    >>> axis_starts(10, 4, period=4)
    [0, 4, 8]
    >>> axis_starts(3, 7)
    [-2]
    """
    if not 0 <= overlap < tile:
        raise InputError(f"overlap: got {overlap} for a tile of {tile}; allowed: 0 to {tile - 1}")
    if period > tile:
        raise InputError(f"period: got {period} for a tile of {tile}; the tile must be at least one period")
    if size <= tile:
        return [-(((tile - size) // 2) // period) * period]
    step = max(period, (tile - overlap) // period * period)
    last = -(-(size - tile) // period) * period  # first multiple of period >= size - tile
    return [*range(0, last, step), last]


def mirror_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices into an axis of ``size`` for ``[start, start + length)``, mirrored outside it.

    Args:
        start: First index; may be negative.
        length: Number of indices.
        size: Length of the axis (mirrored about its first and last voxel, as
            ``np.pad(..., mode="reflect")``).

    >>> mirror_indices(-3, 9, 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1]
    """
    index = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def read_mirrored(raw, start, shape) -> np.ndarray:
    """A box of ``raw`` that may reach outside it, mirrored there.

    Only the part of ``raw`` that the mirrored box needs is read (for a lazy
    volume, only those voxels), so memory stays that of the box.

    Args:
        raw: ndarray or array-like (a :class:`~emkit.io.Volume`, a Zarr or HDF5
            array) whose first ``len(start)`` axes are spatial; any further axes
            (channels) are read whole.
        start: First voxel of the box, per spatial axis; may be negative.
        shape: Size of the box, per spatial axis.

    Returns:
        ndarray of shape ``(*shape, *raw.shape[len(start):])``, equal to the
        crop of ``np.pad(raw, ..., mode="reflect")``. A view of ``raw`` when the
        box lies inside an ndarray.
    """
    sizes = raw.shape[: len(start)]
    if all(0 <= s and s + n <= size for s, n, size in zip(start, shape, sizes)):
        return np.asarray(raw[tuple(slice(s, s + n) for s, n in zip(start, shape))])
    pads = [(max(-s, 0), max(s + n - size, 0)) for s, n, size in zip(start, shape, sizes)]
    if all(a < size and b < size for (a, b), size in zip(pads, sizes)):
        # One reflection at most on each side: read the inside and the voxels its
        # mirror images need, let np.pad mirror it, cut the box out.
        read, cut = [], []
        for s, n, (a, b), size in zip(start, shape, pads, sizes):
            lo, hi = s + a, s + n - b
            if a:
                hi = max(hi, a + 1)
            if b:
                lo = min(lo, size - 1 - b)
            read.append(slice(lo, hi))
            cut.append(slice(s - lo + a, s - lo + a + n))
        data = np.asarray(raw[tuple(read)])
        data = np.pad(data, [*pads, *[(0, 0)] * (data.ndim - len(start))], mode="reflect")
        return data[tuple(cut)]
    indices = [mirror_indices(s, n, size) for s, n, size in zip(start, shape, sizes)]
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in indices)
    data = np.asarray(raw[box])
    for axis, (index, b) in enumerate(zip(indices, box)):
        local = index - b.start
        if not np.array_equal(local, np.arange(len(local))):
            data = np.take(data, local, axis=axis)
    return data


# --------------------------------------------------------------------------- windows


def blend_window(length: int, blend: str) -> np.ndarray:
    """The 1D blending window of a tile of ``length`` voxels, peak 1.

    Args:
        length: Tile length.
        blend: ``"bump"`` (``exp(1 - 1 / (1 - u**2))``, ``u`` in (-1, 1) at voxel
            centres), ``"gaussian"`` (sigma = length / 8, as nnU-Net) or
            ``"valid"`` (all ones; ownership is decided by
            :meth:`TileGrid.axis_weights`).

    Returns:
        float64 ndarray of shape ``(length,)``, positive (at least 1e-6).
    """
    t = np.arange(length, dtype=np.float64) + 0.5
    if blend == "bump":
        u = 2.0 * t / length - 1.0
        window = np.exp(1.0 - 1.0 / (1.0 - u**2))
    elif blend == "gaussian":
        sigma = length / 8.0
        window = np.exp(-0.5 * ((t - length / 2.0) / sigma) ** 2)
    elif blend == "valid":
        window = np.ones(length)
    else:
        raise InputError(f"blend: got {blend!r}; allowed: {', '.join(BLENDS)}")
    return np.maximum(window, _FLOOR)


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`; axes ``(z, y, x)``.

    Attributes:
        index: Position of the tile in the grid, per axis.
        input_start: First voxel of the read region, in the volume; may be
            negative or reach past the end (mirrored there).
        output_start: First voxel of the write region (the output window).
        write: Slices of the volume that the output window covers, cut to it.
        write_in_output: The same region as slices of the output window.
    """

    index: tuple[int, int, int]
    input_start: tuple[int, int, int]
    output_start: tuple[int, int, int]
    write: tuple[slice, slice, slice]
    write_in_output: tuple[slice, slice, slice]


@dataclass(frozen=True)
class TileGrid:
    """Output tiles covering a volume, with their read regions and blending weights.

    Attributes:
        volume_shape: ``(Z, Y, X)``.
        input_shape: The model's input window ``I``, ``(z, y, x)`` (z = 1 for a
            2D model run section by section).
        output_shape: Its output window ``O``, centred in ``I`` (``c // 2`` of
            the context ``c = I - O`` before it).
        starts: Output tile starts per axis (:func:`axis_starts`).
        blend: ``"bump"``, ``"gaussian"`` or ``"valid"``.
        normalized: Per axis, the normalized weights of the tiles (one ndarray
            of shape ``(O,)`` per start), when they come from a larger grid
            (:meth:`restrict`); None: worked out from ``starts`` over ``volume_shape``.
    """

    volume_shape: tuple[int, int, int]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    starts: tuple[tuple[int, ...], ...]
    blend: str
    normalized: tuple[tuple[np.ndarray, ...], ...] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def context_before(self) -> tuple[int, ...]:
        """Input voxels before the output window, per axis (``c // 2``)."""
        return tuple((i - o) // 2 for i, o in zip(self.input_shape, self.output_shape))

    @property
    def shape(self) -> tuple[int, ...]:
        """Tiles per axis."""
        return tuple(len(s) for s in self.starts)

    def __len__(self) -> int:
        return math.prod(self.shape)

    def tile(self, index) -> Tile:
        """The tile at ``index`` (one int per axis)."""
        out_start = tuple(s[k] for s, k in zip(self.starts, index))
        lo = [max(s, 0) for s in out_start]
        hi = [min(s + o, n) for s, o, n in zip(out_start, self.output_shape, self.volume_shape)]
        return Tile(
            index=tuple(index),
            input_start=tuple(s - c for s, c in zip(out_start, self.context_before)),
            output_start=out_start,
            write=tuple(slice(a, b) for a, b in zip(lo, hi)),
            write_in_output=tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, out_start)),
        )

    def tiles(self) -> list[Tile]:
        """All tiles, z slowest, x fastest."""
        return [self.tile(index) for index in itertools.product(*map(range, self.shape))]

    def restrict(self, box) -> TileGrid:
        """The tiles of this grid that contribute to a box of the volume, as a grid of the box.

        A prediction of the box with the returned grid computes the same tiles,
        at the same places and with the same weights, as this grid's prediction
        of the whole volume, so it equals that prediction inside the box for any
        model (one whose output depends on where a tile lies, a same-padded
        U-Net, included). A tile that straddles a face of the box is computed
        whole and cut to it, so neighbouring boxes both compute it::

            volume    |0 ........................................ N)
            grid      [ tile 0 ]
                             [ tile 1 ]
                                    [ tile 2 ]
                                           [ tile 3 ]
            box                   |.........|
            restricted        [ tile 1 ]              tiles 1 and 2, written
                                    [ tile 2 ]        only inside the box

        Args:
            box: One ``slice(start, stop)`` per axis ``(z, y, x)``, step 1,
                non-empty, inside ``volume_shape``.

        Returns:
            A :class:`TileGrid` whose ``volume_shape`` is the box's shape and whose
            coordinates start at the box's start. Its tiles are this grid's tiles
            with non-zero weight in the box (for ``"bump"`` and ``"gaussian"``
            those whose write region meets it; for ``"valid"`` those that own a
            voxel of it), shifted; their read regions may reach outside the box
            (read them from the whole volume, mirrored only at its own edges).
            Their write regions are cut to the box, and their weights are this
            grid's, zero outside the box.

        >>> grid = tile_grid((1, 1, 10), (1, 1, 4), (1, 1, 4), overlap=2)
        >>> grid.starts[2], grid.restrict((slice(0, 1), slice(0, 1), slice(4, 6))).starts[2]
        ((0, 2, 4, 6), (-2, 0))
        """
        items = tuple(box) if isinstance(box, (tuple, list)) else (box,)
        if len(items) != 3 or not all(
            isinstance(s, slice)
            and s.step in (None, 1)
            and isinstance(s.start, (int, np.integer))
            and isinstance(s.stop, (int, np.integer))
            and 0 <= s.start < s.stop <= n
            for s, n in zip(items, self.volume_shape)
        ):
            raise InputError(
                f"box: expected 3 slices (z, y, x) of step 1 with 0 <= start < stop <= "
                f"{self.volume_shape}, got {box!r}"
            )
        starts, normalized = [], []
        for axis, s in enumerate(items):
            lo, hi, tile = int(s.start), int(s.stop), self.output_shape[axis]
            axis_starts_, axis_weights = [], []
            for start, w in zip(self.starts[axis], self._axis_weights[axis]):
                a, b = max(lo - start, 0), min(hi - start, tile)
                if a < b and np.any(w[a:b]):
                    cut = np.zeros_like(w)
                    cut[a:b] = w[a:b]
                    axis_starts_.append(start - lo)
                    axis_weights.append(cut)
            starts.append(tuple(axis_starts_))
            normalized.append(tuple(axis_weights))
        return TileGrid(
            volume_shape=tuple(int(s.stop - s.start) for s in items),
            input_shape=self.input_shape,
            output_shape=self.output_shape,
            starts=tuple(starts),
            blend=self.blend,
            normalized=tuple(normalized),
        )

    @cached_property
    def _axis_weights(self) -> tuple[tuple[np.ndarray, ...], ...]:
        if self.normalized is not None:
            return self.normalized
        return tuple(
            _normalized_weights(n, o, starts, self.blend)
            for n, o, starts in zip(self.volume_shape, self.output_shape, self.starts)
        )

    def axis_weights(self, axis: int) -> tuple[np.ndarray, ...]:
        """Per-tile weights along one axis, normalized: they sum to one at every voxel.

        Returns:
            One float64 ndarray of shape ``(O,)`` per tile start on that axis; zero
            outside the volume (and, for ``"valid"``, outside the voxels the tile owns).
        """
        return self._axis_weights[axis]

    def weights(self, tile: Tile) -> np.ndarray:
        """The blending weights of one tile over its output window.

        Returns:
            float32 ndarray of shape ``output_shape``: the product of the per-axis
            weights. Over all tiles they sum to one at every voxel of the volume.
        """
        w = [self._axis_weights[a][k] for a, k in enumerate(tile.index)]
        return np.einsum("i,j,k->ijk", *w).astype(np.float32)

    def weights_key(self, tile: Tile) -> tuple[int, ...]:
        """A key equal for tiles whose weights are equal (to cache them)."""
        return tuple(self._window_ids[a][k] for a, k in enumerate(tile.index))

    @cached_property
    def _window_ids(self) -> tuple[tuple[int, ...], ...]:
        ids = []
        for windows in self._axis_weights:
            seen: list[np.ndarray] = []
            axis_ids = []
            for w in windows:
                for i, other in enumerate(seen):
                    if np.array_equal(w, other):
                        axis_ids.append(i)
                        break
                else:
                    axis_ids.append(len(seen))
                    seen.append(w)
            ids.append(tuple(axis_ids))
        return tuple(ids)


def tile_grid(
    volume_shape, input_shape, output_shape, *, overlap=0, blend: str = "bump", period=1
) -> TileGrid:
    """Covers a volume with output tiles.

    Args:
        volume_shape: ``(Z, Y, X)``.
        input_shape: The model's input window ``(z, y, x)``.
        output_shape: Its output window ``(z, y, x)``, at most ``input_shape``.
        overlap: Voxels shared by neighbouring output tiles: an int for every
            axis (cut to ``O - 1`` on axes where the tile is shorter), or one int
            per axis.
        blend: ``"bump"``, ``"gaussian"`` or ``"valid"``.
        period: Tile starts are multiples of it (an int, or one per axis); see
            :func:`axis_starts`.

    Returns:
        A :class:`TileGrid`.

    >>> grid = tile_grid((1, 10, 10), (1, 8, 8), (1, 4, 4), overlap=2)
    >>> grid.shape, grid.tile((0, 1, 0)).input_start
    ((1, 4, 4), (0, 0, -2))
    """
    volume_shape = _ints(volume_shape, "volume_shape")
    input_shape = _ints(input_shape, "input_shape")
    output_shape = _ints(output_shape, "output_shape")
    if any(o > i for i, o in zip(input_shape, output_shape)):
        raise InputError(
            f"output_shape: {list(output_shape)} is larger than input_shape {list(input_shape)}"
        )
    if blend not in BLENDS:
        raise InputError(f"blend: got {blend!r}; allowed: {', '.join(BLENDS)}")
    if isinstance(overlap, (int, np.integer)):
        overlap = tuple(min(int(overlap), o - 1) for o in output_shape)
    overlap = tuple(int(v) for v in overlap)
    if len(overlap) != 3 or any(v < 0 for v in overlap):
        raise InputError(f"overlap: expected an int or 3 ints >= 0 (z, y, x), got {overlap}")
    if isinstance(period, (int, np.integer)):
        period = (int(period),) * 3
    period = tuple(int(p) for p in period)
    if len(period) != 3 or any(p < 1 for p in period):
        raise InputError(f"period: expected an int or 3 ints >= 1 (z, y, x), got {period}")
    starts = tuple(
        tuple(axis_starts(n, o, v, p))
        for n, o, v, p in zip(volume_shape, output_shape, overlap, period)
    )
    return TileGrid(volume_shape, input_shape, output_shape, starts, blend)


@dataclass(frozen=True)
class TileBlock:
    """Neighbouring tiles processed together: read once, accumulated in one buffer.

    Attributes:
        tiles: The tiles, z slowest, x fastest.
        write: Slices of the volume covered by the tiles' write regions.
        input_start: First voxel of the union of their read regions (may be
            negative).
        input_shape: Size of that union.
    """

    tiles: tuple[Tile, ...]
    write: tuple[slice, slice, slice]
    input_start: tuple[int, int, int]
    input_shape: tuple[int, int, int]


def iter_blocks(grid: TileGrid, *, max_voxels: int) -> Iterator[TileBlock]:
    """Groups the tiles of a grid into boxes of tiles whose write region is small.

    The box grows along x first, then y, then z, while its write region stays
    within ``max_voxels`` (one tile at least), so a block is a slab when a slab
    fits. Blocks come in raster order, z slowest.

    Args:
        grid: A :class:`TileGrid`.
        max_voxels: Largest write region of a block, in voxels.

    Yields:
        :class:`TileBlock` s covering every tile once (made one at a time, so
        memory does not grow with the number of tiles).
    """
    counts = [1, 1, 1]
    for axis in (2, 1, 0):
        for n in range(grid.shape[axis], 0, -1):
            trial = list(counts)
            trial[axis] = n
            if n == 1 or _largest_block(grid, trial) <= max_voxels:
                counts = trial
                break
        if counts[axis] < grid.shape[axis]:
            break
    ranges = [
        [range(k, min(k + c, n)) for k in range(0, n, c)] for n, c in zip(grid.shape, counts)
    ]
    for box in itertools.product(*ranges):
        tiles = tuple(grid.tile(index) for index in itertools.product(*box))
        first, last = tiles[0], tiles[-1]
        yield TileBlock(
            tiles=tiles,
            write=tuple(slice(a.start, b.stop) for a, b in zip(first.write, last.write)),
            input_start=first.input_start,
            input_shape=tuple(
                b + i - a for a, b, i in zip(first.input_start, last.input_start, grid.input_shape)
            ),
        )


def _largest_block(grid: TileGrid, counts) -> int:
    """Voxels of the largest write region of a box of ``counts`` tiles."""
    total = 1
    for starts, n, o, c in zip(grid.starts, grid.volume_shape, grid.output_shape, counts):
        total *= max(
            min(starts[min(k + c, len(starts)) - 1] + o, n) - max(starts[k], 0)
            for k in range(0, len(starts), c)
        )
    return total


def _normalized_weights(size: int, tile: int, starts, blend: str) -> tuple[np.ndarray, ...]:
    """Per-tile 1D weights that sum to one at each voxel of ``[0, size)``."""
    if blend == "valid":
        bounds = [max(starts[0], 0)]
        for previous, start in itertools.pairwise(starts):
            bounds.append((start + previous + tile) // 2)  # middle of the overlap
        bounds.append(size)
        weights = []
        for k, start in enumerate(starts):
            w = np.zeros(tile)
            w[bounds[k] - start : bounds[k + 1] - start] = 1.0
            weights.append(w)
        return tuple(weights)
    window = blend_window(tile, blend)
    total = np.zeros(size)
    for start in starts:
        lo, hi = max(start, 0), min(start + tile, size)
        total[lo:hi] += window[lo - start : hi - start]
    weights = []
    for start in starts:
        lo, hi = max(start, 0), min(start + tile, size)
        w = np.zeros(tile)
        w[lo - start : hi - start] = window[lo - start : hi - start] / total[lo:hi]
        weights.append(w)
    return tuple(weights)


def _ints(shape, name: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in shape)
    if len(values) != 3 or any(v < 1 for v in values):
        raise InputError(f"{name}: expected 3 positive ints (z, y, x), got {tuple(shape)}")
    return values


__all__ = [
    "BLENDS",
    "Tile",
    "TileBlock",
    "TileGrid",
    "axis_starts",
    "blend_window",
    "iter_blocks",
    "mirror_indices",
    "read_mirrored",
    "tile_grid",
]
