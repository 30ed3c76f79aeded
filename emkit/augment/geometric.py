"""Geometric augmentations: flips, xy transposes, 90-degree and arbitrary rotations.

Raw and labels move together, about their common centre. Flips, transposes and
90-degree rotations are exact (views, no interpolation); an arbitrary rotation
interpolates raw (order 1 or 3, OpenCV) and picks labels by nearest neighbour (order
0), keeping every integer dtype exactly. ``elastic`` can fold the rotation into its warp
(its ``angle`` key), which costs nothing extra there.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.ndimage

from emkit.augment import base
from emkit.errors import InputError

AXES = ("z", "y", "x")


# ---------------------------------------------------------------------------- functions


def flip(array, axes):
    """``array`` mirrored along ``axes`` (a view).

    Args:
        array: ndarray of shape (Z, Y, X), or None.
        axes: axis numbers to mirror, e.g. ``(0, 2)`` for z and x.

    Returns:
        A view of ``array``, or None.

    >>> flip(np.arange(3)[None, None], (2,)).ravel().tolist()
    [2, 1, 0]
    """
    if array is None or not axes:
        return array
    index = [slice(None)] * array.ndim
    for axis in axes:
        index[axis] = slice(None, None, -1)
    return array[tuple(index)]


def transpose_yx(array):
    """``array`` with y and x swapped (a view), or None."""
    return None if array is None else array.swapaxes(-1, -2)


def rot90_yx(array, k):
    """``array`` rotated by ``k`` quarter turns in the (y, x) plane (a view), or None.

    One quarter turn moves the voxel right of the centre to above it, as ``np.rot90``.

    Args:
        array: ndarray of shape (Z, Y, X), or None.
        k: the number of quarter turns (any integer; negative turns the other way).
    """
    return None if array is None else np.rot90(array, k, axes=(-2, -1))


def rotation_matrix(angle, in_shape, out_shape):
    """The inverse map of an in-plane rotation about the centre: output -> input (y, x).

    Args:
        angle: degrees; positive turns the way ``np.rot90`` does (the voxel right of the
            centre moves up).
        in_shape: (Y, X) of the input section.
        out_shape: (Y', X') of the output section, concentric with the input.

    Returns:
        ``(matrix, offset)``: input ``(y, x) = matrix @ (y', x') + offset``.
    """
    t = np.radians(angle)
    c, s = np.cos(t), np.sin(t)
    matrix = np.array([[c, s], [-s, c]])
    c_in = (np.asarray(in_shape, float) - 1) / 2
    c_out = (np.asarray(out_shape, float) - 1) / 2
    return matrix, c_in - matrix @ c_out


def rotate_yx(array, angle, *, order, out_shape=None):
    """``array`` rotated by ``angle`` degrees in the (y, x) plane about its centre.

    Raw (float) sections go through OpenCV's ``warpAffine``; labels (order 0) through
    OpenCV's nearest neighbour when their dtype allows (uint8, uint16) and SciPy's
    ``affine_transform`` otherwise, so ids of any integer dtype are kept exactly.

    Args:
        array: ndarray of shape (Z, Y, X).
        angle: degrees; positive turns the way ``np.rot90`` does.
        order: 0 (nearest, for labels), 1 (linear) or 3 (cubic).
        out_shape: the centred crop (Z', Y', X') to compute; default: the whole array.
            Voxels that come from outside ``array`` are 0.

    Returns:
        ndarray of shape ``out_shape``, dtype of ``array``.

    >>> a = np.zeros((1, 3, 3), np.uint8); a[0, 1, 2] = 1
    >>> np.argwhere(rotate_yx(a, 90, order=0)[0]).tolist()
    [[0, 1]]
    """
    out_shape = tuple(array.shape) if out_shape is None else tuple(out_shape)
    array = center_z(array, out_shape[0])
    matrix, offset = rotation_matrix(angle, array.shape[1:], out_shape[1:])
    if order == 0 and array.dtype not in (np.uint8, np.uint16, np.float32):
        full = np.eye(3)
        full[1:, 1:] = matrix
        return base.map_ids_exactly(array, lambda ids: scipy.ndimage.affine_transform(
            ids, full, offset=(0, *offset), output_shape=out_shape, order=0, cval=0
        ))
    # OpenCV takes (x, y): swap the axes of the inverse map.
    warp = np.array(
        [[matrix[1, 1], matrix[1, 0], offset[1]], [matrix[0, 1], matrix[0, 0], offset[0]]]
    )
    flags = _CV2_ORDERS[order] | cv2.WARP_INVERSE_MAP
    out = np.empty(out_shape, dtype=array.dtype)
    for z in range(out_shape[0]):
        out[z] = cv2.warpAffine(
            np.ascontiguousarray(array[z]), warp, (out_shape[2], out_shape[1]), flags=flags,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
    return out


_CV2_ORDERS = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}


def center_z(array, depth):
    """The centred ``depth`` sections of ``array`` (a view).

    Args:
        array: ndarray of shape (Z, Y, X).
        depth: the number of sections to keep, at most Z.
    """
    start = (array.shape[0] - depth) // 2
    return array[start:start + depth]


def rotation_margin(shape, angle_range):
    """Margin (0, y, x) that a rotation by any angle in ``angle_range`` (degrees) needs.

    The rotated crop's bounding box is largest at an end of the range or where |sin| =
    |cos|; one more pixel covers the interpolation footprint and one more the rounding.

    Args:
        shape: (Z, Y, X) of the crop wanted after the rotation.
        angle_range: ``(low, high)`` in degrees.

    Returns:
        ``(0, my, mx)``, the pixels to add on each side of y and x.
    """
    _, y, x = shape
    low, high = np.radians(angle_range)
    corners = [math.pi / 4 * k for k in range(-8, 9) if low <= math.pi / 4 * k <= high]
    angles = np.concatenate([np.linspace(low, high, 181), corners])
    c, s = np.abs(np.cos(angles)), np.abs(np.sin(angles))
    need_y = float(np.max(y * c + x * s))
    need_x = float(np.max(y * s + x * c))
    return (0, math.ceil((need_y - y) / 2) + 2, math.ceil((need_x - x) / 2) + 2)


def square_margin(shape):
    """Margin (z, y, x) that makes the (y, x) plane of a crop of ``shape`` square."""
    _, y, x = shape
    if (y - x) % 2:
        raise InputError(
            f"cannot transpose or quarter-turn a crop of shape {tuple(shape)} about its "
            "centre: y and x differ by an odd number; choose a model output whose y and x "
            "sizes have the same parity"
        )
    side = max(y, x)
    return (0, (side - y) // 2, (side - x) // 2)


# ---------------------------------------------------------------------------- classes


class Flip(base.Augmentation):
    """Mirrors raw and labels along each of ``axes`` with probability 1/2.

    Args:
        p: probability that the augmentation runs (each axis then flips with 1/2).
        axes: the axes that may flip, from ``"z"``, ``"y"``, ``"x"``.
    """

    name = "flip"

    def __init__(self, *, p: float = 1.0, axes=AXES):
        super().__init__(p=p)
        axes = tuple(axes)
        for axis in axes:
            base.check_choice(axis, "flip: axes entry", AXES)
        self.axes = axes

    def draw(self, rng, shape):
        """Picks the axes that flip, each of ``axes`` with probability 1/2.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"axes": tuple of axis numbers}`` (0 = z, 1 = y, 2 = x), possibly empty.
        """
        return {"axes": tuple(AXES.index(a) for a in self.axes if rng.random() < 0.5)}

    def apply(self, raw, labels, params, out_shapes=None):
        """Mirrors raw and labels along the drawn axes (views).

        Arguments and result as for :meth:`~emkit.augment.base.Augmentation.apply`.
        """
        return flip(raw, params["axes"]), flip(labels, params["axes"])


class Transpose(base.Augmentation):
    """Swaps y and x of raw and labels (a non-square crop reads a square one first).

    Args:
        p: probability that the augmentation runs (and transposes).
    """

    name = "transpose"

    def __init__(self, *, p: float = 0.5):
        super().__init__(p=p)

    def margin(self, shape):
        return square_margin(shape)

    def apply(self, raw, labels, params, out_shapes=None):
        """Swaps y and x of raw and labels (views).

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.

        Returns:
            ``(raw, labels)`` of shapes (Z, X, Y) and (Z', X', Y').
        """
        return transpose_yx(raw), transpose_yx(labels)


class Rotate90(base.Augmentation):
    """Turns raw and labels by 0, 1, 2 or 3 quarter turns in (y, x), chosen uniformly.

    Args:
        p: probability that the augmentation runs.
    """

    name = "rot90"

    def __init__(self, *, p: float = 1.0):
        super().__init__(p=p)

    def margin(self, shape):
        return square_margin(shape)

    def draw(self, rng, shape):
        """Picks the number of quarter turns.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"k": 0, 1, 2 or 3}``.
        """
        return {"k": int(rng.integers(4))}

    def apply(self, raw, labels, params, out_shapes=None):
        """Turns raw and labels by ``k`` quarter turns in (y, x) (views, :func:`rot90_yx`).

        Arguments and result as for :meth:`~emkit.augment.base.Augmentation.apply`.
        """
        return rot90_yx(raw, params["k"]), rot90_yx(labels, params["k"])


class Rotate(base.Augmentation):
    """Rotates raw and labels by an angle drawn uniformly in ``angle`` (degrees), in (y, x).

    Raw is interpolated with ``order``; labels take the nearest voxel's id. The margin
    covers the corners of the crop at the worst angle in the range.

    Args:
        p: probability that the augmentation runs.
        angle: a fixed angle or a ``[low, high]`` range, degrees.
        order: raw interpolation order, 1 (linear) or 3 (cubic).
    """

    name = "rotate"

    def __init__(self, *, p: float = 0.5, angle=(-180.0, 180.0), order: int = 1):
        super().__init__(p=p)
        self.angle = base.check_range(angle, "rotate: angle", low=-360, high=360)
        self.order = base.check_int(order, "rotate: order", minimum=0)
        base.check_choice(self.order, "rotate: order", (1, 3))

    def margin(self, shape):
        return rotation_margin(shape, self.angle)

    def draw(self, rng, shape):
        """Draws the angle.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"angle": degrees}``.
        """
        return {"angle": base.uniform(rng, self.angle)}

    def apply(self, raw, labels, params, out_shapes=None):
        """Rotates raw (``order``) and labels (nearest id) about their common centre.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.
        Only the centred crops of ``out_shapes`` are computed (see :func:`rotate_yx`).

        Returns:
            ``(raw, labels)``; voxels from outside the input are 0.
        """
        raw_out, labels_out = out_shapes if out_shapes is not None else (None, None)
        raw = rotate_yx(raw, params["angle"], order=self.order, out_shape=raw_out)
        if labels is not None:
            labels = rotate_yx(labels, params["angle"], order=0, out_shape=labels_out)
        return raw, labels
