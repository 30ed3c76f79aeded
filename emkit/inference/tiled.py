"""Tiled prediction of whole volumes: the function that the CLI and the validation callback call.

The tiles come from the model (:func:`plan_prediction`): its input window ``I``,
its output window ``O`` and the context ``c = I - O`` between them, asked of the
built model with :func:`emkit.models.model_geometry`. Then
:func:`predict_volume` runs the model on batches of tiles and blends their
outputs (:mod:`emkit.inference.tiling` draws the regions)::

    raw (Z, Y, X) ─► block of tiles: read once, mirrored at the volume's edges
                     └─► batch of tile inputs (B, I) ─► model [x variants, tta]
                                                  └─► (B, O, C) x weights ─► add
    out (Z, Y, X, C) ◄── in memory: added in place
                     ◄── Zarr/HDF5/npy: one block buffer, added into the dataset

Memory. With ``out=None`` the result is an in-memory float32 array of the
volume, ``Z * Y * X * C * 4`` bytes; nothing else of the volume's size is
held. With ``out`` a Zarr, HDF5 or memory-mapped array, nothing held grows with
the volume:

- input batches: at most three (one being read, one in the model, one
  waiting), ``3 * batch_size * prod(I) * C_in * 4`` bytes;
- output batches: at most two (one blended, one just out of the model),
  ``2 * batch_size * prod(O) * C * 4`` bytes, and the model's activations for
  one batch (with ``tta``, for one variant at a time, plus a sum and a count);
- blocks: the float32 input of the blocks of tiles being read (one or two;
  their write region grown by the context) and the accumulators of the blocks
  that the batches in flight touch (usually one or two, each a write region of
  at most ``block_mib`` MiB, default 64).

For the residual U-Net's 18x160x160 tiles, batch 4, 3 channels: 22 MB of
inputs, 44 MB of outputs, 2 x 64 MiB of accumulators and 2 x 22 MB of block
inputs, about 0.25 GB besides the model, for any volume size. The tiles are
listed block by block, never for the whole volume at once.

Input scaling is the sampler's (:func:`emkit.preprocess.raw_to_unit`):
unsigned integers are divided by their dtype's maximum (uint8 by 255) and floats
are used as they are. Keep the two in sync: a model trained on other scaling
needs ``normalize=``.
"""

from __future__ import annotations

import itertools
import sys
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emkit.errors import InputError
from emkit.inference import tiling
from emkit.inference import tta as tta_module
from emkit.inference.plan import PredictionPlan, _model_ndim, is_equivariant, plan_prediction


