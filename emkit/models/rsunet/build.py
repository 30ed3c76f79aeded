"""The residual symmetric U-Net (RSUNet) of Lee et al. 2017, built for SNEMI3D.

Anisotropic and same-padded: a 1x5x5 input embedding, one residual block per
level (a 1x3x3 conv whose output is summed with that of two 3x3x3 convs later),
(1, 2, 2) max-pooling down, upsampling plus a *summed* skip connection up, and
a 1x5x5 output embedding with one sigmoid map per affinity (nearest-neighbour,
plus long-range ones when ``out_channels > 3``).

Reference:
    K. Lee, J. Zung, P. Li, V. Jain, H. S. Seung. Superhuman accuracy on the
    SNEMI3D connectomics challenge. arXiv:1706.00120, 2017.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from emkit.errors import InputError
from emkit.models import shapes
from emkit.models.conv_blocks import apply_conv_block, apply_head, apply_upsample
from emkit.models.layers import activation_layer, conv_class, max_pooling_class
from emkit.models.rsunet.spec import RSUNetSpec
from emkit.models.spec import per_axis, resolve_spec


def apply_residual_block(x, filters: int, spec: RSUNetSpec, *, name: str):
    """One RSUNet level: ``block_kernels`` convs, the skip summed from after the first.

    Args:
        x: the input tensor.
        filters: the level's channels.
        spec: the RSUNet spec (its block kernels, activation, normalization).
        name: the layers' name prefix.
    """
    convs = [(per_axis(k, spec.ndim), filters) for k in spec.block_kernels]
    return apply_conv_block(
        x,
        convs,
        padding="same",
        activation=spec.activation,
        residual=spec.residual,
        skip_from=1,
        batch_norm=spec.batch_norm,
        name=name,
    )


def build_rsunet(spec: RSUNetSpec | dict | None = None, **kwargs: Any) -> keras.Model:
    """Build a residual symmetric U-Net from a spec (or from spec keys).

    Layers are named ``embed_in_*``, ``down{l}_*``, ``pool{l}``, ``bottom_*``,
    ``up{l}_*`` (with ``up{l}_merge``, the summed skip) and ``embed_out``.

    Args:
        spec: A :class:`RSUNetSpec`, or a mapping of its keys.
        **kwargs: Spec keys, when ``spec`` is not given, or overrides.

    Returns:
        A functional ``keras.Model`` named ``spec.name``.
    """
    spec = resolve_spec(spec, RSUNetSpec, kwargs)
    if spec.residual and len(spec.block_kernels) < 2:
        raise InputError(
            "block_kernels: a residual block needs at least 2 convs (the skip starts after "
            f"the first), got {len(spec.block_kernels)}"
        )
    ndim = spec.ndim
    spatial = spec.input_shape if spec.input_shape is not None else (None,) * ndim
    if spec.input_shape is not None:
        shapes.output_shape(spec, spec.input_shape)  # raises on an invalid size
    pool = per_axis(spec.pool, ndim)

    def bn_act(x, name):
        """Batch norm (when ``spec.batch_norm``) then the activation.

        Args:
            x: the tensor.
            name: the layers' name prefix (``<name>_bn``, ``<name>_act``).
        """
        if spec.batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return activation_layer(spec.activation, name=f"{name}_act")(x)

    # Input embedding.
    inputs = keras.Input((*spatial, spec.in_channels), name="raw")
    x = conv_class(ndim)(
        spec.widths[0], per_axis(spec.embed_kernel, ndim), padding="same", name="embed_in"
    )(inputs)
    x = bn_act(x, "embed_in")

    # Contracting path.
    skips = []
    for level in range(spec.depth):
        x = apply_residual_block(x, spec.widths[level], spec, name=f"down{level}")
        skips.append(x)
        x = max_pooling_class(ndim)(pool, name=f"pool{level}")(x)
    x = apply_residual_block(x, spec.widths[-1], spec, name="bottom")

    # Expanding path: upsample, sum the skip, then a residual block.
    for level in reversed(range(spec.depth)):
        x = apply_upsample(x, spec.widths[level], pool, mode=spec.upsample, name=f"up{level}")
        x = layers.Add(name=f"up{level}_merge")([x, skips[level]])
        x = bn_act(x, f"up{level}_merge")
        x = apply_residual_block(x, spec.widths[level], spec, name=f"up{level}")

    # Output embedding.
    outputs = apply_head(
        x,
        spec.out_channels,
        kernel=per_axis(spec.embed_kernel, ndim),
        padding="same",
        name="embed_out",
    )
    return keras.Model(inputs, outputs, name=spec.name)


__all__ = ["apply_residual_block", "build_rsunet"]
