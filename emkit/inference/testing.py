"""Models with known outputs, to test tiled prediction (and anything that calls it).

Each is a tiny Keras model whose untiled answer is known exactly:

- :func:`mean_model`: a 3x3 (x3) mean filter; with valid padding, the tiled
  prediction of a volume is ``scipy.ndimage.uniform_filter(raw, 3, mode="mirror")``
  (scipy's ``mirror`` is numpy's ``reflect``, the predictor's edge policy).
- :func:`constant_model`: every output voxel is ``value``; a tiled prediction
  that is not constant has weights that do not sum to one.
- :func:`affinity_model`: ``1 - |x(v) - x(v - d)|`` for each offset ``d``:
  exact affinities of the input, so its prediction is the same under every
  flip and transpose once the affinity channels are moved back (test-time
  augmentation).
"""

from __future__ import annotations

import keras
import numpy as np


def _conv(ndim: int):
    return keras.layers.Conv2D if ndim == 2 else keras.layers.Conv3D


def mean_model(ndim: int, input_shape, *, padding: str = "valid") -> keras.Model:
    """A ``3**ndim`` mean filter on one channel.

    Args:
        ndim: 2 or 3.
        input_shape: Spatial input size.
        padding: ``"valid"`` (context 2 per axis) or ``"same"`` (zero-padded).
    """
    x = keras.Input((*input_shape, 1))
    conv = _conv(ndim)(1, 3, padding=padding, use_bias=False,
                       kernel_initializer=keras.initializers.Constant(1 / 3**ndim))
    return keras.Model(x, conv(x), name=f"mean{ndim}d")


def constant_model(ndim: int, input_shape, *, value: float = 0.3, channels: int = 2) -> keras.Model:
    """A valid 3x3 (x3) convolution with zero weights and bias ``value``.

    Args:
        ndim: 2 or 3.
        input_shape: Spatial input size.
        value: every output value.
        channels: the number of output channels.
    """
    x = keras.Input((*input_shape, 1))
    conv = _conv(ndim)(channels, 3, padding="valid", kernel_initializer="zeros",
                       bias_initializer=keras.initializers.Constant(value))
    return keras.Model(x, conv(x), name="constant")


def affinity_model(offsets, input_shape) -> keras.Model:
    """Exact affinities of the input: channel ``i`` is ``1 - |x(v) - x(v - offsets[i])|``.

    Args:
        offsets: ``(z, y, x)`` offsets (or ``(y, x)`` for a 2D model; the last
            ``len(input_shape)`` values of each are used).
        input_shape: Spatial input size, ``(y, x)`` or ``(z, y, x)``.

    Returns:
        A valid-padded model (context ``2 * max |d|`` per axis): two fixed
        convolutions, ``+-(x(v) - x(v - d))``, a ReLU, and a 1x1 head that
        adds them and subtracts from one.
    """
    ndim = len(input_shape)
    offsets = [tuple(int(v) for v in d[-ndim:]) for d in offsets]
    n = len(offsets)
    size = tuple(2 * max(abs(d[a]) for d in offsets) + 1 for a in range(ndim))
    centre = tuple(s // 2 for s in size)
    kernel = np.zeros((*size, 1, 2 * n), np.float32)
    for i, d in enumerate(offsets):
        back = tuple(c - v for c, v in zip(centre, d))
        kernel[(*centre, 0, i)], kernel[(*back, 0, i)] = 1, -1
    kernel[..., n:] = -kernel[..., :n]
    head = np.zeros((1,) * ndim + (2 * n, n), np.float32)
    for i in range(n):
        head[..., i, i] = head[..., n + i, i] = -1
    x = keras.Input((*input_shape, 1))
    difference = _conv(ndim)(2 * n, size, use_bias=False, name="difference")
    combine = _conv(ndim)(n, 1, name="combine")
    y = combine(keras.layers.Activation("relu", name="relu")(difference(x)))
    difference.set_weights([kernel])
    combine.set_weights([head, np.ones(n, np.float32)])
    return keras.Model(x, y, name="affinities")


__all__ = ["affinity_model", "constant_model", "mean_model"]
