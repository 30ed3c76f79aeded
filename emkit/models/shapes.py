"""Field of view, valid input sizes and output sizes, for a spec or a built model.

Every function takes either a spec (:mod:`emkit.models.spec`) or a built Keras
model, so the sampler and the predictor can ask the model itself. For a spec the
numbers come from closed formulas; for a model they come from walking its layer
graph (convolutions, poolings, up-samplings, crops, merges), read from each
layer's config. Nothing here imports Keras, and the tests check both against
Keras's own shape inference.

Terms, per spatial axis, in input voxels:

- ``fov`` (field of view): the extent of input that can influence one output
  voxel. For N4 in 2D it is 95x95 (the DeepSeg thesis rounds it to 96). For
  U-Nets it is the receptive field of the deepest path, an upper bound.
- ``output_stride``: input voxels between two neighbouring output voxels: the
  product of the pooling strides for the pooled patch classifiers (16 for N4),
  1 for U-Nets.
- valid input size: one that no valid convolution, pooling or crop would cut
  short: for N4, 95 + 16k. An invalid size raises :class:`InputError` naming the
  nearest valid ones.
- ``context``: ``input - ((output - 1) * output_stride + 1)``, the input margin
  around the span of the output, split evenly on both sides (``fov - 1`` for a
  convnet, ``input - output`` for a valid U-Net, 0 for a same-padded one).

>>> from emkit.models.architectures import ARCHITECTURES
>>> field_of_view(ARCHITECTURES["n4"])
(95, 95)
>>> output_shape(ARCHITECTURES["n4"], (127, 111))
(3, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emkit.errors import InputError
from emkit.models.graph import walk
from emkit.models.spec import BaseSpec, canonical_input_shape


@dataclass(frozen=True)
class Geometry:
    """Shapes of a network for one input size; spatial axes only, ``(z, y, x)`` or ``(y, x)``.

    Attributes:
        input_shape: Spatial input size.
        output_shape: Spatial output size.
        fov: Field of view per axis (``None`` on an axis where the network is
            global, e.g. a spatial transformer).
        output_stride: Input voxels between neighbouring output voxels.
        in_channels: Channels of the input.
        out_channels: Channels of the output.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    fov: tuple[int | None, ...]
    output_stride: tuple[int, ...]
    in_channels: int
    out_channels: int

    @property
    def ndim(self) -> int:
        """Spatial dimensions: 2 for ``(batch, y, x, c)`` models, 3 for ``(batch, z, y, x, c)``."""
        return len(self.input_shape)

    @property
    def context(self) -> tuple[int, ...]:
        """Input margin around the output's span, both sides together."""
        return tuple(
            i - ((o - 1) * s + 1)
            for i, o, s in zip(self.input_shape, self.output_shape, self.output_stride)
        )

    @property
    def input_zyx(self) -> tuple[int, int, int]:
        """The input window as (Z, Y, X); a 2D model reads one section."""
        return _zyx(self.input_shape)

    @property
    def output_zyx(self) -> tuple[int, int, int]:
        """The output window as (Z, Y, X)."""
        return _zyx(self.output_shape)

    @property
    def margin_zyx(self) -> tuple[int, int, int]:
        """Input voxels on each side of the centred output window, (z, y, x)."""
        return tuple((i - o) // 2 for i, o in zip(self.input_zyx, self.output_zyx))


def _zyx(shape) -> tuple[int, int, int]:
    return (1, *shape) if len(shape) == 2 else tuple(shape)


# --------------------------------------------------------------------------- public API


def field_of_view(net: Any) -> tuple[int | None, ...]:
    """Field of view per spatial axis of a spec or a built model.

    Args:
        net: A spec dataclass or a Keras model.

    Returns:
        One int per axis (``None`` where the network is global).
    """
    if isinstance(net, BaseSpec):
        return net.field_of_view()
    return walk(net, _probe_shape(net)).fov


def output_stride(net: Any) -> tuple[int, ...]:
    """Input voxels between neighbouring output voxels, per axis."""
    if isinstance(net, BaseSpec):
        return net.output_stride()
    return walk(net, _probe_shape(net)).output_stride


def output_shape(net: Any, input_shape) -> tuple[int, ...]:
    """Spatial output size for a spatial input size.

    Args:
        net: A spec dataclass or a Keras model.
        input_shape: Spatial input size, one int per axis.

    Returns:
        The spatial output size.

    Raises:
        InputError: ``input_shape`` is not a valid input size; the message names
            the offending axis and the nearest valid sizes.
    """
    ndim = _ndim(net)
    input_shape = check_input_shape(input_shape, ndim)
    if isinstance(net, BaseSpec):
        out = []
        for axis, n in enumerate(input_shape):
            size, reason = net.axis_output_size(axis, n)
            if size is None:
                _raise_invalid(net, axis, input_shape, reason)
            out.append(size)
        return tuple(out)
    traced = walk(net, input_shape)
    for axis, reason in enumerate(traced.reasons):
        if reason:
            _raise_invalid(net, axis, input_shape, reason)
    return traced.output_shape


def is_valid_input_shape(net: Any, input_shape) -> bool:
    """Whether ``input_shape`` is a valid spatial input size of ``net``.

    Args:
        net: a spec or a built model.
        input_shape: the spatial input size to check.
    """
    input_shape = check_input_shape(input_shape, _ndim(net))
    if isinstance(net, BaseSpec):
        return all(net.axis_output_size(a, n)[0] is not None for a, n in enumerate(input_shape))
    return not any(walk(net, input_shape).reasons)


def valid_input_sizes(net: Any, axis: int, stop: int, start: int = 1) -> list[int]:
    """The valid input sizes on one axis, in ``[start, stop)``.

    Valid sizes on different axes are independent of each other.

    Args:
        net: A spec dataclass or a Keras model.
        axis: Spatial axis (0 = first spatial axis; negative counts from x).
        stop: One past the largest size to consider.
        start: Smallest size to consider.

    >>> from emkit.models.architectures import ARCHITECTURES
    >>> valid_input_sizes(ARCHITECTURES["n4"], axis=-1, stop=150)
    [95, 111, 127, 143]
    """
    ndim = _ndim(net)
    axis = _check_axis(axis, ndim)
    return [n for n in range(max(1, start), stop) if _axis_size(net, axis, n)[0] is not None]


def smallest_input_shape(net: Any, limit: int = 4096) -> tuple[int, ...]:
    """The smallest valid spatial input size (for a convnet, its field of view).

    Args:
        net: a spec or a built model.
        limit: give up above this size per axis.
    """
    ndim = _ndim(net)
    out = []
    for axis in range(ndim):
        for n in range(1, limit):
            if _axis_size(net, axis, n)[0] is not None:
                out.append(n)
                break
        else:
            raise InputError(f"{_name(net)}: no valid input size below {limit} on axis {axis}")
    return tuple(out)


def nearest_valid_input_shape(
    net: Any, input_shape, *, direction: str = "nearest"
) -> tuple[int, ...]:
    """The valid spatial input size closest to ``input_shape``, axis by axis.

    Args:
        net: A spec dataclass or a Keras model.
        input_shape: Desired spatial input size.
        direction: ``"nearest"``, ``"up"`` (at least ``input_shape``) or
            ``"down"`` (at most ``input_shape``).
    """
    if direction not in ("nearest", "up", "down"):
        raise InputError(f"direction: got {direction!r}; allowed: nearest, up, down")
    ndim = _ndim(net)
    input_shape = check_input_shape(input_shape, ndim)
    return tuple(_nearest_on_axis(net, axis, n, direction) for axis, n in enumerate(input_shape))


def geometry(net: Any, input_shape=None) -> Geometry:
    """The :class:`Geometry` of a spec or a built model for one input size.

    Args:
        net: A spec dataclass or a Keras model.
        input_shape: Spatial input size. Defaults to the model's own input
            shape, then the spec's ``input_shape``, then the smallest valid size.
    """
    if input_shape is None:
        input_shape = own_input_shape(net) or smallest_input_shape(net)
    out = output_shape(net, input_shape)
    if isinstance(net, BaseSpec):
        return Geometry(
            input_shape=tuple(input_shape),
            output_shape=out,
            fov=net.field_of_view(),
            output_stride=output_stride(net),
            in_channels=net.in_channels,
            out_channels=net.out_channels,
        )
    traced = walk(net, tuple(input_shape))
    return Geometry(
        input_shape=tuple(input_shape),
        output_shape=out,
        fov=traced.fov,
        output_stride=traced.output_stride,
        in_channels=int(net.inputs[0].shape[-1]),
        out_channels=int(net.outputs[0].shape[-1]),
    )


def model_geometry(model: Any, input_shape=None) -> Geometry:
    """The :class:`Geometry` of a built Keras model, read from its layers.

    This is what the sampler and the predictor call: it needs no spec, so it
    works on a model loaded from a ``.keras`` file.

    Args:
        model: a built Keras model.
        input_shape: the spatial input size; None: the model's own.
    """
    return geometry(model, input_shape)


# --------------------------------------------------------------------------- helpers


def _is_model(net: Any) -> bool:
    return hasattr(net, "layers") and hasattr(net, "inputs") and not isinstance(net, BaseSpec)


def _ndim(net: Any) -> int:
    if isinstance(net, BaseSpec):
        return net.ndim
    if _is_model(net):
        return len(net.inputs[0].shape) - 2
    raise InputError(
        f"net: expected an architecture spec or a Keras model, got {type(net).__name__}"
    )


def _name(net: Any) -> str:
    return net.name


def own_input_shape(net: Any) -> tuple[int, ...] | None:
    """The spatial input size a spec or model was built for, or ``None`` if any size."""
    if isinstance(net, BaseSpec):
        return net.input_shape
    shape = tuple(net.inputs[0].shape[1:-1])
    return None if any(v is None for v in shape) else tuple(int(v) for v in shape)


def _probe_shape(model: Any) -> tuple[int, ...]:
    """A size to walk a model with when only fov/stride are wanted (sizes are then ignored)."""
    return own_input_shape(model) or (1,) * _ndim(model)


def _axis_size(net: Any, axis: int, n: int) -> tuple[int | None, str]:
    if isinstance(net, BaseSpec):
        return net.axis_output_size(axis, n)
    shape = [1] * _ndim(net)
    shape[axis] = n
    traced = walk(net, tuple(shape))
    reason = traced.reasons[axis]
    return (None, reason) if reason else (traced.output_shape[axis], "")


def _nearest_on_axis(net: Any, axis: int, n: int, direction: str, limit: int = 8192) -> int:
    if _axis_size(net, axis, n)[0] is not None:
        return n
    for delta in range(1, limit):
        up, down = n + delta, n - delta
        if (
            direction in ("nearest", "down")
            and down >= 1
            and _axis_size(net, axis, down)[0] is not None
        ):
            return down
        if direction in ("nearest", "up") and _axis_size(net, axis, up)[0] is not None:
            return up
    raise InputError(
        f"input_shape: no valid size {direction} of {n} on axis {axis} for {_name(net)!r}"
    )


def check_input_shape(input_shape, ndim: int) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ``ndim`` positive ints, or an InputError.

    Args:
        input_shape: an int or a sequence of ints.
        ndim: the number of spatial axes.
    """
    if input_shape is None:
        raise InputError(f"input_shape: expected {ndim} positive ints (the spatial size), got None")
    return canonical_input_shape(input_shape, ndim)


def _check_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise InputError(f"axis: expected an int in [{-ndim}, {ndim}), got {axis!r}")
    return axis % ndim


def _raise_invalid(net: Any, axis: int, input_shape: tuple[int, ...], reason: str) -> None:
    n = input_shape[axis]
    options = []
    for direction in ("down", "up"):
        try:
            m = _nearest_on_axis(net, axis, n, direction, limit=1024)
        except InputError:
            continue
        if m != n and m not in options:
            options.append(m)
    hint = (
        f"; nearest valid sizes on that axis: {' or '.join(map(str, options))}" if options else ""
    )
    raise InputError(
        f"input_shape: {list(input_shape)} is not a valid input for {_name(net)!r} "
        f"(axis {axis}: {reason}){hint}"
    )


__all__ = [
    "Geometry",
    "field_of_view",
    "geometry",
    "is_valid_input_shape",
    "model_geometry",
    "nearest_valid_input_shape",
    "output_shape",
    "output_stride",
    "smallest_input_shape",
    "valid_input_sizes",
]
