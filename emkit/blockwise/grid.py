r"""The block grid: write regions, read regions (with context) and their arithmetic.

Plain NumPy-free integer arithmetic. As in daisy's ``Task``, every block has a
*write* region, the voxels it owns and writes, and a *read* region, the write
region grown by the context (the halo) that its computation needs::

    volume     |0 ...................................................... N)
    write      [ block 0  ][ block 1  ][ block 2  ][ block 3  ][ b4 ]    blocks tile the
                                                                         volume, no overlap
    read    [c0| block 0  |c1]                                          c0 before, c1 after
                       [c0| block 1  |c1]
                                                   [c0| b4 |c1]         last block shrunk
                                                                        to end at N

    fit policy "shrink": blocks start at multiples of the block size; the last
    block on an axis is cut to end at N, so write regions never leave the volume.
    Read regions may leave it: the predictor mirrors there (as a whole-volume
    prediction does), the segmenter clips them to the volume (``read_clipped``).

Write regions are disjoint and each is a whole number of output chunks (the output's
chunks are the block shape), so no two blocks, and hence no two workers, ever write to
the same chunk. Blocks are numbered in C order (z slowest), and ``Block.id`` is that
number; it names the block's completion marker and its id range in a segmentation.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

from emkit.errors import InputError


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockGrid`; axes ``(z, y, x)``.

    Attributes:
        id: Position in C order (z slowest), ``0 .. len(grid) - 1``.
        index: Position in the grid, per axis.
        write: The slices of the volume this block owns and writes.
        read_start: First voxel of the read region (may be negative).
        read_shape: Size of the read region (``write`` grown by the context).
    """

    id: int
    index: tuple[int, int, int]
    write: tuple[slice, slice, slice]
    read_start: tuple[int, int, int]
    read_shape: tuple[int, int, int]

    @property
    def write_start(self) -> tuple[int, ...]:
        return tuple(s.start for s in self.write)

    @property
    def write_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.write)

    @property
    def size(self) -> int:
        """Voxels written."""
        return math.prod(self.write_shape)


@dataclass(frozen=True)
class BlockGrid:
    """Blocks covering a volume, with their read and write regions.

    Attributes:
        volume_shape: ``(Z, Y, X)``.
        block_shape: Write region of a full block, ``(z, y, x)``.
        context_before: Context voxels read before the write region, per axis.
        context_after: Context voxels read after it, per axis.
    """

    volume_shape: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    context_before: tuple[int, int, int] = (0, 0, 0)
    context_after: tuple[int, int, int] = (0, 0, 0)

    @property
    def shape(self) -> tuple[int, ...]:
        """Blocks per axis."""
        return tuple(-(-n // b) for n, b in zip(self.volume_shape, self.block_shape))

    def __len__(self) -> int:
        return math.prod(self.shape)

    def block(self, index) -> Block:
        """The block at ``index`` (one int per axis, or its C-order id as one int)."""
        if isinstance(index, numbers.Integral):
            index = int(index)
            if not 0 <= index < len(self):
                raise IndexError(f"block id {index} is outside 0..{len(self) - 1}")
            index = tuple(int(i) for i in _unravel(index, self.shape))
        starts = [k * b for k, b in zip(index, self.block_shape)]
        stops = [min(s + b, n) for s, b, n in zip(starts, self.block_shape, self.volume_shape)]
        return Block(
            id=_ravel(index, self.shape),
            index=tuple(index),
            write=tuple(slice(a, b) for a, b in zip(starts, stops)),
            read_start=tuple(s - c for s, c in zip(starts, self.context_before)),
            read_shape=tuple(
                b - a + c0 + c1
                for a, b, c0, c1 in zip(starts, stops, self.context_before, self.context_after)
            ),
        )

    def __iter__(self) -> Iterator[Block]:
        for index in itertools.product(*map(range, self.shape)):
            yield self.block(index)

    def neighbours_before(self, block: Block) -> list[tuple[int, Block]]:
        """The blocks that share a face with ``block`` on its lower side: ``(axis, block)``."""
        found = []
        for axis in range(3):
            if block.index[axis] > 0:
                index = list(block.index)
                index[axis] -= 1
                found.append((axis, self.block(tuple(index))))
        return found

    def read_clipped(self, block: Block) -> tuple[slice, slice, slice]:
        """The read region of ``block`` cut to the volume."""
        return tuple(
            slice(max(s, 0), min(s + n, v))
            for s, n, v in zip(block.read_start, block.read_shape, self.volume_shape)
        )


def block_grid(volume_shape, block_shape, *, context=0, name: str = "volume") -> BlockGrid:
    """Covers a volume with blocks.

    Args:
        volume_shape: ``(Z, Y, X)``.
        block_shape: Write region of a block, an int or ``(z, y, x)``; cut to the
            volume where it is larger.
        context: Voxels of context on each side: an int, ``(z, y, x)`` (split
            ``c // 2`` before and the rest after, as a model's context is), or a pair
            of tuples ``(before, after)``.
        name: What the volume is, for messages.

    Returns:
        A :class:`BlockGrid`.

    Raises:
        InputError: a shape is not 3 positive ints, or a block is smaller than its
            context (the halo) on some axis, which would read more context than data.

    >>> grid = block_grid((10, 100, 100), (10, 64, 64), context=(0, 8, 8))
    >>> grid.shape, grid.block(3).write, grid.block(3).read_start
    ((1, 2, 2), (slice(0, 10, None), slice(64, 100, None), slice(64, 100, None)), (0, 60, 60))
    """
    volume_shape = _positive3(volume_shape, f"{name} shape")
    block_shape = _positive3(block_shape, "block size")
    block_shape = tuple(min(b, n) for b, n in zip(block_shape, volume_shape))
    before, after = _context(context)
    least = tuple(min(max(x, y), n) for x, y, n in zip(before, after, volume_shape))
    small = [a for a in range(3) if block_shape[a] < least[a]]
    if small:
        raise InputError(
            f"block size {block_shape} (z, y, x) is smaller than its halo on axis "
            f"{'zyx'[small[0]]}: each block reads {before} voxels of context before it and "
            f"{after} after it, for {name} of shape {volume_shape}; use blocks of at least "
            f"{least} voxels (several times the halo is efficient)"
        )
    return BlockGrid(volume_shape, block_shape, before, after)


def _context(context):
    if isinstance(context, numbers.Integral):
        context = (int(context),) * 3
    context = tuple(context)
    if len(context) == 2 and all(isinstance(c, (tuple, list)) for c in context):
        before, after = (tuple(int(v) for v in c) for c in context)
    else:
        total = tuple(int(v) for v in context)
        before = tuple(c // 2 for c in total)
        after = tuple(c - b for c, b in zip(total, before))
    if len(before) != 3 or len(after) != 3 or min(before + after) < 0:
        raise InputError(f"context: expected ints >= 0 for (z, y, x), got {context!r}")
    return before, after


def _positive3(shape, name: str) -> tuple[int, int, int]:
    values = (shape,) * 3 if isinstance(shape, numbers.Integral) else tuple(shape)
    if len(values) != 3 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise InputError(f"{name}: expected 3 positive ints (z, y, x), got {shape!r}")
    return tuple(int(v) for v in values)


def _ravel(index, shape) -> int:
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * n + i
    return flat


def _unravel(flat: int, shape) -> list[int]:
    index = []
    for n in reversed(shape):
        index.append(flat % n)
        flat //= n
    return index[::-1]


__all__ = ["Block", "BlockGrid", "block_grid"]
