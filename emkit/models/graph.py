"""The geometry of a built model, read from its layer graph.

:func:`walk` follows a functional Keras model from input to output and tracks,
per spatial axis, the size of every tensor, its stride in input voxels and its
receptive field, using only each layer's config: convolutions (kernel, stride,
dilation, padding), poolings, up-samplings, transposed convolutions, crops and
merges. Normalizations and activations pass through; a spatial transformer
makes the receptive field global. It imports no Keras.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from fractions import Fraction

from emkit.errors import InputError


@dataclass
class Walk:
    """What :func:`walk` finds: sizes, field of view, stride, and why an axis is invalid."""

    output_shape: tuple[int, ...]
    fov: tuple[int | None, ...]
    output_stride: tuple[int, ...]
    reasons: tuple[str, ...]


_PASS_THROUGH = {
    "Activation",
    "ReLU",
    "ELU",
    "LeakyReLU",
    "PReLU",
    "Softmax",
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Identity",
    "Rescaling",
}
_MERGES = {"Add", "Concatenate", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_GLOBAL = {"SpatialTransformer", "SectionAligner"}
_KNOWN = (
    _PASS_THROUGH
    | _MERGES
    | _GLOBAL
    | {f"Conv{n}D" for n in (1, 2, 3)}
    | {f"Conv{n}DTranspose" for n in (1, 2, 3)}
    | {f"MaxPooling{n}D" for n in (1, 2, 3)}
    | {f"AveragePooling{n}D" for n in (1, 2, 3)}
    | {f"UpSampling{n}D" for n in (1, 2, 3)}
    | {f"Cropping{n}D" for n in (1, 2, 3)}
    | {f"ZeroPadding{n}D" for n in (1, 2, 3)}
    | {"DilatedMaxPooling", "InputLayer"}
)


def layer_kind(layer) -> str:
    for cls in type(layer).__mro__:
        if cls.__name__ in _KNOWN:
            return cls.__name__
    raise InputError(
        f"model geometry: layer {layer.name!r} of type {type(layer).__name__} is not one "
        "whose shape effect emkit knows (convolutions, poolings, up-sampling, crops, merges, "
        "normalizations, activations)"
    )


def _tensors(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# Model -> its layer plan; a functional model's graph does not change once built.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(model) -> tuple[list, list, int]:
    """``(steps, input ids, output id)``; a step is ``(kind, name, config, input ids, output ids)``."""
    try:
        return _PLANS[model]
    except (KeyError, TypeError):
        pass
    steps = []
    for layer in model.layers:
        kind = layer_kind(layer)
        outs = [id(t) for t in _tensors(layer.output)]
        if kind == "InputLayer":
            steps.append((kind, layer.name, {}, [], outs))
            continue
        steps.append(
            (kind, layer.name, layer.get_config(), [id(t) for t in _tensors(layer.input)], outs)
        )
    plan = (steps, [id(t) for t in model.inputs], id(model.outputs[0]))
    try:
        _PLANS[model] = plan
    except TypeError:
        pass
    return plan


def walk(model, spatial: tuple[int, ...]) -> Walk:
    """Propagate (size, stride, receptive field) per axis through a functional model.

    Args:
        model: A functional Keras model.
        spatial: Spatial input size; axes are independent, so an invalid size
            on one axis does not affect the others.
    """
    ndim = len(spatial)
    steps, input_ids, output_id = _plan(model)
    # state per tensor: list over axes of [size | None, stride (Fraction), rf (Fraction | inf), reason]
    states: dict[int, list] = {}
    for tensor_id in input_ids:
        states[tensor_id] = [[n, Fraction(1), Fraction(1), ""] for n in spatial]
    for kind, name, config, in_ids, out_ids in steps:
        if kind == "InputLayer":
            for t in out_ids:
                states.setdefault(t, [[n, Fraction(1), Fraction(1), ""] for n in spatial])
            continue
        ins = [states[t] for t in in_ids]
        out = [
            _axis_step(kind, name, config, [s[axis] for s in ins], axis, ndim)
            for axis in range(ndim)
        ]
        for t in out_ids:
            states[t] = out
    final = states[output_id]
    fov, strides = [], []
    for size, stride, rf, _ in final:
        fov.append(None if rf == math.inf else math.ceil(rf))
        if stride.denominator != 1:
            raise InputError(
                f"model geometry: {model.name!r} has a fractional output stride {stride}"
            )
        strides.append(int(stride))
    return Walk(
        output_shape=tuple(s[0] if s[0] is not None else -1 for s in final),
        fov=tuple(fov),
        output_stride=tuple(strides),
        reasons=tuple(s[3] for s in final),
    )


def _axis_step(kind: str, name: str, config: dict, ins: list, axis: int, ndim: int) -> list:
    """One layer's effect on one axis: ``[size, stride, rf, reason]``."""
    size, stride, rf, reason = ins[0]
    if kind in _PASS_THROUGH:
        return [size, stride, rf, reason]
    if kind in _GLOBAL:
        return [size, stride, math.inf, reason]
    if kind in _MERGES:
        sizes = {s[0] for s in ins}
        strides = {s[1] for s in ins}
        if len(strides) > 1:
            raise InputError(
                f"model geometry: merge {name!r} joins inputs of strides {sorted(strides)}"
            )
        reasons = [s[3] for s in ins if s[3]]
        if reasons:
            return [None, stride, max(s[2] for s in ins), reasons[0]]
        if len(sizes) > 1:
            return [
                None,
                stride,
                max(s[2] for s in ins),
                f"merge {name!r} gets sizes {sorted(sizes)} that do not match",
            ]
        return [size, stride, max(s[2] for s in ins), ""]

    def pick(key, default=1):
        """A layer setting on this axis: a per-axis list is indexed, a scalar is shared.

        Args:
            key: the key of the layer's config (``"kernel_size"``, ``"strides"``, ...).
            default: the value when the key is missing or None.
        """
        value = config.get(key, default)
        if value is None:
            return default
        return value[axis] if isinstance(value, (list, tuple)) else value

    if kind.startswith(("Cropping", "ZeroPadding")):
        key = "cropping" if kind.startswith("Cropping") else "padding"
        pair = config[key][axis] if ndim > 1 else config[key]
        a, b = (pair, pair) if isinstance(pair, int) else pair
        if size is None:
            return [None, stride, rf, reason]
        new = size - a - b if kind.startswith("Cropping") else size + a + b
        if new < 1:
            return [None, stride, rf, reason or f"crop {name!r} leaves {new} of {size} voxels"]
        return [new, stride, rf, reason]
    if kind.startswith("UpSampling"):
        u = pick("size", 2)
        return [None if size is None else size * u, stride / u, rf, reason]
    if kind.endswith("Transpose"):
        k, s = pick("kernel_size"), pick("strides")
        if pick("dilation_rate") != 1 or config.get("output_padding") is not None:
            raise InputError(f"model geometry: {name!r}: dilated or output-padded transposed conv")
        rf = rf + (math.ceil(k / s) - 1) * stride
        if size is not None:
            size = size * s + max(k - s, 0) if config.get("padding") == "valid" else size * s
        return [size, stride / s, rf, reason]
    # Convolutions and poolings.
    if kind.startswith("Conv"):
        k, s, d = pick("kernel_size"), pick("strides"), pick("dilation_rate")
    elif kind == "DilatedMaxPooling":
        k, s, d = pick("pool_size"), 1, pick("dilation_rate")
    else:
        k = pick("pool_size")
        s = pick("strides", k) if config.get("strides") is not None else k
        d = 1
    extent = (k - 1) * d + 1
    rf = rf + (k - 1) * d * stride
    padding = config.get("padding", "valid")
    if size is not None and not reason:
        if padding == "valid":
            if size < extent:
                return [None, stride * s, rf, f"{name!r} (size {extent}) gets only {size} voxels"]
            if (size - extent) % s:
                return [
                    None,
                    stride * s,
                    rf,
                    f"{name!r} (size {k}, stride {s}) would drop {(size - extent) % s} voxel(s) of {size}",
                ]
            size = (size - extent) // s + 1
        else:
            if size % s:
                return [
                    None,
                    stride * s,
                    rf,
                    f"{name!r} (stride {s}) gets {size}, not divisible by {s}",
                ]
            size = size // s
    return [size, stride * s, rf, reason]


__all__ = ["Walk", "layer_kind", "walk"]
