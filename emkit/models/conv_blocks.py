"""Blocks shared by the model families: a (residual) conv block, the head, upsampling.

Blocks are ``apply_<block>(x, ..., name=)`` functions that prefix every layer
name with ``name``, so that a model's summary reads like its spec and the dense
form of a convnet can copy weights layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import layers

from emkit.models.layers import (
    activation_layer,
    conv_class,
    conv_transpose_class,
    cropping_class,
    upsampling_class,
)


def apply_conv_block(
    x,
    convs: Sequence[tuple[tuple[int, ...], int]],
    *,
    padding: str,
    activation: str,
    residual: bool = False,
    skip_from: int = 0,
    batch_norm: bool = False,
    name: str,
):
    """Convolutions, each followed by optional batch norm and an activation.

    With ``residual``, the output of conv ``skip_from`` (0 = the block's input)
    is added to the last conv's output before the last activation (He et al.
    2016). With valid padding the skip is center-cropped to match; when the
    channel counts differ it goes through a 1x1 convolution ``{name}_proj``.

    Args:
        x: Input tensor ``(batch, *spatial, channels)``.
        convs: ``(kernel, filters)`` per convolution, kernel one int per axis.
        padding: ``"valid"`` or ``"same"``.
        activation: Activation name.
        residual: Add the residual skip.
        skip_from: Where the skip starts: 0 = block input, i = after conv i.
        batch_norm: Batch normalization after every conv.
        name: Prefix of every layer name.

    Returns:
        The output tensor.
    """
    ndim = len(x.shape) - 2
    conv = conv_class(ndim)
    residual = residual and skip_from < len(convs)
    skip = x if residual and skip_from == 0 else None
    shrink = [0] * ndim
    for i, (kernel, filters) in enumerate(convs, start=1):
        x = conv(filters, kernel, padding=padding, name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        if residual and skip is not None and i > skip_from:
            shrink = [s + (k - 1 if padding == "valid" else 0) for s, k in zip(shrink, kernel)]
        if residual and i == len(convs):
            x = _add_skip(x, skip, shrink, name=name)
        x = activation_layer(activation, name=f"{name}_act{i}")(x)
        if residual and i == skip_from:
            skip = x
    return x


def _add_skip(x, skip, shrink: list[int], *, name: str):
    ndim = len(x.shape) - 2
    if any(shrink):
        crop = tuple((c // 2, c - c // 2) for c in shrink)
        skip = cropping_class(ndim)(crop, name=f"{name}_res_crop")(skip)
    if skip.shape[-1] != x.shape[-1]:
        skip = conv_class(ndim)(x.shape[-1], 1, name=f"{name}_proj")(skip)
    return layers.Add(name=f"{name}_add")([x, skip])


def apply_head(x, out_channels: int, *, kernel=1, padding: str = "valid", name: str = "head"):
    """The output convolution and a sigmoid.

    The sigmoid layer is named by role: ``boundaries`` for one channel,
    ``affinities`` for more. It computes in float32 whatever the dtype policy, so a
    mixed-precision model (:func:`emkit.training.devices.precision`) still outputs float32
    probabilities to its loss and to inference.

    Args:
        x: the input tensor.
        out_channels: the output channels.
        kernel: the convolution's size.
        padding: ``"valid"`` or ``"same"``.
        name: the layers' name prefix.
    """
    ndim = len(x.shape) - 2
    x = conv_class(ndim)(out_channels, kernel, padding=padding, name=name)(x)
    role = "boundaries" if out_channels == 1 else "affinities"
    return layers.Activation("sigmoid", name=role, dtype="float32")(x)


def apply_upsample(x, filters: int, factor: tuple[int, ...], *, mode: str, name: str):
    """Upsample by ``factor``: a transposed convolution, or nearest-neighbour + 1x1 conv.

    Either way the result has ``filters`` channels. Layers: ``{name}_transpose``,
    or ``{name}_nearest`` and ``{name}_conv``.

    Args:
        x: the input tensor.
        filters: the output channels.
        factor: the upsampling factor per axis.
        mode: ``"transpose"`` or ``"nearest"``.
        name: the layers' name prefix.
    """
    ndim = len(x.shape) - 2
    if mode == "transpose":
        return conv_transpose_class(ndim)(
            filters, factor, strides=factor, padding="valid", name=f"{name}_transpose"
        )(x)
    x = upsampling_class(ndim)(factor, name=f"{name}_nearest")(x)
    return conv_class(ndim)(filters, 1, name=f"{name}_conv")(x)


__all__ = ["apply_conv_block", "apply_head", "apply_upsample"]
