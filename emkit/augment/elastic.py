"""Elastic warping with ``elasticdeform`` (Ronneberger et al. 2015; Cicek et al. 2016).

A coarse grid of control points gets random displacements; a cubic B-spline spreads
them over every voxel; raw is resampled with ``order`` and labels with order 0 (nearest
id), through the *same* field. Labels are never warped with albumentations: its OpenCV
warps reject uint32 ids and truncate uint64 ones.

Two modes:

``"section"`` (default)
    One in-plane (y, x) field per sample, shared by all its sections. About 45 ms for a
    16 x 128 x 128 crop on one CPU core, and nothing moves in z, which suits
    anisotropic serial sections (50 nm sections, 4 nm pixels).
``"3d"``
    A field over (z, y, x) with control points ``spacing_z`` sections apart. About 20
    times slower (0.9 s for 16 x 128 x 128), because every voxel evaluates a 3D spline:
    meant for isotropic data such as FIB-SEM.

The displacement never exceeds the declared margin: after drawing, the spline
coefficients (whose maximum bounds the displacement everywhere, since B-spline weights
are non-negative and sum to 1) are scaled down if they exceed ``3 * max(sigma)``.

References:
    O. Ronneberger, P. Fischer, T. Brox (2015). U-Net: Convolutional networks for
    biomedical image segmentation. MICCAI, LNCS 9351: 234-241.
    G. van Tulder. elasticdeform (2018-2022), https://github.com/gvtulder/elasticdeform.
"""

from __future__ import annotations

import math

import elasticdeform
import numpy as np
import scipy.ndimage

from emkit.augment import base
from emkit.augment.geometric import rotation_margin
from emkit.errors import InputError

MODES = ("section", "3d")


def control_points(extent: int, spacing: float) -> int:
    """Number of control points along an axis of ``extent`` voxels (at least 2).

    Args:
        extent: the axis' length in voxels.
        spacing: the distance between control points in voxels.
    """
    return max(2, math.ceil(extent / spacing) + 1)


def spline_coefficients(displacement):
    """The cubic B-spline coefficients ``elasticdeform`` derives from a displacement grid."""
    coefficients = displacement
    for axis in range(1, displacement.ndim):
        coefficients = scipy.ndimage.spline_filter1d(coefficients, order=3, axis=axis)
    return coefficients


def bound_displacement(displacement, limit: float):
    """``displacement`` scaled so that no voxel moves more than ``limit`` (voxels).

    Args:
        displacement: ndarray of shape (len(axes), P...), control-point displacements in
            voxels, as :func:`warp` takes them.
        limit: the largest allowed displacement in voxels; the bound is the largest
            spline coefficient (see the module docstring).

    Returns:
        ``displacement`` itself when within the limit, else a scaled copy.
    """
    peak = float(np.max(np.abs(spline_coefficients(displacement)), initial=0.0))
    return displacement if peak <= limit else displacement * (limit / peak)


def warp(array, displacement, *, order, out_shape=None, axes=(1, 2), box_shape=None, angle=None):
    """Warps a (concentric) crop through a displacement grid with ``elasticdeform``.

    Args:
        array: ndarray of shape (Z, Y, X).
        displacement: ndarray of shape (len(axes), P...) of control-point displacements
            in voxels, spread evenly over ``box_shape``.
        order: interpolation order (0 for labels).
        out_shape: the centred crop to compute (default: all of ``array``).
        axes: the axes the field moves along: ``(1, 2)`` in-plane, ``(0, 1, 2)`` 3D.
        box_shape: the crop the grid spans, concentric with and no smaller than
            ``array`` (default: ``array.shape``). A smaller ``array`` is placed in a zero
            box first, so that raw and labels of different sizes share one field.
        angle: also rotate by this many degrees in (y, x) about the centre, in the same
            pass (as ``np.rot90`` turns); in-plane fields only.

    Returns:
        ndarray of shape ``out_shape``, dtype of ``array``. Voxels that come from
        outside the box are 0. Integer ids at order 0 are kept exactly, even above 2**53.
    """
    if order == 0 and array.dtype.kind in "iu":
        return base.map_ids_exactly(array, lambda ids: _warp(
            ids, displacement, order=0, out_shape=out_shape, axes=axes, box_shape=box_shape,
            angle=angle,
        ))
    return _warp(array, displacement, order=order, out_shape=out_shape, axes=axes,
                 box_shape=box_shape, angle=angle)


