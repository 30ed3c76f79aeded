"""Losses that keep the channel axis, so per-voxel, per-channel weights apply.

Keras' ``binary_crossentropy`` averages over the last axis before the sample weight
is applied; the sampler's weights are per voxel *and* channel (affinity masks differ
per offset), so :class:`ChannelBCE` computes the cross entropy element by element.
"""

from __future__ import annotations

import keras


class ChannelBCE(keras.losses.Loss):
    """Binary cross entropy per voxel and channel, weighted, averaged over all elements.

    Example:
        >>> import numpy as np
        >>> y = np.array([[[1.0, 0.0]]]); p = np.array([[[0.5, 0.5]]])
        >>> round(float(ChannelBCE()(y, p, sample_weight=np.array([[[1.0, 0.0]]]))), 4)
        0.3466
    """

    def __init__(self, name: str = "channel_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        """The cross entropy of every element, before weighting and averaging.

        Args:
            y_true: targets, ``(batch, ..., C)`` in [0, 1].
            y_pred: predicted probabilities, the shape of ``y_true``.

        Returns:
            A tensor of the shape of ``y_true``.
        """
        return keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None])


#: Custom objects to load a checkpoint compiled with these losses.
CUSTOM_OBJECTS = {"ChannelBCE": ChannelBCE}

__all__ = ["CUSTOM_OBJECTS", "ChannelBCE"]