def predict_volume(
    model,
    raw,
    *,
    tile_shape=None,
    overlap=None,
    blend: str = "bump",
    batch_size: int = 4,
    tta: bool = False,
    offsets=None,
    out=None,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
    block_mib: float = 64.0,
    weight: float = 1.0,
    roi=None,
):
    """Predicts a whole volume tile by tile, blending the tiles' outputs.

    A 3D model predicts 3D tiles; a 2D model predicts each section of a
    ``(Z, Y, X)`` stack (and a ``(Y, X)`` image). The volume is mirrored at its
    edges, so any size works, also one smaller than a tile. Pooled patch
    classifiers (N4, VD2D) run in their dense form, one output per input voxel.

    Args:
        model: A built Keras model with one input and one output.
        raw: ndarray or array-like (:class:`~emkit.io.Volume`, Zarr, HDF5) of
            shape ``(Z, Y, X)`` or ``(Y, X)``, with a trailing channel axis when
            the model takes more than one channel. Read tile block by tile
            block, never whole.
        tile_shape: Output tile, ``(y, x)`` or ``(z, y, x)``; see
            :func:`plan_prediction`.
        overlap: Output voxels shared by neighbouring tiles (int or per axis);
            see :func:`plan_prediction`.
        blend: ``"bump"`` or ``"gaussian"`` (weighted mean of overlapping
            tiles, weights summing to one) or ``"valid"`` (each voxel from one tile).
        batch_size: Tiles per forward pass.
        tta: Average the 8 (2D) or 16 (3D) flip and y/x transpose variants.
        offsets: The affinity offset ``(z, y, x)`` of each output channel, for
            ``tta``; None for boundaries.
        out: Where to write, of the returned shape: None (a new in-memory
            array), an ndarray (zeroed first, then added into), or an
            array-like that takes ``out[box]`` and ``out[box] = block`` (a Zarr
            or HDF5 dataset, a view from
            :func:`~emkit.inference.create_output`) that holds zeros: each
            block of tiles is added into it, out of core.
        normalize: Maps raw intensities to float32, voxel by voxel (it is
            applied to the mirrored input of a block of tiles at once, so it
            must not use statistics of what it is given); default: the
            sampler's :func:`~emkit.preprocess.raw_to_unit` (uint8 / 255).
        progress: Show a tqdm progress bar on stderr.
        block_mib: Largest block of accumulators for an ``out`` that is not an
            ndarray, in MiB (one tile at least).
        weight: Scales the blended prediction before it is added into ``out``,
            so that several models can accumulate a weighted mean in one array
            (:func:`emkit.ensemble.predict_ensemble`, with an ``out`` that is
            not an ndarray, since an ndarray is zeroed first).
        roi: Predict only this box of ``raw``: a tuple of ``slice(start, stop)``
            per spatial axis (step 1, inside ``raw``); the result (and ``out``)
            has the box's shape. It equals the prediction of the whole volume
            inside the box, to float rounding, for any model and options: the
            box gets the tiles of the whole volume's grid that reach into it,
            with the whole volume's blending weights
            (:meth:`~emkit.inference.tiling.TileGrid.restrict`), their context
            read from ``raw`` around the box and mirrored only at ``raw``'s own
            edges. A tile that straddles a face of the box is computed whole (and
            again by a box on the other side). When the model is equivariant
            (:func:`~emkit.inference.plan.is_equivariant`: valid convolutions,
            whose tiles do not depend on where they lie) and the box starts on
            a multiple of its period, the tiles are laid out inside the box
            instead, from its start, which computes fewer and gives the same
            voxels. Blockwise prediction (:mod:`emkit.blockwise`) predicts its
            blocks so.

    Returns:
        ``out``, or a new float32 ndarray of shape ``(Z, Y, X, C)`` (``(Y, X, C)``
        for a 2D ``raw``), of the ``roi``'s shape when one is given.

    Raises:
        InputError: ``raw`` does not fit the model (dimensions, channels), or
            an option is invalid.

    >>> pred = predict_volume(model, raw, progress=False)  # doctest: +SKIP
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not (
        np.isfinite(weight)
    ):
        raise InputError(f"weight: expected a finite number, got {weight!r}")
    _model_ndim(model)  # a built model with one input and one output
    in_channels = int(model.inputs[0].shape[-1])
    raw_shape = tuple(int(n) for n in raw.shape)
    spatial = raw_shape[:-1] if in_channels > 1 else raw_shape
    if in_channels > 1 and raw_shape[-1] != in_channels:
        raise InputError(
            f"raw: model {model.name!r} takes {in_channels} channels; expected (Z, Y, X, "
            f"{in_channels}) or (Y, X, {in_channels}), got shape {raw_shape}"
        )
    if len(spatial) not in (2, 3):
        raise InputError(
            f"raw: expected a (Y, X) image or a (Z, Y, X) volume"
            f"{' with a channel axis' if in_channels > 1 else ''}, got shape {raw_shape}"
        )
    options = {"tile_shape": tile_shape, "overlap": overlap, "blend": blend, "tta": tta}
    origin = (0,) * len(spatial)
    if roi is None:
        plan = plan_prediction(model, spatial, **options)
        grid = plan.grid
    else:
        origin, spatial, plan, grid = _plan_roi(model, roi, spatial, options)
    transforms = None
    if tta:
        transforms = tta_module.dihedral_transforms(flip_z=plan.model_ndim == 3)
        if offsets is not None:
            if len(offsets) != plan.out_channels:
                raise InputError(
                    f"offsets: model {model.name!r} has {plan.out_channels} output channels; "
                    f"got {len(offsets)} offsets"
                )
            for transform in transforms:  # raises now if they are not closed under the variants
                tta_module.channel_moves(offsets, transform)
    if normalize is None:
        from emkit.preprocess import raw_to_unit as normalize

    channels = plan.out_channels
    out = output_array(out, (*spatial, channels))
    two_d = len(spatial) == 2
    raw3 = _WithZ(raw) if two_d else raw
    out3 = (out[None] if isinstance(out, np.ndarray) else _WithZ(out)) if two_d else out

    sink = (_Sink if isinstance(out, np.ndarray) else _BlockSink)(out3, grid, weight=float(weight))
    reader = _Reader(raw3, grid, normalize, plan.in_channels, squeeze=in_channels == 1,
                     origin=(0, *origin) if two_d else origin)
    run = _runner(plan)
    if tta:
        single = run

        def run(x):
            return tta_module.predict_tta(single, x, transforms=transforms, offsets=offsets)

    max_voxels = max(1, int(block_mib * 2**20 / (4 * channels)))
    blocks = tiling.iter_blocks(grid, max_voxels=max_voxels)
    items = ((b, block, tile) for b, block in enumerate(blocks) for tile in block.tiles)
    batches = iter(lambda: list(itertools.islice(items, batch_size)), [])
    _run_pipeline(batches, reader, run, sink, total=len(grid), progress=progress)
    return out


# --------------------------------------------------------------------------- the loop


def _run_pipeline(batches, reader, run, sink, *, total: int, progress: bool) -> None:
    """Runs the model in the calling thread while two worker threads read and blend.

    While the model runs on batch ``i``, one worker reads batch ``i + 1`` and
    the other blends batch ``i - 1``, so that the host's work hides behind the
    model's. (Two model calls at once, to overlap one batch's transfers with
    another's compute, are not safe: Keras's JAX backend donates the weights'
    buffers to each call.)
    """
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(1, thread_name_prefix="emkit-read") as reads, ThreadPoolExecutor(
        1, thread_name_prefix="emkit-blend"
    ) as blends, tqdm(
        total=total, unit="tile", desc="predict", disable=not progress, file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        batch = next(batches, None)
        reading = reads.submit(reader.read, batch) if batch else None
        blending = None
        while batch:
            x = reading.result()
            following = next(batches, None)
            reading = reads.submit(reader.read, following) if following else None
            pred = run(x)
            if blending is not None:
                blending.result()  # at most one batch waits to be blended
            blending = blends.submit(sink.add, batch, pred)
            bar.update(len(batch))
            batch = following
        if blending is not None:
            blending.result()


def _runner(plan: PredictionPlan):
    """The model as a function of a batch ``(B, Z, Y, X, C)``, 2D models section by section."""
    net, two_d = plan.model, plan.model_ndim == 2
    expected = plan.grid.output_shape

    def run(x: np.ndarray) -> np.ndarray:
        y = net.predict_on_batch(x[:, 0] if two_d else x)
        if isinstance(y, (list, tuple, dict)):
            raise InputError(f"model {net.name!r} has several outputs; predict_volume needs one")
        y = np.asarray(y, dtype=np.float32)
        if not y.flags.writeable:  # JAX hands back read-only arrays; blending works in place
            y = y.copy()
        if two_d:
            y = y[:, None]
        if y.shape[1:4] != expected:
            raise InputError(
                f"model {net.name!r} returned tiles of shape {y.shape[1:4]}, expected {expected} "
                "from its geometry"
            )
        return y

    return run


class _Reader:
    """Input batches: each block's input read once, mirrored and scaled, tiles cut from it."""

    def __init__(self, raw, grid: tiling.TileGrid, normalize, in_channels: int, *, squeeze: bool,
                 origin=(0, 0, 0)):
        self.raw, self.grid, self.normalize = raw, grid, normalize
        self.in_channels, self.squeeze = in_channels, squeeze
        self.origin = tuple(origin)  # where the grid's (0, 0, 0) lies in raw (a roi's start)
        self.buffers: dict[int, np.ndarray] = {}

    def read(self, batch) -> np.ndarray:
        x = np.empty((len(batch), *self.grid.input_shape, self.in_channels), np.float32)
        for j, (b, block, tile) in enumerate(batch):
            if b not in self.buffers:
                for old in [k for k in self.buffers if k < b]:
                    del self.buffers[old]
                start = tuple(s + o for s, o in zip(block.input_start, self.origin))
                data = tiling.read_mirrored(self.raw, start, block.input_shape)
                self.buffers[b] = np.asarray(self.normalize(data), dtype=np.float32)
            start = [t - s for t, s in zip(tile.input_start, block.input_start)]
            crop = self.buffers[b][
                tuple(slice(s, s + n) for s, n in zip(start, self.grid.input_shape))
            ]
            if self.squeeze:
                x[j, ..., 0] = crop
            else:
                x[j] = crop
        return x


