"""Declarative architecture specs: small frozen dataclasses that map 1:1 to YAML keys.

A spec says what a network is; a builder (``build_convnet``, ``build_unet``,
``build_rsunet``) turns it into a Keras model, and :mod:`emkit.models.shapes`
computes its field of view and valid sizes without building anything. Specs are
plain data: they hold no Keras objects and import nothing heavy.

A recipe writes a spec either from a registered architecture plus overrides::

    model:
      arch: n4            # a name from emkit.models.architectures.ARCHITECTURES
      out_channels: 3

or from a family with every key explicit::

    model:
      family: convnet
      ndim: 2
      layers:
        - {type: conv, size: 4, filters: 48}
        - {type: pool, size: 2}
        - {type: conv, size: 3, filters: 200}
      out_channels: 1

Sizes (kernels, pooling windows, strides) are an int for every axis or a list
with one int per axis, in ``(z, y, x)`` order. Unknown keys are errors that name
the key and list the allowed ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from emkit.errors import InputError
from emkit.io.plain import to_plain

ACTIVATIONS = ("relu", "elu", "tanh", "leaky_relu", "gelu", "silu", "linear")
PADDINGS = ("valid", "same")
UPSAMPLE_MODES = ("transpose", "nearest")
MERGE_MODES = ("concat", "add")


# --------------------------------------------------------------------------- helpers


def _canonical_size(value: Any, ndim: int, key: str, *, minimum: int = 1) -> int | tuple[int, ...]:
    """An int if the size is the same on every axis, else a tuple with one int per axis."""
    if isinstance(value, bool):
        raise InputError(f"{key}: expected an int or a list of {ndim} ints, got {value!r}")
    if isinstance(value, int):
        sizes = (value,) * ndim
    elif isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        if len(value) != ndim:
            raise InputError(
                f"{key}: expected {ndim} sizes (one per axis of a {ndim}D network), "
                f"got {list(value)}"
            )
        sizes = tuple(value)
    else:
        raise InputError(f"{key}: expected an int or a list of {ndim} ints, got {value!r}")
    if any(v < minimum for v in sizes):
        raise InputError(f"{key}: sizes must be >= {minimum}, got {list(sizes)}")
    return sizes[0] if len(set(sizes)) == 1 else sizes


def per_axis(value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Expand a canonical size (int or per-axis tuple) to one int per axis.

    Args:
        value: an int (every axis) or one int per axis.
        ndim: the number of axes.
    """
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def _check_choice(value: Any, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise InputError(f"{key}: got {value!r}; allowed: {', '.join(map(str, allowed))}")


def _check_int(value: Any, key: str, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{key}: expected an int >= {minimum}, got {value!r}")


def _check_bool(value: Any, key: str) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{key}: expected true or false, got {value!r}")


def _canonical_input_shape(value: Any, ndim: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != ndim
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InputError(
            f"input_shape: expected {ndim} positive ints (spatial size, "
            f"{'(z, y, x)' if ndim == 3 else '(y, x)'}) or null, got {value!r}"
        )
    return tuple(value)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- ConvNet


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
        _check_choice(self.type, ("conv", "pool"), f"{key}.type")
        size = _canonical_size(self.size, ndim, f"{key}.size")
        if self.type == "conv":
            _check_int(self.filters, f"{key}.filters")
            if self.stride is not None:
                raise InputError(
                    f"{key}.stride: convolutions in a convnet have stride 1; got {self.stride!r}"
                    " (use a pool layer to downsample)"
                )
            return LayerSpec("conv", size, self.filters, None)
        if self.filters is not None:
            raise InputError(f"{key}.filters: a pool layer has no filters, got {self.filters!r}")
        stride = (
            size if self.stride is None else _canonical_size(self.stride, ndim, f"{key}.stride")
        )
        return LayerSpec("pool", size, None, None if stride == size else stride)


@dataclass(frozen=True)
class ConvNetSpec:
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
        _check_choice(self.ndim, (2, 3), "ndim")
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
        _set(self, "layers", tuple(layers))
        _check_int(self.in_channels, "in_channels")
        _check_int(self.out_channels, "out_channels")
        _check_choice(self.activation, ACTIVATIONS, "activation")
        _check_bool(self.residual, "residual")
        _check_bool(self.batch_norm, "batch_norm")
        if not isinstance(self.width_factor, (int, float)) or self.width_factor <= 0:
            raise InputError(f"width_factor: expected a number > 0, got {self.width_factor!r}")
        _set(self, "input_shape", _canonical_input_shape(self.input_shape, self.ndim))

    def filters(self, layer: LayerSpec) -> int:
        """The number of feature maps of a conv layer after ``width_factor``."""
        return max(1, round(layer.filters * self.width_factor))


def _dict_to_layer(entry: Mapping, key: str) -> LayerSpec:
    allowed = [f.name for f in dataclasses.fields(LayerSpec)]
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise InputError(f"{key}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    if "type" not in entry or "size" not in entry:
        raise InputError(f"{key}: needs 'type' (conv or pool) and 'size', got {dict(entry)!r}")
    return LayerSpec(**entry)


# --------------------------------------------------------------------------- U-Net


@dataclass(frozen=True)
class UNetSpec:
    """A U-Net (Ronneberger et al. 2015; 3D: Cicek et al. 2016) in 2D or 3D.

    Level ``l`` (0 = full resolution) has ``base_filters * filter_growth**l``
    feature maps and ``convs_per_level`` convolutions on the way down and again
    on the way up; ``depth`` poolings separate the levels.

    Args:
        name: Model name.
        ndim: 2 or 3.
        depth: Number of poolings (levels below the top).
        base_filters: Feature maps at the top level.
        filter_growth: Factor between the feature maps of two levels.
        convs_per_level: Convolutions per level and direction.
        kernel: Convolution kernel, an int or one per axis, e.g. ``[1, 3, 3]``.
        padding: ``"valid"`` (output smaller than input, skips center-cropped)
            or ``"same"``.
        pool: Pooling factors: an int, one per axis (e.g. ``[1, 2, 2]`` for
            anisotropic EM), or a list with one entry per level.
        upsample: ``"transpose"`` (transposed convolution, kernel = stride =
            pool factor) or ``"nearest"`` (nearest-neighbour upsampling + 1x1 conv).
        merge: How a skip joins the upsampled path: ``"concat"`` or ``"add"``.
        in_channels: Channels of the input image.
        out_channels: 1 = boundaries, 3 = affinities, more = long-range too.
        activation: Nonlinearity after every conv.
        residual: Make every level's convs a residual block.
        batch_norm: Batch normalization after every conv.
        input_shape: Spatial input size; ``None`` accepts any valid size.
    """

    family: ClassVar[str] = "unet"

    name: str = "unet"
    ndim: int = 2
    depth: int = 4
    base_filters: int = 64
    filter_growth: int = 2
    convs_per_level: int = 2
    kernel: int | tuple[int, ...] = 3
    padding: str = "valid"
    pool: int | tuple = 2
    upsample: str = "transpose"
    merge: str = "concat"
    in_channels: int = 1
    out_channels: int = 1
    activation: str = "relu"
    residual: bool = False
    batch_norm: bool = False
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_choice(self.ndim, (2, 3), "ndim")
        _check_int(self.depth, "depth", minimum=0)
        _check_int(self.base_filters, "base_filters")
        _check_int(self.filter_growth, "filter_growth")
        _check_int(self.convs_per_level, "convs_per_level")
        _set(self, "kernel", _canonical_size(self.kernel, self.ndim, "kernel"))
        _check_choice(self.padding, PADDINGS, "padding")
        _set(self, "pool", _canonical_levels(self.pool, self.ndim, self.depth, "pool"))
        _check_choice(self.upsample, UPSAMPLE_MODES, "upsample")
        _check_choice(self.merge, MERGE_MODES, "merge")
        _check_int(self.in_channels, "in_channels")
        _check_int(self.out_channels, "out_channels")
        _check_choice(self.activation, ACTIVATIONS, "activation")
        _check_bool(self.residual, "residual")
        _check_bool(self.batch_norm, "batch_norm")
        _set(self, "input_shape", _canonical_input_shape(self.input_shape, self.ndim))

    def level_filters(self, level: int) -> int:
        return self.base_filters * self.filter_growth**level

    def pool_factors(self) -> tuple[tuple[int, ...], ...]:
        """One per-axis pooling factor per level."""
        return _level_factors(self.pool, self.ndim, self.depth)


def _canonical_levels(value: Any, ndim: int, depth: int, key: str):
    """Pool factors: one size for every level (int / per-axis tuple) or a tuple per level.

    A flat list of ints means one factor per axis; a list containing lists means
    one entry per level. Identical per-level entries collapse to one.
    """
    if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in value):
        if len(value) != depth:
            raise InputError(
                f"{key}: a per-level list needs one entry per level (depth={depth}), "
                f"got {len(value)}: {to_plain(value)}"
            )
        levels = tuple(
            per_axis(_canonical_size(v, ndim, f"{key}[{i}]"), ndim) for i, v in enumerate(value)
        )
        if len(set(levels)) == 1:
            return _canonical_size(levels[0], ndim, key)
        return levels
    return _canonical_size(value, ndim, key)


def _level_factors(value, ndim: int, depth: int) -> tuple[tuple[int, ...], ...]:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return value
    return (per_axis(value, ndim),) * depth


# --------------------------------------------------------------------------- RSUNet


@dataclass(frozen=True)
class RSUNetSpec:
    """The residual symmetric U-Net of Lee et al. 2017 (SNEMI3D "superhuman").

    Same-padded, anisotropic: a ``embed_kernel`` convolution embeds the input;
    every level is a residual block whose first convolution (``block_kernels[0]``,
    1x3x3) feeds a skip that is summed after the last one; levels are joined by
    ``pool`` max-pooling on the way down and by upsampling plus a *summed* skip
    connection on the way up; a final ``embed_kernel`` convolution gives
    ``out_channels`` sigmoid maps (3 nearest-neighbour affinities, more with
    long-range affinities).

    Args:
        name: Model name.
        ndim: 3 (the published form) or 2.
        widths: Feature maps per level, top to bottom; ``len(widths) - 1`` poolings.
        pool: Pooling factor per axis, the same at every level.
        embed_kernel: Kernel of the input and output embedding convolutions.
        block_kernels: Kernels of the convolutions of one residual block.
        upsample: ``"transpose"`` (transposed convolution) or ``"nearest"``
            (nearest-neighbour upsampling + 1x1 conv).
        in_channels: Channels of the input image.
        out_channels: Number of sigmoid output maps.
        activation: Nonlinearity (ELU in the paper).
        residual: Use the residual skip inside each block.
        batch_norm: Batch normalization after every conv (as in the paper).
        input_shape: Spatial input size; ``None`` accepts any valid size.

    Reference:
        K. Lee, J. Zung, P. Li, V. Jain, H. S. Seung. Superhuman accuracy on the
        SNEMI3D connectomics challenge. arXiv:1706.00120, 2017.
    """

    family: ClassVar[str] = "rsunet"

    name: str = "rsunet"
    ndim: int = 3
    widths: tuple[int, ...] = (28, 36, 48, 64, 80)
    pool: int | tuple[int, ...] = (1, 2, 2)
    embed_kernel: int | tuple[int, ...] = (1, 5, 5)
    block_kernels: tuple = ((1, 3, 3), 3, 3)
    upsample: str = "transpose"
    in_channels: int = 1
    out_channels: int = 3
    activation: str = "elu"
    residual: bool = True
    batch_norm: bool = True
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_choice(self.ndim, (2, 3), "ndim")
        if not isinstance(self.widths, (list, tuple)) or not self.widths:
            raise InputError(f"widths: expected a non-empty list of ints, got {self.widths!r}")
        for i, w in enumerate(self.widths):
            _check_int(w, f"widths[{i}]")
        _set(self, "widths", tuple(self.widths))
        _set(self, "pool", _canonical_size(self.pool, self.ndim, "pool"))
        _set(self, "embed_kernel", _canonical_size(self.embed_kernel, self.ndim, "embed_kernel"))
        if not isinstance(self.block_kernels, (list, tuple)) or not self.block_kernels:
            raise InputError(
                f"block_kernels: expected a non-empty list of kernel sizes, got {self.block_kernels!r}"
            )
        _set(
            self,
            "block_kernels",
            tuple(
                _canonical_size(k, self.ndim, f"block_kernels[{i}]")
                for i, k in enumerate(self.block_kernels)
            ),
        )
        for key in ("embed_kernel", "block_kernels"):
            kernels = [self.embed_kernel] if key == "embed_kernel" else list(self.block_kernels)
            if any(k % 2 == 0 for kern in kernels for k in per_axis(kern, self.ndim)):
                raise InputError(
                    f"{key}: same padding needs odd kernel sizes, got {to_plain(kernels)}"
                )
        _check_choice(self.upsample, UPSAMPLE_MODES, "upsample")
        _check_int(self.in_channels, "in_channels")
        _check_int(self.out_channels, "out_channels")
        _check_choice(self.activation, ACTIVATIONS, "activation")
        _check_bool(self.residual, "residual")
        _check_bool(self.batch_norm, "batch_norm")
        _set(self, "input_shape", _canonical_input_shape(self.input_shape, self.ndim))

    @property
    def depth(self) -> int:
        return len(self.widths) - 1


# --------------------------------------------------------------------------- dict <-> spec

Spec = ConvNetSpec | UNetSpec | RSUNetSpec

# Family name -> spec class. A plain, static dict.
FAMILIES: dict[str, type] = {
    "convnet": ConvNetSpec,
    "unet": UNetSpec,
    "rsunet": RSUNetSpec,
}


def spec_fields(cls: type) -> list[str]:
    """The YAML keys of a spec class, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def keys_to_spec(cls: type, config: Mapping[str, Any], *, base: Spec | None = None) -> Spec:
    """A spec of class ``cls`` from the keys a recipe writes, over ``base`` when given.

    Args:
        cls: the spec class (a family's).
        config: its keys; ``family`` may be given and must be ``cls.family``.
        base: a registered architecture's spec to start from (its class is ``cls``).

    Raises:
        InputError: a key that ``cls`` does not have, or another family.

    >>> keys_to_spec(UNetSpec, {"depth": 2}).depth
    2
    """
    config = dict(config)
    family = config.pop("family", cls.family)
    if family != cls.family:
        raise InputError(f"family: expected {cls.family!r} here, got {family!r}")
    allowed = spec_fields(cls)
    for key in config:
        if key not in allowed:
            raise InputError(
                f"unknown key {key!r} for a {cls.family} spec; allowed: arch, family, {', '.join(allowed)}"
            )
    if "layers" in config and isinstance(config["layers"], (list, tuple)):
        config["layers"] = tuple(
            _dict_to_layer(entry, f"layers[{i}]") if isinstance(entry, Mapping) else entry
            for i, entry in enumerate(config["layers"])
        )
    if base is not None:
        return dataclasses.replace(base, **config)
    return cls(**config)


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The mapping that :func:`emkit.models.architectures.dict_to_spec` turns back into ``spec``
    (YAML-ready)."""
    out: dict[str, Any] = {"family": spec.family}
    for key in spec_fields(type(spec)):
        value = getattr(spec, key)
        if key == "layers":
            value = [
                {k: to_plain(v) for k, v in dataclasses.asdict(layer).items() if v is not None}
                for layer in value
            ]
        out[key] = to_plain(value)
    return out


def replace(spec: Spec, **changes: Any) -> Spec:
    """``dataclasses.replace`` for specs, with unknown keys reported as InputError."""
    allowed = spec_fields(type(spec))
    for key in changes:
        if key not in allowed:
            raise InputError(
                f"unknown key {key!r} for a {spec.family} spec; allowed: {', '.join(allowed)}"
            )
    return dataclasses.replace(spec, **changes)


def resolve_spec(spec: Spec | Mapping | None, cls: type, overrides: Mapping[str, Any]) -> Spec:
    """The spec a builder works from: a spec, a mapping of its keys, or keyword arguments.

    Args:
        spec: A ``cls`` instance, a mapping of its keys, or ``None``.
        cls: The spec class the builder needs.
        overrides: Keys to set on top (the builder's ``**kwargs``).
    """
    if spec is None:
        spec = keys_to_spec(cls, overrides)
        overrides = {}
    elif isinstance(spec, Mapping):
        spec = keys_to_spec(cls, spec)
    if not isinstance(spec, cls):
        raise InputError(
            f"spec: this builder needs a {cls.__name__} (family {cls.family!r}), "
            f"got {type(spec).__name__}"
        )
    return replace(spec, **overrides) if overrides else spec


__all__ = [
    "FAMILIES",
    "ConvNetSpec",
    "LayerSpec",
    "RSUNetSpec",
    "Spec",
    "UNetSpec",
    "keys_to_spec",
    "per_axis",
    "replace",
    "resolve_spec",
    "spec_fields",
    "spec_to_dict",
]
