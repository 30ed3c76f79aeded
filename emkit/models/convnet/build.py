"""The ConvNet builder: valid convolutions and max-pooling, as in N4, VD2D and VD2D-3D.

These were trained as patch classifiers: an input the size of the field of view
gives one output voxel. Larger valid inputs give outputs ``output_stride`` apart;
:func:`emkit.models.convnet.dense.dense_model` gives the dense, full-resolution form.

References:
    D. Ciresan, A. Giusti, L. Gambardella, J. Schmidhuber. Deep neural networks
    segment neuronal membranes in electron microscopy images. NIPS 2012 (N4).

    K. Lee, A. Zlateski, A. Vishwanathan, H. S. Seung. Recursive training of
    2D-3D convolutional networks for neuronal boundary detection. NIPS 2015
    (VD2D, VD2D-3D).
"""

from __future__ import annotations

from typing import Any

import keras

from emkit.models import shapes
from emkit.models.conv_blocks import apply_conv_block, apply_head
from emkit.models.convnet.spec import ConvNetSpec
from emkit.models.layers import max_pooling_class
from emkit.models.spec import per_axis, resolve_spec


def build_convnet(spec: ConvNetSpec | dict | None = None, **kwargs: Any) -> keras.Model:
    """Build a ConvNet from a spec (or from spec keys as keyword arguments).

    Each run of convolutions between two poolings is one block ``block{i}``
    (layers ``block{i}_conv{j}``, ``block{i}_act{j}``), pools are ``pool{i}``,
    then a 1x1 convolution ``head`` and a sigmoid.

    Args:
        spec: A :class:`ConvNetSpec`, or a mapping of its keys.
        **kwargs: Spec keys, when ``spec`` is not given, or overrides.

    Returns:
        A functional ``keras.Model`` named ``spec.name``.

    >>> from emkit.models.architectures import ARCHITECTURES
    >>> build_convnet(ARCHITECTURES["n4"]).output_shape
    (None, 1, 1, 1)
    """
    spec = resolve_spec(spec, ConvNetSpec, kwargs)
    ndim = spec.ndim
    spatial = spec.input_shape if spec.input_shape is not None else (None,) * ndim
    if spec.input_shape is not None:
        shapes.output_shape(spec, spec.input_shape)  # raises on an invalid size

    # Layers, in spec order: runs of convs become blocks.
    inputs = keras.Input((*spatial, spec.in_channels), name="raw")
    x = inputs
    block, pool, convs = 0, 0, []

    def flush(x):
        nonlocal block, convs
        if not convs:
            return x
        block += 1
        x = apply_conv_block(
            x,
            convs,
            padding="valid",
            activation=spec.activation,
            residual=spec.residual,
            batch_norm=spec.batch_norm,
            name=f"block{block}",
        )
        convs = []
        return x

    for layer in spec.layers:
        if layer.type == "conv":
            convs.append((per_axis(layer.size, ndim), spec.filters(layer)))
            continue
        x = flush(x)
        pool += 1
        x = max_pooling_class(ndim)(
            pool_size=per_axis(layer.size, ndim),
            strides=per_axis(layer.stride or layer.size, ndim),
            padding="valid",
            name=f"pool{pool}",
        )(x)
    x = flush(x)

    # Functional model.
    outputs = apply_head(x, spec.out_channels, name="head")
    return keras.Model(inputs, outputs, name=spec.name)


__all__ = ["build_convnet"]
