"""A spatial transformer: a localization net predicts a warp, a bilinear sampler applies it.

The layer works on 2D sections ``(batch, y, x, channels)``; fold z into the batch
to align a stack section by section. Given a list ``[moving, reference]`` the
localization net sees both and the sampler warps ``moving``; given one tensor it
warps that tensor by what it sees in it.

Two warps:

- ``"affine"``: a global affine map per image, ``theta`` of shape ``(batch, 2, 3)``
  acting on normalized ``(y, x, 1)`` coordinates in ``[-1, 1]`` (corner pixels at
  -1 and +1). Output pixel ``p`` samples the input at ``theta @ (p, 1)``.
- ``"flow"``: a dense displacement field ``(batch, y, x, 2)`` in pixels, ``(dy, dx)``;
  output pixel ``(i, j)`` samples the input at ``(i + dy, j + dx)``.

Both start as the identity (the last layer is zero-initialized), so an untrained
transformer passes its input through. Samples that fall outside the image read
zeros. Everything is written with ``keras.ops`` and is differentiable in the
image and in the transform.

Reference:
    M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu. Spatial transformer
    networks. NIPS 2015.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from emkit.errors import InputError

TRANSFORMS = ("affine", "flow")


def identity_grid(batch, height, width):
    """Pixel coordinates ``(batch, height, width, 2)`` as ``(y, x)`` floats.

    Args:
        batch: the batch size (a tensor or int).
        height, width: the image size in pixels.
    """
    ys = ops.cast(ops.arange(height), "float32")
    xs = ops.cast(ops.arange(width), "float32")
    grid = ops.stack(ops.meshgrid(ys, xs, indexing="ij"), axis=-1)
    return ops.broadcast_to(grid[None], (batch, height, width, 2))


def affine_grid(theta, height, width):
    """Sample coordinates in pixels ``(batch, height, width, 2)`` for affine maps ``theta``.

    Args:
        theta: ``(batch, 2, 3)``; rows map normalized ``(y, x, 1)`` to source ``y`` and ``x``.
        height: Output height.
        width: Output width.
    """
    h = ops.cast(height, "float32")
    w = ops.cast(width, "float32")
    ys = ops.cast(ops.arange(height), "float32") * 2.0 / ops.maximum(h - 1.0, 1.0) - 1.0
    xs = ops.cast(ops.arange(width), "float32") * 2.0 / ops.maximum(w - 1.0, 1.0) - 1.0
    gy, gx = ops.meshgrid(ys, xs, indexing="ij")
    grid = ops.stack([gy, gx, ops.ones_like(gy)], axis=-1)  # (H, W, 3)
    source = ops.einsum("hwk,bjk->bhwj", grid, theta)  # normalized (y, x)
    scale = ops.stack([(h - 1.0) / 2.0, (w - 1.0) / 2.0])
    return (source + 1.0) * scale


def sampling_coords(transform, kind: str, height, width):
    """Pixel coordinates ``(batch, height, width, 2)`` that a transform samples.

    Args:
        transform: ``theta`` ``(batch, 2, 3)`` for ``kind="affine"``, else a flow
            ``(batch, height, width, 2)`` in pixels.
        kind: ``"affine"`` or ``"flow"``.
        height: Output height (affine; a flow has its own).
        width: Output width (affine; a flow has its own).
    """
    if kind == "affine":
        return affine_grid(transform, height, width)
    shape = ops.shape(transform)
    return identity_grid(shape[0], shape[1], shape[2]) + transform


def bilinear_sample(image, coords):
    """Sample ``image`` at fractional pixel ``coords`` with bilinear interpolation.

    Args:
        image: ``(batch, height, width, channels)``.
        coords: ``(batch, h, w, 2)``, ``(y, x)`` in pixels of ``image``.

    Returns:
        ``(batch, h, w, channels)``; samples outside the image read zeros.
    """
    shape = ops.shape(image)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = image.shape[-1]
    y, x = coords[..., 0], coords[..., 1]
    y0, x0 = ops.floor(y), ops.floor(x)
    wy1, wx1 = y - y0, x - x0
    wy0, wx0 = 1.0 - wy1, 1.0 - wx1
    flat = ops.reshape(image, (-1, channels))
    base = ops.reshape(ops.arange(batch) * height * width, (-1, 1, 1))
    out_shape = (*ops.shape(coords)[:3], channels)
    h_max = ops.cast(height - 1, "float32")
    w_max = ops.cast(width - 1, "float32")

    def tap(yy, xx):
        """The image at integer pixel coordinates, 0 where they lie outside.

        Args:
            yy: ``(batch, h, w)`` y coordinates (integer-valued floats).
            xx: ``(batch, h, w)`` x coordinates (integer-valued floats).
        """
        inside = ops.logical_and(
            ops.logical_and(yy >= 0.0, yy <= h_max), ops.logical_and(xx >= 0.0, xx <= w_max)
        )
        yi = ops.cast(ops.clip(yy, 0.0, h_max), "int32")
        xi = ops.cast(ops.clip(xx, 0.0, w_max), "int32")
        index = ops.reshape(base + yi * width + xi, (-1,))
        values = ops.reshape(ops.take(flat, index, axis=0), out_shape)
        return values * ops.cast(inside, image.dtype)[..., None]

    return (
        (wy0 * wx0)[..., None] * tap(y0, x0)
        + (wy0 * wx1)[..., None] * tap(y0, x0 + 1.0)
        + (wy1 * wx0)[..., None] * tap(y0 + 1.0, x0)
        + (wy1 * wx1)[..., None] * tap(y0 + 1.0, x0 + 1.0)
    )


@keras.saving.register_keras_serializable(package="emkit")
class SpatialTransformer(layers.Layer):
    """Warp a 2D image by an affine map or a dense flow that a small conv net predicts.

    Args:
        transform: ``"affine"`` or ``"flow"``.
        filters: Feature maps of the first localization conv; doubled per level.
        depth: Number of localization convs. For ``"affine"`` each is followed by
            a 2x2 max-pooling; for ``"flow"`` they stay at full resolution with
            dilation ``2**level``.
        kernel_size: Kernel of the localization convs.
        activation: Activation of the localization convs.
        return_transform: Also return ``theta`` ``(batch, 2, 3)`` or the flow
            ``(batch, y, x, 2)``.
        **kwargs: Passed to ``keras.layers.Layer``.

    Call arguments:
        inputs: ``moving`` ``(batch, y, x, c)``, or ``[moving, reference]``.

    Returns:
        The warped ``moving`` (and the transform when ``return_transform``).
    """

    def __init__(
        self,
        transform: str = "affine",
        filters: int = 16,
        depth: int = 3,
        kernel_size: int = 3,
        activation: str = "relu",
        return_transform: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if transform not in TRANSFORMS:
            raise InputError(f"transform: got {transform!r}; allowed: {', '.join(TRANSFORMS)}")
        for key, value in (("filters", filters), ("depth", depth), ("kernel_size", kernel_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{key}: expected an int >= 1, got {value!r}")
        self.transform = transform
        self.filters = filters
        self.depth = depth
        self.kernel_size = kernel_size
        self.activation = activation
        self.return_transform = return_transform

        # Layers of the localization net.
        self.loc_convs = [
            layers.Conv2D(
                filters * 2**level,
                kernel_size,
                padding="same",
                dilation_rate=1 if transform == "affine" else 2**level,
                activation=activation,
                name=f"loc_conv{level}",
            )
            for level in range(depth)
        ]
        if transform == "affine":
            self.loc_pools = [layers.MaxPooling2D(2, padding="same") for _ in range(depth)]
            self.loc_reduce = layers.GlobalAveragePooling2D()
            self.loc_out = layers.Dense(
                6,
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
                name="loc_theta",
            )
        else:
            self.loc_pools = []
            self.loc_out = layers.Conv2D(
                2, kernel_size, padding="same", kernel_initializer="zeros", name="loc_flow"
            )

    def _split(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise InputError(
                    f"inputs: expected moving or [moving, reference], got a list of {len(inputs)}"
                )
            return inputs[0], inputs[1]
        return inputs, None

    def build(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            moving_shape, reference_shape = input_shape
            channels = moving_shape[-1] + reference_shape[-1]
        else:
            moving_shape = input_shape
            channels = moving_shape[-1]
        if len(moving_shape) != 4:
            raise InputError(
                f"inputs: SpatialTransformer takes 2D images (batch, y, x, c), got shape {tuple(moving_shape)}"
            )
        shape = (moving_shape[0], moving_shape[1], moving_shape[2], channels)
        for level, conv in enumerate(self.loc_convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.loc_pools:
                shape = self.loc_pools[level].compute_output_shape(shape)
        if self.transform == "affine":
            self.loc_out.build((shape[0], shape[-1]))
        else:
            self.loc_out.build(shape)

    def call(self, inputs):
        moving, reference = self._split(inputs)
        h = moving if reference is None else ops.concatenate([moving, reference], axis=-1)
        for level, conv in enumerate(self.loc_convs):
            h = conv(h)
            if self.loc_pools:
                h = self.loc_pools[level](h)
        shape = ops.shape(moving)
        if self.transform == "affine":
            transform = ops.reshape(self.loc_out(self.loc_reduce(h)), (-1, 2, 3))
        else:
            transform = self.loc_out(h)
        warped = bilinear_sample(moving, sampling_coords(transform, self.transform,
                                                         shape[1], shape[2]))
        return [warped, transform] if self.return_transform else warped

    def compute_output_shape(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            input_shape = input_shape[0]
        warped = tuple(input_shape)
        if not self.return_transform:
            return warped
        if self.transform == "affine":
            return [warped, (warped[0], 2, 3)]
        return [warped, (*warped[:3], 2)]

    def get_config(self):
        config = super().get_config()
        keys = ("transform", "filters", "depth",
                "kernel_size", "activation", "return_transform")
        config.update({key: getattr(self, key) for key in keys})
        return config


def affine_matrix(rotation_deg: float = 0.0, shift=(0.0, 0.0), scale=(1.0, 1.0)) -> np.ndarray:
    """A ``theta`` ``(2, 3)`` for a rotation, a scaling and a shift in normalized units.

    Handy to build test warps and to initialize alignments.

    Args:
        rotation_deg: rotation in degrees, as [[cos, -sin], [sin, cos]] on (y, x).
        shift: (y, x) shift in normalized units (-1..1 spans the image).
        scale: (y, x) scale factors.
    """
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * np.asarray(scale)[None]
    return np.concatenate([rot, np.asarray(shift, dtype=float)[:, None]], axis=1).astype("float32")


__all__ = ["SpatialTransformer", "affine_grid", "affine_matrix", "bilinear_sample", "identity_grid",
           "sampling_coords"]