class _Sink:
    """Adds weighted tile outputs into an in-memory ``(Z, Y, X, C)`` array.

    A tile's blending weights are multiplied by the prediction's ``weight``.
    """

    def __init__(self, out, grid: tiling.TileGrid, *, weight: float = 1.0):
        self.out, self.grid, self.weight = out, grid, weight
        self._weights: OrderedDict = OrderedDict()

    def weights(self, tile: tiling.Tile) -> np.ndarray:
        key = self.grid.weights_key(tile)
        if key not in self._weights:
            if len(self._weights) >= 64:
                self._weights.popitem(last=False)
            weights = self.grid.weights(tile)[..., None]
            if self.weight != 1.0:
                weights = (weights * self.weight).astype(np.float32)
            self._weights[key] = weights
        return self._weights[key]

    def add(self, batch, pred: np.ndarray) -> None:
        """Adds a batch's weighted tile outputs into ``out``.

        Args:
            batch: the batch's ``(block_index, block, tile)`` tuples, in order.
            pred: ndarray of shape (B, Z', Y', X', C), float32, the model's output tiles
                for ``batch``; scaled by the weights in place.
        """
        for j, (_, _, tile) in enumerate(batch):
            inner = tile.write_in_output
            weighted = np.multiply(pred[j][inner], self.weights(tile)[inner], out=pred[j][inner])
            target = self.out[tile.write]
            np.add(target, weighted, out=target)


