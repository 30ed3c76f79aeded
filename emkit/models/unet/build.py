"""The U-Net family in 2D and 3D: valid or same convolutions, anisotropic pooling.

References:
    O. Ronneberger, P. Fischer, T. Brox. U-Net: convolutional networks for
    biomedical image segmentation. MICCAI 2015.

    O. Cicek, A. Abdulkadir, S. Lienkamp, T. Brox, O. Ronneberger. 3D U-Net:
    learning dense volumetric segmentation from sparse annotation. MICCAI 2016.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from emkit.models import shapes
from emkit.models.conv_blocks import apply_conv_block, apply_head, apply_upsample
from emkit.models.layers import (
    cropping_class,
    max_pooling_class,
)
from emkit.models.spec import per_axis, resolve_spec
from emkit.models.unet.spec import UNetSpec, unet_skip_crops


def build_unet(spec: UNetSpec | dict | None = None, **kwargs: Any) -> keras.Model:
    """Build a U-Net from a spec (or from spec keys as keyword arguments).

    Layers are named ``down{l}_*``, ``pool{l}``, ``bottom_*``, ``up{l}_*`` (with
    ``up{l}_crop`` and ``up{l}_merge``) and ``head``; level 0 is the top.

    Args:
        spec: A :class:`UNetSpec`, or a mapping of its keys.
        **kwargs: Spec keys, when ``spec`` is not given, or overrides.

    Returns:
        A functional ``keras.Model`` named ``spec.name``.
    """
    spec = resolve_spec(spec, UNetSpec, kwargs)
    ndim = spec.ndim
    spatial = spec.input_shape if spec.input_shape is not None else (None,) * ndim
    if spec.input_shape is not None:
        shapes.output_shape(spec, spec.input_shape)  # raises on an invalid size
    kernel = per_axis(spec.kernel, ndim)
    pools = spec.pool_factors()
    crops = unet_skip_crops(spec)

    def block(x, level, name):
        """The ``convs_per_level`` convolutions of one level (:func:`apply_conv_block`).

        Args:
            x: the tensor.
            level: the level (0 at the top, ``spec.depth`` at the bottom); sets the filters.
            name: the layers' name prefix.
        """
        convs = [(kernel, spec.level_filters(level))] * spec.convs_per_level
        return apply_conv_block(
            x,
            convs,
            padding=spec.padding,
            activation=spec.activation,
            residual=spec.residual,
            batch_norm=spec.batch_norm,
            name=name,
        )

    # Contracting path.
    inputs = keras.Input((*spatial, spec.in_channels), name="raw")
    x = inputs
    skips = []
    for level in range(spec.depth):
        x = block(x, level, f"down{level}")
        skips.append(x)
        x = max_pooling_class(ndim)(pools[level], name=f"pool{level}")(x)
    x = block(x, spec.depth, "bottom")

    # Expanding path.
    for level in reversed(range(spec.depth)):
        x = apply_upsample(
            x, spec.level_filters(level), pools[level], mode=spec.upsample, name=f"up{level}"
        )
        skip = skips[level]
        if any(a or b for a, b in crops[level]):
            skip = cropping_class(ndim)(crops[level], name=f"up{level}_crop")(skip)
        if spec.merge == "concat":
            x = layers.Concatenate(name=f"up{level}_merge")([skip, x])
        else:
            x = layers.Add(name=f"up{level}_merge")([skip, x])
        x = block(x, level, f"up{level}")

    # Functional model.
    outputs = apply_head(x, spec.out_channels, name="head")
    return keras.Model(inputs, outputs, name=spec.name)


__all__ = ["build_unet"]
