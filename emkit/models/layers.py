"""Small Keras pieces shared by the builders: layer classes by rank, and a dilated max-pool.

:class:`DilatedMaxPooling` is the max-pooling of the dense ("filter
rarefaction", ZNN / DeepEM "dilated") form of a pooled patch classifier: a
stride-1 max-filter whose window taps are ``dilation_rate`` apart. It is written
with ``keras.ops`` slices so that it runs on any backend, and is registered for
``.keras`` serialization.
"""

from __future__ import annotations

import itertools

import keras
from keras import layers, ops

from emkit.errors import InputError
from emkit.io.plain import to_plain


def conv_class(ndim: int):
    """``Conv2D`` or ``Conv3D``."""
    return {2: layers.Conv2D, 3: layers.Conv3D}[ndim]


def conv_transpose_class(ndim: int):
    return {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}[ndim]


def max_pooling_class(ndim: int):
    return {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}[ndim]


def upsampling_class(ndim: int):
    return {2: layers.UpSampling2D, 3: layers.UpSampling3D}[ndim]


def cropping_class(ndim: int):
    return {2: layers.Cropping2D, 3: layers.Cropping3D}[ndim]


def activation_layer(activation: str, name: str):
    """An activation layer by word (``relu``, ``elu``, ``linear``, ...).

    Args:
        activation: the Keras activation's name.
        name: the layer's name.
    """
    return layers.Activation(activation, name=name)


@keras.saving.register_keras_serializable(package="emkit")
class DilatedMaxPooling(layers.Layer):
    """Stride-1 max-pooling whose window taps are ``dilation_rate`` voxels apart.

    Output voxel ``i`` is ``max(x[i + t * dilation_rate] for t in range(pool_size))``
    on every spatial axis ("valid": the output is ``(pool_size - 1) * dilation_rate``
    smaller than the input). With ``dilation_rate`` equal to the product of the
    strides before it, it computes, at every input offset, what a strided
    max-pooling computes at one offset.

    Args:
        pool_size: Window size, an int or one per spatial axis.
        dilation_rate: Distance between window taps, an int or one per axis.
        **kwargs: Passed to ``keras.layers.Layer`` (``name``, ``dtype``).

    Input shape:
        ``(batch, *spatial, channels)`` with 1 to 3 spatial axes.
    """

    def __init__(self, pool_size=2, dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.dilation_rate = dilation_rate

    def _per_axis(self, value, ndim: int, key: str) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * ndim
        value = tuple(int(v) for v in value)
        if len(value) != ndim:
            raise InputError(
                f"{key}: expected {ndim} values for a {ndim}D input, got {list(value)}"
            )
        return value

    def call(self, inputs):
        ndim = len(inputs.shape) - 2
        pool = self._per_axis(self.pool_size, ndim, "pool_size")
        dilation = self._per_axis(self.dilation_rate, ndim, "dilation_rate")
        result = None
        for taps in itertools.product(*(range(k) for k in pool)):
            index = [slice(None)]
            for t, k, d in zip(taps, pool, dilation):
                stop = (k - 1 - t) * d
                index.append(slice(t * d, -stop if stop else None))
            index.append(slice(None))
            window = inputs[tuple(index)]
            result = window if result is None else ops.maximum(result, window)
        return result

    def compute_output_shape(self, input_shape):
        ndim = len(input_shape) - 2
        pool = self._per_axis(self.pool_size, ndim, "pool_size")
        dilation = self._per_axis(self.dilation_rate, ndim, "dilation_rate")
        spatial = [
            None if n is None else n - (k - 1) * d
            for n, k, d in zip(input_shape[1:-1], pool, dilation)
        ]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": to_plain(self.pool_size),
                "dilation_rate": to_plain(self.dilation_rate),
            }
        )
        return config


__all__ = [
    "DilatedMaxPooling",
    "activation_layer",
    "conv_class",
    "conv_transpose_class",
    "cropping_class",
    "max_pooling_class",
    "upsampling_class",
]