class _BlockSink(_Sink):
    """Adds weighted tile outputs into one buffer per block, then the buffer into ``out``.

    ``out`` is read back and added to (``out[block] += buffer``), because blocks
    overlap where their tiles do.
    """

    def __init__(self, out, grid: tiling.TileGrid, *, weight: float = 1.0):
        super().__init__(out, grid, weight=weight)
        self.buffers: dict[int, list] = {}

    def add(self, batch, pred: np.ndarray) -> None:
        """Adds a batch's weighted tiles into their block buffers; a full block into ``out``.

        Args:
            batch: the batch's ``(block_index, block, tile)`` tuples, in order.
            pred: ndarray of shape (B, Z', Y', X', C), float32, the model's output tiles
                for ``batch``; scaled by the weights in place.
        """
        channels = pred.shape[-1]
        for j, (b, block, tile) in enumerate(batch):
            if b not in self.buffers:
                shape = tuple(s.stop - s.start for s in block.write)
                self.buffers[b] = [np.zeros((*shape, channels), np.float32), len(block.tiles)]
            entry = self.buffers[b]
            local = tuple(
                slice(w.start - o.start, w.stop - o.start) for w, o in zip(tile.write, block.write)
            )
            inner = tile.write_in_output
            entry[0][local] += np.multiply(
                pred[j][inner], self.weights(tile)[inner], out=pred[j][inner]
            )
            entry[1] -= 1
            if entry[1] == 0:
                box = (*block.write, slice(None))
                self.out[box] = self.out[box] + entry[0]
                del self.buffers[b]


def _plan_roi(model, roi, spatial, options):
    """``(start, shape, plan, grid)`` for predicting a box of a volume as the whole volume is.

    An equivariant model whose period the box starts on tiles the box by itself;
    any other gets the whole volume's tiles that reach into the box.
    """
    start, shape = _check_roi(roi, spatial)
    if is_equivariant(model):
        plan = plan_prediction(model, shape, **options)
        if all(s % p == 0 for s, p in zip(start, plan.period[-len(start):])):
            return start, shape, plan, plan.grid
    plan = plan_prediction(model, spatial, **options)
    box = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return start, shape, plan, plan.grid.restrict(box if len(box) == 3 else (slice(0, 1), *box))


def _check_roi(roi, spatial):
    """``(start, shape)`` of a box of slices inside ``spatial``, or InputError."""
    items = tuple(roi) if isinstance(roi, (tuple, list)) else (roi,)
    if len(items) != len(spatial) or not all(isinstance(s, slice) for s in items):
        raise InputError(
            f"roi: expected {len(spatial)} slices (one per spatial axis of raw, shape "
            f"{spatial}), got {roi!r}"
        )
    ranges = [range(*s.indices(n)) for s, n in zip(items, spatial)]
    if any(r.step != 1 or len(r) == 0 for r in ranges):
        raise InputError(f"roi: expected non-empty slices of step 1 inside {spatial}, got {roi!r}")
    return tuple(r.start for r in ranges), tuple(len(r) for r in ranges)


def output_array(out, shape: tuple[int, ...]):
    """The array a prediction is written into: a new zeroed one, or ``out`` checked.

    Args:
        out: None (a new float32 ndarray), an ndarray (zeroed here) or an array-like
            writer of that shape (e.g. :func:`~emkit.inference.create_output`).
        shape: the prediction's shape, spatial axes then channels.

    Returns:
        The array to write into.
    """
    if out is None:
        return np.zeros(shape, np.float32)
    if tuple(out.shape) != tuple(shape):
        raise InputError(f"out: expected shape {tuple(shape)}, got {tuple(out.shape)}")
    if isinstance(out, np.ndarray):
        out[...] = 0
    return out

class _WithZ:
    """A ``(Y, X, ...)`` array-like seen as ``(1, Y, X, ...)``."""

    def __init__(self, array):
        self.array = array
        self.shape = (1, *array.shape)
        self.dtype = array.dtype

    def __getitem__(self, box):
        return np.asarray(self.array[box[1:]])[None]

    def __setitem__(self, box, value):
        self.array[box[1:]] = np.asarray(value)[0]


__all__ = ["predict_volume"]
