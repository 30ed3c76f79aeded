"""The ConvNet family's spec: valid convolutions and max-pooling, then a 1x1 head.

A recipe writes every layer::

    model:
      family: convnet
      ndim: 2
      layers:
        - {type: conv, size: 4, filters: 48}
        - {type: pool, size: 2}
        - {type: conv, size: 3, filters: 200}
      out_channels: 1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from emkit.errors import InputError
from emkit.models import spec as common


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a :class:`ConvNetSpec`: a valid convolution or a max-pooling.

    Args:
        type: ``"conv"`` or ``"pool"``.
        size: Kernel size (conv) or pooling window (pool), an int or one per axis.
        filters: Number of feature maps of a conv; not used by a pool.
        stride: Pooling stride, an int or one per axis; defaults to ``size``.
            Not used by a conv (convolutions have stride 1).
    """

    type: str
    size: int | tuple[int, ...]
    filters: int | None = None
    stride: int | tuple[int, ...] | None = None

    def normalized(self, ndim: int, key: str) -> LayerSpec:
        """This layer checked, with canonical sizes (a pool's stride None when it equals the size).

        Args:
            ndim: the network's number of spatial axes.
            key: the layer's recipe key (e.g. ``layers[2]``), for error messages.

        Raises:
            InputError: a bad type or size, a conv without filters or with a stride, or a
                pool with filters.
        """
        common.check_choice(self.type, ("conv", "pool"), f"{key}.type")
        size = common.canonical_size(self.size, ndim, f"{key}.size")
        if self.type == "conv":
            common.check_int(self.filters, f"{key}.filters")
            if self.stride is not None:
                raise InputError(
                    f"{key}.stride: convolutions in a convnet have stride 1; got {self.stride!r}"
                    " (use a pool layer to downsample)"
                )
            return LayerSpec("conv", size, self.filters, None)
        if self.filters is not None:
            raise InputError(f"{key}.filters: a pool layer has no filters, got {self.filters!r}")
        stride = (
            size if self.stride is None else common.canonical_size(self.stride, ndim, f"{key}.stride")
        )
        return LayerSpec("pool", size, None, None if stride == size else stride)


@dataclass(frozen=True)
class ConvNetSpec(common.BaseSpec):
    """A plain convolutional network: valid convolutions and max-pooling, then a 1x1 head.

    The head is a 1x1 convolution to ``out_channels`` followed by a sigmoid, so
    ``layers`` lists the body only (N4's listing ends ``conv3x200`` + this head).

    Args:
        name: Model name.
        ndim: 2 for ``(batch, y, x, c)`` inputs, 3 for ``(batch, z, y, x, c)``.
        layers: The body, in order.
        in_channels: Channels of the input image.
        out_channels: 1 = boundaries, 3 = nearest-neighbour affinities (z, y, x),
            more = long-range affinities too.
        activation: Nonlinearity after every conv of the body.
        residual: Wrap each run of convs between two pools in a residual block.
        batch_norm: Batch normalization after every conv of the body.
        width_factor: Multiplies every ``filters`` (rounded, at least 1); for tests.
        input_shape: Spatial input size the model is built for; ``None`` builds
            a model that accepts any valid size.
    """

    family: ClassVar[str] = "convnet"

    name: str = "convnet"
    ndim: int = 2
    layers: tuple[LayerSpec, ...] = ()
    in_channels: int = 1
    out_channels: int = 1
    activation: str = "relu"
    residual: bool = False
    batch_norm: bool = False
    width_factor: float = 1.0
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        common.check_choice(self.ndim, (2, 3), "ndim")
        if not self.layers:
            raise InputError("layers: a convnet needs at least one layer, got none")
        layers = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Mapping):
                layer = _dict_to_layer(layer, f"layers[{i}]")
            elif not isinstance(layer, LayerSpec):
                raise InputError(
                    f"layers[{i}]: expected a mapping with type/size/..., got {layer!r}"
                )
            layers.append(layer.normalized(self.ndim, f"layers[{i}]"))
        if layers[0].type != "conv":
            raise InputError("layers[0]: a convnet starts with a conv layer, got a pool")
        common.set_field(self, "layers", tuple(layers))
        self.check_shared_fields()
        if not isinstance(self.width_factor, (int, float)) or self.width_factor <= 0:
            raise InputError(f"width_factor: expected a number > 0, got {self.width_factor!r}")

    def filters(self, layer: LayerSpec) -> int:
        """The number of feature maps of a conv layer after ``width_factor``."""
        return max(1, round(layer.filters * self.width_factor))

    def field_of_view(self) -> tuple[int, ...]:
        """Per axis: grows by ``(k - 1) * jump`` at each layer; pools multiply the jump."""
        fov = []
        for axis in range(self.ndim):
            r, j = 1, 1
            for layer in self.layers:
                r += (common.per_axis(layer.size, self.ndim)[axis] - 1) * j
                if layer.type == "pool":
                    j *= common.per_axis(layer.stride or layer.size, self.ndim)[axis]
            fov.append(r)
        return tuple(fov)

    def output_stride(self) -> tuple[int, ...]:
        """The product of the pooling strides, per axis (16 for N4)."""
        strides = [1] * self.ndim
        for layer in self.layers:
            if layer.type == "pool":
                s = common.per_axis(layer.stride or layer.size, self.ndim)
                strides = [a * b for a, b in zip(strides, s)]
        return tuple(strides)

    def axis_output_size(self, axis: int, n: int) -> tuple[int | None, str]:
        """Valid convolutions and pools, layer by layer; a pool may not drop voxels.

        Arguments as for :meth:`BaseSpec.axis_output_size`; returns ``(size, "")``, or
        ``(None, reason)`` naming the layer that fails.
        """
        for i, layer in enumerate(self.layers):
            k = common.per_axis(layer.size, self.ndim)[axis]
            s = (common.per_axis(layer.stride or layer.size, self.ndim)[axis]
                 if layer.type == "pool" else 1)
            if n < k:
                return None, f"layers[{i}] ({layer.type} {k}) gets {n} voxels, fewer than its size"
            if (n - k) % s:
                return (
                    None,
                    f"layers[{i}] (pool {k}, stride {s}) would drop {(n - k) % s} voxel(s) of {n}",
                )
            n = (n - k) // s + 1
        return n, ""


def _dict_to_layer(entry: Mapping, key: str) -> LayerSpec:
    allowed = [f.name for f in dataclasses.fields(LayerSpec)]
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise InputError(f"{key}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    if "type" not in entry or "size" not in entry:
        raise InputError(f"{key}: needs 'type' (conv or pool) and 'size', got {dict(entry)!r}")
    return LayerSpec(**entry)


__all__ = ["ConvNetSpec", "LayerSpec"]
