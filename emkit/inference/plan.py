"""Tile sizes and the network to run, asked of the model: :func:`plan_prediction`.

The input window ``I``, output window ``O`` and context ``c = I - O`` come from
the built model (:func:`emkit.models.model_geometry`), never from a config:

- a pooled patch classifier (N4, VD2D: output stride > 1) runs in its dense
  form (:func:`emkit.models.convnet.dense.dense_model`), ``c = fov - 1``, any ``O``;
- any other convolutional model may be rebuilt for a larger or smaller tile
  (:func:`emkit.models.convnet.dense.with_input_shape`), at the smallest valid input
  that gives at least the wanted output, and tiles start on multiples of its
  period (the spacing of its valid input sizes: the product of its poolings);
- a model with a global layer keeps its own window.

A model is *equivariant* (:func:`is_equivariant`) when every tile computes, at
each of its voxels, what one pass over the whole mirrored volume computes there,
wherever the tile starts on the period: a network of unpadded local layers (valid
convolutions and poolings, the dense form of a patch classifier). Then any tiles
give one prediction, and a box of the volume can be tiled by itself. A
same-padded network is not: a tile's zero-padded edges differ from its
neighbours' insides, so the prediction depends on the tile grid, and a box must
use the whole volume's tiles (:meth:`~emkit.inference.tiling.TileGrid.restrict`).

Rebuilt nets and worked-out shapes are cached per model (weakly), and a cached
net gets the model's current weights before each use, so a validation callback
that predicts every epoch neither rebuilds nor retraces.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.inference import tiling
from emkit.models import shapes

# Output tile (y, x) / (z, y, x) when the model's own window is no guide: the
# dense form of a pooled patch classifier (its own output is 1 voxel), or a
# model built without a fixed input size.
DEFAULT_TILE = {2: (256, 256), 3: (16, 128, 128)}


@dataclass(frozen=True)
class PredictionPlan:
    """How a model is run on a volume.

    Attributes:
        model: The network run on each tile: the model itself, the same layers
            rebuilt for the tile size, or the dense form of a pooled patch
            classifier.
        model_ndim: 2 (run section by section) or 3.
        grid: The tiles, in ``(z, y, x)`` (``z`` tiles of 1 section for a 2D model).
        in_channels: Input channels.
        out_channels: Output channels.
        period: Tile starts are multiples of it, ``(z, y, x)``: the shift under
            which the network is equivariant (1 for a dense net, the product of
            its poolings for a U-Net).
        equivariant: Whether each tile computes what one pass over the whole
            volume computes, wherever it starts on the period
            (:func:`is_equivariant`); False for a same-padded network, whose
            prediction depends on the tile grid.
    """

    model: Any
    model_ndim: int
    grid: tiling.TileGrid
    in_channels: int
    out_channels: int
    period: tuple[int, int, int] = (1, 1, 1)
    equivariant: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The tile input window ``(y, x)`` or ``(z, y, x)``, as the model takes it."""
        return self.grid.input_shape[-self.model_ndim:]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The tile output window ``(y, x)`` or ``(z, y, x)``."""
        return self.grid.output_shape[-self.model_ndim:]


def plan_prediction(
    model,
    volume_shape,
    *,
    tile_shape=None,
    overlap=None,
    blend: str = "bump",
    tta: bool = False,
) -> PredictionPlan:
    """Chooses the tile size and the network to run for a model and a volume.

    Args:
        model: A built Keras model (also one loaded from ``.keras``), 2D
            ``(batch, y, x, c)`` or 3D ``(batch, z, y, x, c)``, one input, one
            output.
        volume_shape: ``(Z, Y, X)`` or ``(Y, X)`` (spatial axes only).
        tile_shape: Output tile ``(y, x)`` or ``(z, y, x)``. Default: the model's
            own output window; :data:`DEFAULT_TILE` for the dense form of a
            pooled patch classifier and for models without a fixed input size.
            A model that takes other sizes (any convolutional one) is rebuilt
            for the smallest valid input at least ``tile_shape`` + context (and
            no larger than the volume needs); one that does not (a global
            layer) must keep its own window.
        overlap: Output voxels shared by neighbouring tiles: an int or one per
            model axis. Default: a quarter of the tile for ``"bump"`` and
            ``"gaussian"``, 0 for ``"valid"``. Tiles start on multiples of the
            model's period (the product of its poolings, 16 for a U-Net with
            four; 1 for a dense net), so that each computes exactly what one
            pass over the whole volume would; the overlap is rounded up to
            keep the step a multiple of it.
        blend: ``"bump"``, ``"gaussian"`` or ``"valid"`` (see
            :mod:`emkit.inference.tiling`).
        tta: Plan for test-time augmentation: square y/x tiles and a context
            that flips onto itself.

    Returns:
        A :class:`PredictionPlan`.

    Raises:
        InputError: A 3D model for a 2D image, an invalid ``tile_shape`` or
            ``overlap``, or a model whose window cannot be changed or flipped as asked.
    """
    ndim = _model_ndim(model)
    volume_shape = tuple(int(n) for n in volume_shape)
    if len(volume_shape) not in (2, 3) or min(volume_shape, default=0) < 1:
        raise InputError(f"raw: expected a (Y, X) or (Z, Y, X) volume, got shape {volume_shape}")
    if ndim == 3 and len(volume_shape) == 2:
        raise InputError(
            f"raw: model {model.name!r} is 3D (input (batch, z, y, x, c) = "
            f"{tuple(model.inputs[0].shape)}); it cannot run on a 2D image of shape "
            f"{volume_shape}; give a (Z, Y, X) volume"
        )
    if tile_shape is not None:
        tile_shape = _per_axis(tile_shape, ndim, "tile_shape")
    key = ("shapes", volume_shape[-ndim:], tile_shape, bool(tta))
    geometry, dense, own_input, input_shape, output_shape, period = _memo(
        model, key, lambda: _tile_shapes(model, ndim, volume_shape[-ndim:], tile_shape, tta)
    )
    if dense:
        net = _tile_net(model, "dense", input_shape)
    elif own_input is not None and tuple(input_shape) != own_input:
        net = _tile_net(model, "resized", input_shape)
    else:
        net = model

    z_in, z_out = ((1, 1) if ndim == 2 else (input_shape[0], output_shape[0]))
    if overlap is None:
        overlap = 0 if blend == "valid" else tuple(o // 4 for o in output_shape)
    overlap = _per_axis(overlap, ndim, "overlap", minimum=0)
    overlap3 = (0, *overlap) if ndim == 2 else overlap
    volume3 = (1, *volume_shape) if len(volume_shape) == 2 else volume_shape
    period3 = (1, *period) if ndim == 2 else tuple(period)
    grid = tiling.tile_grid(
        volume3,
        (z_in, *input_shape[-2:]),
        (z_out, *output_shape[-2:]),
        overlap=tuple(min(v, max(o - 1, 0)) for v, o in zip(overlap3, (z_out, *output_shape[-2:]))),
        blend=blend,
        period=period3,
    )
    return PredictionPlan(
        model=net,
        model_ndim=ndim,
        grid=grid,
        in_channels=geometry.in_channels,
        out_channels=geometry.out_channels,
        period=period3,
        equivariant=is_equivariant(model),
    )


def is_equivariant(model) -> bool:
    """Whether a model's tiles compute what one pass over the whole volume computes.

    True for a network of unpadded local layers: convolutions and poolings with
    ``"valid"`` padding (or a window no larger than their stride), transposed
    convolutions whose kernel is no larger than their stride, nearest-neighbour
    up-sampling, crops, merges, and per-voxel layers (activations, dropout and
    noise, batch normalization; layer, unit normalization and softmax over the
    channel axis; PReLU shared over space). For such a network each output voxel
    depends only on the input in its field of view, so a tile that starts on a
    multiple of the model's period gives, at every voxel, what any other tiling
    gives. False when any layer pads (``"same"`` convolutions, zero padding),
    pools statistics over space (group normalization) or is global: then a
    tile's output depends on where the tile lies.

    Args:
        model: A built Keras model.

    Returns:
        bool.
    """
    return _memo(model, ("equivariant",), lambda: _is_equivariant(model))


_PER_VOXEL = {
    "InputLayer", "Activation", "ReLU", "ELU", "LeakyReLU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "Identity", "Rescaling", "Add", "Concatenate", "Subtract", "Multiply", "Average", "Maximum",
    "Minimum",
}
_CHANNEL_AXIS = {"Softmax", "BatchNormalization", "LayerNormalization", "UnitNormalization"}


def _is_equivariant(model) -> bool:
    from emkit.models.graph import layer_kind

    rank = len(model.inputs[0].shape)  # batch, spatial axes, channels
    for layer in model.layers:
        try:
            kind = layer_kind(layer)
        except InputError:
            return False
        if kind in _PER_VOXEL or kind.startswith("Cropping"):
            continue
        config = layer.get_config()
        if kind in _CHANNEL_AXIS:
            axes = config.get("axis", -1)
            axes = axes if isinstance(axes, (list, tuple)) else [axes]
            if any(a % rank != rank - 1 for a in axes):
                return False
        elif kind == "PReLU":
            if not set(range(1, rank - 1)) <= set(config.get("shared_axes") or ()):
                return False
        elif kind.startswith("UpSampling"):
            if config.get("interpolation", "nearest") != "nearest":
                return False
        elif kind.endswith("Transpose"):
            kernel, strides = _axes(config, "kernel_size", rank), _axes(config, "strides", rank)
            if any(k > s for k, s in zip(kernel, strides)) or (
                config.get("padding") != "valid" and kernel != strides
            ):
                return False
        elif kind.startswith("Conv") or "Pooling" in kind:
            if config.get("padding", "valid") != "valid":
                conv = kind.startswith("Conv")
                window = _axes(config, "kernel_size" if conv else "pool_size", rank)
                strides = _axes(config, "strides", rank, default=1 if conv else window)
                dilation = _axes(config, "dilation_rate", rank)
                extents = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
                if any(e > s for e, s in zip(extents, strides)):  # "same" pads these
                    return False
        else:  # zero padding, group normalization, global layers
            return False
    return True


def _axes(config: dict, key: str, rank: int, default=1) -> list[int]:
    """A layer setting per spatial axis: a per-axis list, or a scalar shared by all."""
    value = config.get(key)
    if value is None:
        value = default
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * (rank - 2)


def _tile_shapes(model, ndim: int, spatial, tile_shape, tta: bool):
    """``(geometry, dense, own input, tile input, tile output, period)`` for :func:`plan_prediction`."""
    geometry = shapes.model_geometry(model)
    dense = any(s > 1 for s in geometry.output_stride)
    flexible = all(f is not None for f in geometry.fov)
    own_input = _own_input_shape(model)
    context = tuple(f - 1 for f in geometry.fov) if dense else geometry.context
    if tile_shape is None:
        wanted = DEFAULT_TILE[ndim] if dense or own_input is None else geometry.output_shape
    else:
        wanted = tile_shape
    if not flexible:
        if tile_shape is not None and wanted != geometry.output_shape:
            raise InputError(
                f"tile_shape: model {model.name!r} has a global layer and only takes its own "
                f"window {geometry.input_shape} -> {geometry.output_shape}; got {wanted}"
            )
        if own_input is None:
            raise InputError(f"model {model.name!r}: a global layer needs a fixed input shape")
        input_shape, output_shape = geometry.input_shape, geometry.output_shape
        period = _period(model, input_shape)
        period = period if all(p <= o for p, o in zip(period, output_shape)) else (1,) * ndim
    else:
        wanted = [min(w, n) for w, n in zip(wanted, spatial)]  # no tile larger than the volume
        if tta:
            wanted[-2:] = [max(wanted[-2:])] * 2
        if dense:
            input_shape = tuple(w + c for w, c in zip(wanted, context))
            output_shape = tuple(wanted)
            period = (1,) * ndim  # the dense form is equivariant to every shift
        else:
            input_shape, output_shape = _fit(model, wanted, context)
            period = _period(model, input_shape)
            if any(o < p for o, p in zip(output_shape, period)):  # a tile spans a period at least
                wanted = [max(o, p) for o, p in zip(output_shape, period)]
                input_shape, output_shape = _fit(model, wanted, context)
    if tta:
        if input_shape[-1] != input_shape[-2] or output_shape[-1] != output_shape[-2]:
            raise InputError(
                f"tta: the y/x transpose needs a square tile; model {model.name!r} takes "
                f"{input_shape} -> {output_shape}"
            )
        odd = [a for a, (i, o) in enumerate(zip(input_shape, output_shape)) if (i - o) % 2]
        if odd:
            raise InputError(
                f"tta: model {model.name!r} has an odd context {input_shape} -> {output_shape} on "
                f"axis {odd[0]}; a flipped tile would be off by one voxel there"
            )

    return geometry, dense, own_input, tuple(input_shape), tuple(output_shape), tuple(period)


def _model_ndim(model) -> int:
    if not hasattr(model, "inputs") or not hasattr(model, "predict_on_batch"):
        raise InputError(f"model: expected a built Keras model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; tiled prediction needs one of each"
        )
    ndim = len(model.inputs[0].shape) - 2
    if ndim not in (2, 3):
        raise InputError(
            f"model {model.name!r} takes inputs of shape {tuple(model.inputs[0].shape)}; "
            "expected (batch, y, x, c) or (batch, z, y, x, c)"
        )
    return ndim


# Model -> {key: shapes worked out for it}: walking a model's graph for its
# valid sizes takes a tenth of a second for a U-Net, and the validation
# callback plans the same volume every epoch.
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memo(model, key, compute):
    try:
        cache = _MEMO.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        return compute()
    if key not in cache:
        if len(cache) >= 32:
            cache.pop(next(iter(cache)))
        cache[key] = compute()
    return cache[key]


# Model -> {(kind, input shape): the rebuilt net}. Rebuilding and retracing a
# net costs seconds, and the validation callback predicts every epoch; a cached
# net gets the model's current weights (copied variable by variable, on the
# device) before each use.
_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tile_net(model, kind: str, input_shape):
    """The dense form of ``model``, or ``model`` rebuilt for ``input_shape``, with its weights."""
    from emkit.models.convnet.dense import dense_model, with_input_shape

    try:
        nets = _NETS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        nets = {}
    key = (kind, tuple(input_shape))
    if key in nets:
        net = nets[key]
        import keras

        for layer in model.layers:
            for target, source in zip(net.get_layer(layer.name).weights, layer.weights):
                # a copy: with JAX, assign would alias the buffer, which predict donates
                target.assign(keras.ops.copy(source.value))
        return net
    if kind == "dense":
        net = dense_model(model, input_shape=input_shape)
    else:
        net = with_input_shape(model, input_shape)
    if len(nets) >= 4:
        nets.pop(next(iter(nets)))
    nets[key] = net
    return net


def _fit(model, wanted, context):
    """The smallest valid input window whose output is at least ``wanted``, and that output."""
    input_shape = shapes.nearest_valid_input_shape(
        model, tuple(w + c for w, c in zip(wanted, context)), direction="up"
    )
    return input_shape, shapes.output_shape(model, input_shape)


def _period(model, input_shape) -> tuple[int, ...]:
    """Per axis, the spacing of the model's valid input sizes after ``input_shape``.

    A network of valid convolutions and poolings is equivariant to shifts by
    the product of its poolings, which is this spacing (16 for a U-Net with
    four 2x poolings); tiles that start on multiples of it compute exactly
    what one pass over the whole volume computes.
    """
    following = shapes.nearest_valid_input_shape(
        model, tuple(n + 1 for n in input_shape), direction="up"
    )
    return tuple(f - n for f, n in zip(following, input_shape))


def _own_input_shape(model) -> tuple[int, ...] | None:
    shape = tuple(model.inputs[0].shape[1:-1])
    return None if any(v is None for v in shape) else tuple(int(v) for v in shape)


def _per_axis(value, ndim: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != ndim or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
        for v in values
    ):
        axes = "(y, x)" if ndim == 2 else "(z, y, x)"
        raise InputError(
            f"{name}: expected an int or {ndim} ints >= {minimum} {axes} for a {ndim}D model, "
            f"got {value!r}"
        )
    return tuple(int(v) for v in values)


__all__ = ["DEFAULT_TILE", "PredictionPlan", "is_equivariant", "plan_prediction"]