def _warp(array, displacement, *, order, out_shape, axes, box_shape, angle):
    box_shape = tuple(array.shape) if box_shape is None else tuple(int(n) for n in box_shape)
    out_shape = tuple(array.shape) if out_shape is None else tuple(out_shape)
    if tuple(array.shape) != box_shape:
        box = np.zeros(box_shape, dtype=array.dtype)
        box[_centred(box_shape, array.shape)] = array
        array = box
    crop = [_centred(box_shape, out_shape)[a] for a in axes]
    out = elasticdeform.deform_grid(
        np.ascontiguousarray(array),
        displacement,
        order=order,
        mode="constant",
        cval=0,
        crop=crop,
        axis=tuple(axes),
        prefilter=order > 1,
        rotate=None if angle is None else float(angle),
    )
    if 0 not in axes:  # z was not cropped by elasticdeform
        out = out[_centred(out.shape, out_shape)[0]]
    return out


def _centred(outer, inner):
    return tuple(slice((o - i) // 2, (o - i) // 2 + i) for o, i in zip(outer, inner))


class Elastic(base.Augmentation):
    """Elastic warp of raw and labels through one random field (see the module docstring).

    Args:
        p: probability that the augmentation runs.
        sigma: standard deviation of the control-point displacements, in voxels (pixels
            in-plane); a number or a ``[low, high]`` range drawn per sample.
        spacing: distance between control points in y and x, in pixels.
        spacing_z: distance between control points in z, in sections (``"3d"`` only).
        mode: ``"section"`` (one in-plane field shared by the sample's sections) or
            ``"3d"``.
        order: raw interpolation order, 1 (linear) or 3 (cubic B-spline).
        angle: None, or an in-plane rotation in degrees (a number or ``[low, high]``)
            folded into the same pass: cheaper than a separate ``rotate``. Section mode
            only.
    """

    name = "elastic"

    def __init__(
        self,
        *,
        p: float = 0.5,
        sigma=4.0,
        spacing: float = 64,
        spacing_z: float = 8,
        mode: str = "section",
        order: int = 1,
        angle=None,
    ):
        super().__init__(p=p)
        self.sigma = base.check_range(sigma, "elastic: sigma", low=0, high=1e4)
        self.spacing = base.check_range(spacing, "elastic: spacing", low=1)[0]
        self.spacing_z = base.check_range(spacing_z, "elastic: spacing_z", low=1)[0]
        self.mode = base.check_choice(mode, "elastic: mode", MODES)
        self.order = base.check_choice(base.check_int(order, "elastic: order"), "elastic: order",
                                       (1, 3))
        self.angle = None
        if angle is not None:
            self.angle = base.check_range(angle, "elastic: angle", low=-360, high=360)
        if self.angle is not None and self.mode == "3d":
            raise InputError("elastic: angle works with mode 'section' only, got mode '3d'")

    def _axes(self):
        return (0, 1, 2) if self.mode == "3d" else (1, 2)

    def margin(self, shape):
        # Largest displacement plus the interpolation footprint (2 voxels for cubic).
        m = math.ceil(3 * self.sigma[1]) + 2
        margin = (m if self.mode == "3d" else 0, m, m)
        if self.angle is not None:
            turn = rotation_margin(shape, self.angle)
            margin = (margin[0], margin[1] + turn[1], margin[2] + turn[2])
        return margin

    def draw(self, rng, shape):
        """Draws the control-point displacements (and the angle, if any).

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`; the control grid
        spans ``shape``.

        Returns:
            ``{"displacement": ndarray of shape (2, Py, Px) or (3, Pz, Py, Px)}`` in
            voxels, plus ``"angle"`` in degrees when ``angle`` is set.
        """
        axes = self._axes()
        spacing = {0: self.spacing_z, 1: self.spacing, 2: self.spacing}
        points = [control_points(shape[a], spacing[a]) for a in axes]
        sigma = base.uniform(rng, self.sigma)
        displacement = rng.standard_normal((len(axes), *points)) * sigma
        params = {"displacement": bound_displacement(displacement, 3 * self.sigma[1])}
        if self.angle is not None:
            params["angle"] = base.uniform(rng, self.angle)
        return params

    def apply(self, raw, labels, params, out_shapes=None):
        """Warps raw (``order``) and labels (order 0) through the same field.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.
        Only the centred crops of ``out_shapes`` are computed.

        Returns:
            ``(raw, labels)`` of ``out_shapes`` when given; voxels from outside are 0.
        """
        displacement = params["displacement"]
        axes = (0, 1, 2) if displacement.shape[0] == 3 else (1, 2)
        raw_out, labels_out = out_shapes if out_shapes is not None else (None, None)
        # The field spans the union of the two concentric crops.
        box = raw.shape if labels is None else np.maximum(raw.shape, labels.shape)
        angle = params.get("angle")
        new_raw = warp(
            raw, displacement, order=self.order, out_shape=raw_out, axes=axes, box_shape=box,
            angle=angle,
        )
        if labels is not None:
            labels = warp(
                labels, displacement, order=0, out_shape=labels_out, axes=axes, box_shape=box,
                angle=angle,
            )
        return new_raw, labels
