"""Tiling whole volumes into model-sized blocks, for validation and inference.

No augmentation and no randomness: a volume is covered by output windows, each read
with its input context (daisy's read/write regions, with the "shift" fit at the end)::

    volume      |0 ..................................................... N)
    output      [  block 0  ][  block 1  ][  block 2  ]
                                               [  block 3  ]   last block shifted
                                                               back to end at N
    input    [<-   block 0's input window   ->]
             context (I - O) / 2 each side; raw outside the volume is mirrored

Each block *owns* the voxels no earlier block covered (block 3 above owns only what lies
beyond block 2), so that a validation loss counts every voxel once. A volume smaller
than the output window gets one block, centred, whose window is cut to the volume.

Plain NumPy: :class:`~emkit.sampling.validation.ValidationSampler` wraps this for Keras.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from emkit.datasets.base import section_runs
from emkit.errors import InputError
from emkit.preprocess import raw_to_unit
from emkit.sampling.crops import pad_crop, read_crop


@dataclass(frozen=True)
class Block:
    """One tile of a volume.

    Attributes:
        input_start: (z, y, x) of the input window's first voxel, in the volume; may be
            negative or reach past the end (mirrored there).
        output_start: (z, y, x) of the output window's first voxel.
        write: slices (z, y, x) of the volume that the output window covers (cut to the
            volume).
        write_in_output: the same region as slices of the output window.
        owned: slices (z, y, x) of the volume that this block is the first to cover.
        bounds: (start, stop) of the run of sections the block lies in; reads in z stay
            inside it.
    """

    input_start: tuple[int, int, int]
    output_start: tuple[int, int, int]
    write: tuple[slice, slice, slice]
    write_in_output: tuple[slice, slice, slice]
    owned: tuple[slice, slice, slice]
    bounds: tuple[int, int]


def _axis_starts(n: int, o: int) -> list[int]:
    """Output-window starts along one axis of length ``n``: step ``o``, last one shifted."""
    if n <= o:
        return [-((o - n) // 2)]
    starts = list(range(0, n - o, o))
    return starts + [n - o]


def tile_blocks(volume_shape, input_shape, output_shape, *, z_range=None):
    """Covers a volume (or a run of its sections) with output windows.

    Args:
        volume_shape: (Z, Y, X).
        input_shape: the model's input window (Z, Y, X) (Z = 1 for a 2D model).
        output_shape: its output window (Z, Y, X), centred in the input window.
        z_range: (start, stop) of the sections to cover (default: all); z context is
            mirrored inside this range.

    Returns:
        A list of :class:`Block`, z slowest, x fastest.

    >>> [b.output_start[2] for b in tile_blocks((1, 1, 10), (1, 1, 6), (1, 1, 4))]
    [0, 4, 6]
    >>> [b.owned[2] for b in tile_blocks((1, 1, 10), (1, 1, 6), (1, 1, 4))][2]
    slice(8, 10, None)
    """
    volume_shape = tuple(int(n) for n in volume_shape)
    z_range = (0, volume_shape[0]) if z_range is None else tuple(int(z) for z in z_range)
    extent = (z_range[1] - z_range[0], *volume_shape[1:])
    origin = (z_range[0], 0, 0)
    context = [(i - o) // 2 for i, o in zip(input_shape, output_shape)]
    per_axis = []
    for n, o, first in zip(extent, output_shape, origin):
        starts = _axis_starts(n, o)
        spans = []
        covered = 0
        for s in starts:
            lo, hi = max(s, 0), min(s + o, n)
            spans.append((first + s, slice(first + lo, first + hi), slice(lo - s, hi - s),
                          slice(first + max(lo, covered), first + hi)))
            covered = hi
        per_axis.append(spans)
    blocks = []
    for zs, ys, xs in itertools.product(*per_axis):
        out_start = (zs[0], ys[0], xs[0])
        blocks.append(Block(
            input_start=tuple(s - c for s, c in zip(out_start, context)),
            output_start=out_start,
            write=(zs[1], ys[1], xs[1]),
            write_in_output=(zs[2], ys[2], xs[2]),
            owned=(zs[3], ys[3], xs[3]),
            bounds=z_range,
        ))
    return blocks


def tile_sections(volume_shape, input_shape, output_shape, *, sections=None):
    """:func:`tile_blocks` over each run of consecutive ``sections`` (default: all).

    Args:
        volume_shape: (Z, Y, X).
        input_shape: the model's input window (Z, Y, X) (Z = 1 for a 2D model).
        output_shape: its output window (Z, Y, X), centred in the input window.
        sections: the sections to cover, or None for all; each run of consecutive
            sections is tiled on its own (z context mirrored inside the run).

    Returns:
        A list of :class:`Block`, run by run.
    """
    nz = int(volume_shape[0])
    runs = section_runs(range(nz) if sections is None else sections)
    if runs and (runs[0].start < 0 or runs[-1].stop > nz):
        raise InputError(f"sections {list(sections)} are outside the volume's {nz} sections")
    blocks = []
    for run in runs:
        blocks += tile_blocks(volume_shape, input_shape, output_shape,
                              z_range=(run.start, run.stop))
    return blocks


def read_input(raw, block: Block, input_shape):
    """The input window of a block: float32 in [0, 1], shape ``input_shape`` (Z, Y, X).

    Outside the volume (and outside the block's run of sections) raw is mirrored.

    Args:
        raw: ndarray or Volume of shape (Z, Y, X) (unsigned or float in [0, 1], see
            :func:`~emkit.preprocess.raw_to_unit`).
        block: the :class:`Block`.
        input_shape: the model's input window (Z, Y, X).
    """
    bounds = [block.bounds, (0, raw.shape[1]), (0, raw.shape[2])]
    data, pad = read_crop(raw, block.input_start, input_shape, bounds=bounds)
    return raw_to_unit(pad_crop(np.asarray(data), pad, input_shape, mode="reflect"))


def iter_input_batches(raw, shapes, *, batch_size: int = 1, sections=None):
    """Input batches covering a whole volume, and the blocks they came from.

    The form a predictor needs: run the model on ``x`` and write
    ``pred[i][block.write_in_output]`` into ``block.write`` of the output volume (for a
    2D model, ``pred[i][None]``: blocks are always (z, y, x), one section deep). Blocks
    overlap only at the volume's far edges, where a later block overwrites an earlier one
    (with the same values for a valid-convolution model; a same-padded model differs near
    block edges, so a predictor may prefer to blend or to write only ``block.owned``).

    Args:
        raw: ndarray or Volume of shape (Z, Y, X).
        shapes: :class:`~emkit.models.shapes.Geometry` (``model_shapes(model)``).
        batch_size: blocks per batch; the last batch may be smaller.
        sections: the sections to cover (default: all).

    Yields:
        ``(x, blocks)``: ``x`` float32 of shape (B, Y, X, 1) or (B, Z, Y, X, 1), and the
        list of B :class:`Block`.
    """
    blocks = tile_sections(raw.shape, shapes.input_zyx, shapes.output_zyx, sections=sections)
    for i in range(0, len(blocks), batch_size):
        chunk = blocks[i:i + batch_size]
        x = np.empty((len(chunk), *shapes.input_shape, 1), np.float32)
        for j, block in enumerate(chunk):
            window = read_input(raw, block, shapes.input_zyx)
            x[j, ..., 0] = window[0] if shapes.ndim == 2 else window
        yield x, chunk
