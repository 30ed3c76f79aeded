"""The learned aligner's network and losses: a section-pair spatial transformer (Keras).

:func:`build_pair_aligner` wraps :class:`~emkit.models.spatial_transformer.SpatialTransformer`
in a model with two inputs, ``moving`` and ``reference`` (``(batch, y, x, 1)``, each
standardized), and two outputs:

- ``warped`` ``(batch, y, x, 2)``: channel 0 is ``moving`` warped onto ``reference``,
  channel 1 its coverage (1 where the bilinear sample lies inside ``moving``, falling to
  0 outside), which the NCC loss uses as its valid region;
- ``transform``: ``theta`` ``(batch, 2, 3)`` in normalized coordinates (``"affine"``) or
  the flow ``(batch, y, x, 2)`` in pixels (``"flow"``), mapping reference (output)
  pixels to moving (input) pixels, the convention of :mod:`emkit.align.transforms`.

The network starts as the identity. It is trained either

- without supervision: ``1 - NCC(warped, reference)`` over the valid region (global,
  or local in ``window`` x ``window`` windows, as in VoxelMorph) plus a smoothness
  penalty on the transform (flow: mean squared finite difference; affine: mean squared
  distance of ``theta`` from the identity), or
- with supervision: the mean squared error, in pixels squared, between the sampling
  coordinates the network predicts and the true ones of the generator
  (:mod:`emkit.align.generator`) on every pixel of the crop.

Both go through Keras ``compile``: the ``warped`` output takes :class:`NCCLoss` against
the reference, the ``transform`` output takes :class:`TransformLoss` against the true
sampling coordinates ``(batch, y, x, 2)`` (pixels of ``moving``). The true coordinates
are given in both modes, so :func:`coordinate_error` is reported as a metric even when
the network learns without them.

References:
    M. Jaderberg et al. Spatial transformer networks. NIPS 2015.
    G. Balakrishnan et al. VoxelMorph: a learning framework for deformable medical
    image registration. IEEE TMI 38(8), 2019 (local NCC plus a smoothness penalty).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from emkit.errors import InputError
from emkit.models.spatial_transformer import (
    TRANSFORMS,
    SpatialTransformer,
    bilinear_sample,
    sampling_coords,
)

NCC_KINDS = ("global", "local")
IDENTITY_THETA = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
# Coverage above this counts as inside the section (all four bilinear taps inside).
INSIDE = 0.999


def standardize(image, valid=None) -> np.ndarray:
    """``image`` as float32 with mean 0 and std 1 over ``valid`` pixels; 0 elsewhere.

    Args:
        image: ndarray of any shape.
        valid: bool ndarray of the same shape, or None (every pixel valid).

    >>> standardize(np.array([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """
    image = np.asarray(image, np.float32)
    valid = np.ones(image.shape, bool) if valid is None else np.asarray(valid, bool)
    if not valid.any():
        return np.zeros_like(image)
    values = image[valid]
    std = float(values.std())
    out = (image - float(values.mean())) / (std if std > 0 else 1.0)
    return np.where(valid, out, 0.0).astype(np.float32)


@keras.saving.register_keras_serializable(package="emkit")
class Coverage(layers.Layer):
    """How much of each output pixel's bilinear sample lies inside ``moving``: ``(b, y, x, 1)``.

    Call arguments:
        inputs: ``[moving, transform]``, the transform as the spatial transformer returns it.
    """

    def __init__(self, transform: str = "affine", **kwargs):
        super().__init__(**kwargs)
        if transform not in TRANSFORMS:
            raise InputError(f"transform: got {transform!r}; allowed: {', '.join(TRANSFORMS)}")
        self.transform = transform

    def call(self, inputs):
        moving, transform = inputs
        shape = ops.shape(moving)
        coords = sampling_coords(transform, self.transform, shape[1], shape[2])
        return ops.stop_gradient(bilinear_sample(ops.ones_like(moving[..., :1]), coords))

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[0])[:3], 1)

    def get_config(self):
        return {**super().get_config(), "transform": self.transform}


def build_pair_aligner(transform: str = "affine", *, filters: int = 16, depth: int = 4,
                       kernel_size: int = 3, name: str | None = None) -> keras.Model:
    """The pair network: inputs ``moving``, ``reference``; outputs ``warped``, ``transform``.

    Args:
        transform: ``"affine"`` or ``"flow"``.
        filters, depth, kernel_size: the localization net of the
            :class:`~emkit.models.spatial_transformer.SpatialTransformer`.
        name: the model's name (default ``align_<transform>``).

    Returns:
        An uncompiled ``keras.Model`` on sections of any size (see the module docstring).

    Example:
        >>> model = build_pair_aligner("flow", filters=4, depth=2)
        >>> x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype("float32")
        >>> out = model({"moving": x, "reference": x})
        >>> bool(np.allclose(out["warped"][..., 0], x[..., 0]))
        True
    """
    # Layers.
    transformer = SpatialTransformer(transform, filters=filters, depth=depth,
                                     kernel_size=kernel_size, return_transform=True,
                                     name="transformer")
    coverage = Coverage(transform, name="coverage")
    # Functional model.
    moving = keras.Input((None, None, 1), name="moving")
    reference = keras.Input((None, None, 1), name="reference")
    warped, theta_or_flow = transformer([moving, reference])
    covered = coverage([moving, theta_or_flow])
    warped = layers.Concatenate(name="warped")([warped, covered])
    theta_or_flow = layers.Identity(name="transform")(theta_or_flow)
    return keras.Model({"moving": moving, "reference": reference},
                       {"warped": warped, "transform": theta_or_flow},
                       name=name or f"align_{transform}")


def transform_kind(model) -> str:
    """``"affine"`` or ``"flow"``: the kind of a pair model's spatial transformer."""
    for layer in model.layers:
        if isinstance(layer, SpatialTransformer):
            return layer.transform
    raise InputError(f"model {model.name!r} has no SpatialTransformer layer: not an align model "
                     "(build one with emkit.align.learned_model.build_pair_aligner)")


# ---------------------------------------------------------------------------- losses


def masked_ncc(a, b, weight, *, kind: str = "global", window: int = 9, eps: float = 1e-6):
    """NCC of ``a`` and ``b`` ``(batch, y, x, 1)`` over pixels where ``weight`` is 1.

    Global: one score per image. Local: the NCC of every ``window`` x ``window`` window
    (means and variances by average pooling), averaged over the windows that lie wholly
    in the valid region.

    Args:
        a: tensor of shape (batch, y, x, 1).
        b: tensor of shape (batch, y, x, 1).
        weight: tensor of shape (batch, y, x, 1), 1 on valid pixels and 0 elsewhere.
        kind: ``"global"`` or ``"local"``.
        window: the local window edge in pixels.
        eps: the smallest denominator (standard deviations' product).

    Returns:
        A tensor of shape (batch,); 1 for identical images.
    """
    if kind == "global":
        axes = (1, 2, 3)
        total = ops.maximum(ops.sum(weight, axis=axes), 1.0)
        mean_a = ops.sum(weight * a, axis=axes) / total
        mean_b = ops.sum(weight * b, axis=axes) / total
        da = (a - ops.reshape(mean_a, (-1, 1, 1, 1))) * weight
        db = (b - ops.reshape(mean_b, (-1, 1, 1, 1))) * weight
        cross = ops.sum(da * db, axis=axes)
        norm = ops.sqrt(ops.sum(da * da, axis=axes) * ops.sum(db * db, axis=axes))
        return cross / ops.maximum(norm, eps)

    def pool(x):
        return ops.average_pool(x, window, strides=1, padding="valid")

    inside = ops.cast(pool(weight) > 1.0 - 1e-4, a.dtype)  # windows wholly valid
    a, b = a * weight, b * weight
    mean_a, mean_b = pool(a), pool(b)
    cross = pool(a * b) - mean_a * mean_b
    var_a = ops.relu(pool(a * a) - mean_a * mean_a)
    var_b = ops.relu(pool(b * b) - mean_b * mean_b)
    local = cross / ops.maximum(ops.sqrt(var_a * var_b), eps)
    count = ops.maximum(ops.sum(inside, axis=(1, 2, 3)), 1.0)
    return ops.sum(local * inside, axis=(1, 2, 3)) / count


@keras.saving.register_keras_serializable(package="emkit")
class NCCLoss(keras.losses.Loss):
    """``1 - NCC(warped, reference)`` over the warped section's valid region.

    Args:
        kind: ``"global"`` or ``"local"`` (see :func:`masked_ncc`).
        window: the local window edge in pixels (odd).

    ``y_true`` is the reference ``(batch, y, x, 1)``; ``y_pred`` the model's ``warped``
    output ``(batch, y, x, 2)`` (image, coverage).
    """

    def __init__(self, kind: str = "global", window: int = 9, name: str = "ncc_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in NCC_KINDS:
            raise InputError(f"loss.ncc: got {kind!r}; allowed: {', '.join(NCC_KINDS)}")
        if not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise InputError(f"loss.window: expected an odd int >= 3, got {window!r}")
        self.kind, self.window = kind, window

    def call(self, y_true, y_pred):
        """Per-image loss, ``(batch,)``.

        Args:
            y_true: the reference, tensor of shape (batch, y, x, 1).
            y_pred: the ``warped`` output (batch, y, x, 2): image, coverage; pixels with
                coverage below ``INSIDE`` are left out.
        """
        y_true = ops.cast(y_true, y_pred.dtype)
        weight = ops.cast(y_pred[..., 1:2] >= INSIDE, y_pred.dtype)
        return 1.0 - masked_ncc(y_pred[..., :1], y_true[..., :1], weight, kind=self.kind,
                                window=self.window)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "window": self.window}


def smoothness(transform, kind: str):
    """The transform's penalty, ``(batch,)``: flow, mean squared finite difference
    (y and x, both components); affine, mean squared distance of theta from the identity.

    Args:
        transform: ``theta`` (batch, 2, 3) for ``"affine"``, the flow (batch, y, x, 2)
            in pixels for ``"flow"``.
        kind: ``"affine"`` or ``"flow"``.
    """
    if kind == "affine":
        return ops.mean(ops.square(transform - ops.convert_to_tensor(IDENTITY_THETA)), axis=(1, 2))
    dy = transform[:, 1:] - transform[:, :-1]
    dx = transform[:, :, 1:] - transform[:, :, :-1]
    return ops.mean(ops.square(dy), axis=(1, 2, 3)) + ops.mean(ops.square(dx), axis=(1, 2, 3))


def coordinate_error(true_coords, transform, kind: str, *, squared: bool = False):
    """Mean distance (pixels) between the predicted and true sampling coordinates, ``(batch,)``.

    Args:
        true_coords: tensor of shape (batch, y, x, 2), the true sampling coordinates
            (y, x) in pixels of ``moving`` for each reference pixel.
        transform: the predicted ``theta`` (batch, 2, 3) or flow (batch, y, x, 2).
        kind: ``"affine"`` or ``"flow"``.
        squared: the mean squared distance (pixels squared) instead.
    """
    true_coords = ops.cast(true_coords, "float32")
    shape = ops.shape(true_coords)
    diff = sampling_coords(transform, kind, shape[1], shape[2]) - true_coords
    squares = ops.sum(ops.square(diff), axis=-1)
    if squared:
        return ops.mean(squares, axis=(1, 2))
    return ops.mean(ops.sqrt(squares + 1e-12), axis=(1, 2))


@keras.saving.register_keras_serializable(package="emkit")
class TransformLoss(keras.losses.Loss):
    """``supervised`` x coordinate MSE (px^2) + ``smoothness`` x the transform's penalty.

    ``y_true``: the true sampling coordinates ``(batch, y, x, 2)`` in pixels of ``moving``;
    ``y_pred``: the ``transform`` output.
    """

    def __init__(self, transform: str = "affine", supervised: float = 0.0,
                 smoothness: float = 0.0, name: str = "transform_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if transform not in TRANSFORMS:
            raise InputError(f"transform: got {transform!r}; allowed: {', '.join(TRANSFORMS)}")
        self.transform = transform
        self.supervised, self.smoothness = float(supervised), float(smoothness)

    def call(self, y_true, y_pred):
        """Per-image loss, ``(batch,)`` (zeros when both weights are 0).

        Args:
            y_true: the true sampling coordinates (batch, y, x, 2) in pixels of ``moving``.
            y_pred: the ``transform`` output: ``theta`` (batch, 2, 3) or flow (batch, y, x, 2).
        """
        loss = 0.0
        if self.supervised:
            loss = loss + self.supervised * coordinate_error(y_true, y_pred, self.transform,
                                                             squared=True)
        if self.smoothness:
            loss = loss + self.smoothness * smoothness(y_pred, self.transform)
        if isinstance(loss, float):
            return ops.zeros((ops.shape(y_pred)[0],))
        return loss

    def get_config(self):
        return {**super().get_config(), "transform": self.transform,
                "supervised": self.supervised, "smoothness": self.smoothness}


@keras.saving.register_keras_serializable(package="emkit")
class CoordinateError(keras.metrics.Mean):
    """The mean coordinate error in pixels (:func:`coordinate_error`), as a Keras metric."""

    def __init__(self, transform: str = "affine", name: str = "coord_error_px", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.transform = transform

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch's per-image coordinate errors to the mean.

        Args:
            y_true: the true sampling coordinates (batch, y, x, 2) in pixels of ``moving``.
            y_pred: the ``transform`` output: ``theta`` (batch, 2, 3) or flow (batch, y, x, 2).
            sample_weight: optional weights of the images, as for ``keras.metrics.Mean``.
        """
        return super().update_state(coordinate_error(y_true, y_pred, self.transform),
                                    sample_weight=sample_weight)

    def get_config(self):
        return {"transform": self.transform, "name": self.name, "dtype": self.dtype}


def compile_pair_aligner(model, *, mode: str = "supervised", ncc: str = "global",
                         window: int = 9, smoothness_weight: float = 0.0,
                         optimizer=None) -> keras.Model:
    """Compiles a pair model for ``mode`` ``"supervised"`` or ``"unsupervised"``; returns it.

    Supervised: coordinate MSE (+ ``smoothness_weight`` x penalty). Unsupervised:
    ``1 - NCC`` + ``smoothness_weight`` x penalty.

    Args:
        model: a pair model of :func:`build_pair_aligner`.
        mode: ``"supervised"`` or ``"unsupervised"``.
        ncc: ``"global"`` or ``"local"`` NCC for the ``warped`` loss (see :func:`masked_ncc`).
        window: the local NCC window edge in pixels (odd).
        smoothness_weight: weight of the transform's penalty (:func:`smoothness`).
        optimizer: a Keras optimizer; default Adam with learning rate 1e-3.
    """
    if mode not in ("supervised", "unsupervised"):
        raise InputError(f"loss.mode: got {mode!r}; allowed: supervised, unsupervised")
    kind = transform_kind(model)
    supervised = mode == "supervised"
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss={"warped": NCCLoss(ncc, window),
              "transform": TransformLoss(kind, supervised=float(supervised),
                                         smoothness=smoothness_weight)},
        loss_weights={"warped": 0.0 if supervised else 1.0, "transform": 1.0},
        metrics={"transform": [CoordinateError(kind)]},
    )
    return model


#: For ``keras.saving.load_model`` of an align model.
CUSTOM_OBJECTS = {"emkit>Coverage": Coverage, "emkit>NCCLoss": NCCLoss,
                  "emkit>CoordinateError": CoordinateError,
                  "emkit>TransformLoss": TransformLoss, "emkit>SpatialTransformer": SpatialTransformer}

__all__ = ["CUSTOM_OBJECTS", "CoordinateError", "Coverage", "NCCLoss", "TransformLoss", "build_pair_aligner",
           "compile_pair_aligner", "coordinate_error", "masked_ncc", "sampling_coords",
           "smoothness", "standardize", "transform_kind"]
