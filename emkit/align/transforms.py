"""Per-section 2D transforms of a stack: affine matrices plus optional displacement fields.

The convention, used everywhere in :mod:`emkit.align`:

    A transform maps OUTPUT (aligned) pixel coordinates to INPUT (raw) pixel
    coordinates. ``aligned[z][p] = raw[z][T_z(p)]``.

Coordinates are ``(y, x)`` in pixels, ``(0, 0)`` is the centre of the top-left pixel.
Section ``z`` has a 3x3 matrix ``M_z`` acting on the column ``(y, x, 1)`` and, optionally,
a dense displacement field ``d_z`` of shape ``(Y, X, 2)`` (``dy, dx`` in pixels) on the
output grid, added after the matrix::

    T_z(p) = M_z @ (p, 1) + d_z(p)

This is the convention of :mod:`emkit.models.spatial_transformer` (output pixel ``p``
samples the input at the transform of ``p``; its ``"flow"`` is ``d`` with ``M = I``), so a
learned aligner produces the same thing; :func:`normalized_to_affine` converts its
normalized ``theta``. A field given at a point between pixels is interpolated linearly
(nearest value outside the grid).

``compose(a, b)`` is ``a`` after ``b`` as maps of points: warping an image with ``a`` and
then warping the result with ``b`` equals warping it with ``compose(a, b)``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from emkit.errors import InputError


@dataclass(frozen=True, eq=False)
class Transforms:
    """The transforms of a stack, one per section (see the module docstring).

    Attributes:
        matrices: ndarray of shape (Z, 3, 3), float64; last rows ``(0, 0, 1)``.
        fields: ndarray of shape (Z, Y, X, 2), float32 ``(dy, dx)`` in pixels on the
            output grid, or None (affine only).
    """

    matrices: np.ndarray
    fields: np.ndarray | None = None

    def __post_init__(self):
        matrices = np.array(self.matrices, dtype=np.float64)
        if matrices.ndim != 3 or matrices.shape[1:] != (3, 3):
            raise InputError(f"transform matrices must have shape (Z, 3, 3), got {matrices.shape}")
        if not np.isfinite(matrices).all() or not np.allclose(matrices[:, 2], (0, 0, 1)):
            raise InputError("transform matrices must be finite with last row (0, 0, 1)")
        object.__setattr__(self, "matrices", matrices)
        if self.fields is not None:
            fields = np.array(self.fields, dtype=np.float32)
            if fields.ndim != 4 or fields.shape[-1] != 2 or len(fields) != len(matrices):
                raise InputError(
                    f"displacement fields must have shape (Z, Y, X, 2) with Z = "
                    f"{len(matrices)} (one per matrix), got {fields.shape}"
                )
            if not np.isfinite(fields).all():
                raise InputError("displacement fields must be finite")
            object.__setattr__(self, "fields", fields)

    def __len__(self) -> int:
        return len(self.matrices)

    def __getitem__(self, index) -> Transforms:
        """The transforms of some sections: ``t[3]``, ``t[2:5]``."""
        index = slice(index, index + 1 or None) if isinstance(index, (int, np.integer)) else index
        return Transforms(self.matrices[index],
                          None if self.fields is None else self.fields[index])

    @property
    def shape(self) -> tuple[int, int] | None:
        """The output grid (Y, X) of the fields, or None without fields."""
        return None if self.fields is None else tuple(self.fields.shape[1:3])


def identity_transforms(num_sections: int) -> Transforms:
    """``num_sections`` identity transforms (no fields)."""
    return Transforms(np.repeat(np.eye(3)[None], int(num_sections), axis=0))


def from_translations(offsets) -> Transforms:
    """Pure translations ``T_z(p) = p + offsets[z]`` from an array of shape (Z, 2) (dy, dx)."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise InputError(f"offsets must have shape (Z, 2) (dy, dx), got {offsets.shape}")
    matrices = np.repeat(np.eye(3)[None], len(offsets), axis=0)
    matrices[:, :2, 2] = offsets
    return Transforms(matrices)


def rigid_matrix(*, rotation_deg: float = 0.0, translation=(0.0, 0.0), center=(0.0, 0.0)):
    """3x3 matrix of ``q = R (p - center) + center + translation``.

    A positive angle turns the +y axis towards +x.

    Args:
        rotation_deg: the rotation angle in degrees.
        translation: (dy, dx) in pixels.
        center: (y, x) of the rotation's centre, in pixels.

    Returns:
        ndarray of shape (3, 3).
    """
    a = np.deg2rad(float(rotation_deg))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    center = np.asarray(center, dtype=np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = rot
    matrix[:2, 2] = center - rot @ center + np.asarray(translation, dtype=np.float64)
    return matrix


def normalized_to_affine(theta, shape) -> Transforms:
    """Pixel transforms from spatial-transformer ``theta`` (normalized coordinates).

    Args:
        theta: ndarray of shape (Z, 2, 3) acting on normalized ``(y, x, 1)`` in [-1, 1]
            (corner pixel centres at -1 and +1), as in :mod:`emkit.models.spatial_transformer`.
        shape: (Y, X), the image size (input and output).
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 3 or theta.shape[1:] != (2, 3):
        raise InputError(f"theta must have shape (Z, 2, 3), got {theta.shape}")
    scale = np.array([2.0 / max(n - 1, 1) for n in shape])
    to_unit = np.array([[scale[0], 0, -1], [0, scale[1], -1], [0, 0, 1]])
    full = np.concatenate([theta, np.broadcast_to([[[0.0, 0.0, 1.0]]], (len(theta), 1, 3))], 1)
    return Transforms(np.linalg.inv(to_unit) @ full @ to_unit)


def concatenate(parts, *, shape=None) -> Transforms:
    """Joins transforms along z; sections without fields get zero fields if any has one.

    Args:
        parts: an iterable of :class:`Transforms`; those with fields must share one grid.
        shape: unused; the fields' grid is that of the parts with fields.
    """
    parts = list(parts)
    shapes = {p.shape for p in parts if p.fields is not None}
    if len(shapes) > 1:
        raise InputError(f"cannot concatenate fields of different grids {sorted(shapes)}")
    matrices = np.concatenate([p.matrices for p in parts])
    if not shapes:
        return Transforms(matrices)
    grid = shapes.pop()
    fields = [p.fields if p.fields is not None else np.zeros((len(p), *grid, 2), np.float32)
              for p in parts]
    return Transforms(matrices, np.concatenate(fields))


def map_points(transforms: Transforms, points) -> np.ndarray:
    """Where points of the output (aligned) frame fall in the input (raw) sections.

    Args:
        transforms: Z transforms.
        points: ndarray of shape (N, 2) (the same points in every section) or (Z, N, 2),
            ``(y, x)`` in output pixels.

    Returns:
        ndarray of shape (Z, N, 2): ``T_z(points)`` in input pixels.
    """
    points = np.asarray(points, dtype=np.float64)
    points = np.broadcast_to(points, (len(transforms), *points.shape[-2:]))
    mapped = points @ transforms.matrices[:, :2, :2].transpose(0, 2, 1)
    mapped = mapped + transforms.matrices[:, None, :2, 2]
    if transforms.fields is not None:
        for z, field in enumerate(transforms.fields):
            mapped[z] += _sample_field(field, points[z].T).T
    return mapped


def _sample_field(field, coords):
    """Field (Y, X, 2) at coordinates of shape (2, ...): linear, nearest outside."""
    return np.stack([ndi.map_coordinates(field[..., k], coords, order=1, mode="nearest")
                     for k in range(2)])


def sampling_grid(transforms: Transforms, z: int, shape) -> np.ndarray:
    """Input coordinates of every output pixel of section ``z``: ndarray (2, Y, X).

    Args:
        transforms: the stack's transforms.
        z: the section.
        shape: (Y, X) of the output grid; it must be the fields' grid when there are fields.

    Returns:
        ndarray of shape (2, Y, X), float64: the (y, x) input coordinates ``T_z(p)``.
    """
    grid = np.indices(tuple(shape), dtype=np.float64)
    matrix = transforms.matrices[z]
    coords = np.einsum("ij,jyx->iyx", matrix[:2, :2], grid) + matrix[:2, 2, None, None]
    if transforms.fields is not None:
        if transforms.shape != tuple(shape):
            raise InputError(
                f"output shape {tuple(shape)} differs from the fields' grid {transforms.shape}"
            )
        coords += np.moveaxis(transforms.fields[z], -1, 0)
    return coords


def compose(a: Transforms, b: Transforms, *, shape=None) -> Transforms:
    """``a`` after ``b``: ``p -> a(b(p))``, section by section.

    Warping with ``a`` and then with ``b`` equals warping with ``compose(a, b)``. The
    result's field lies on ``b``'s output grid (``b.shape``, else ``shape``, else
    ``a.shape``); the result is affine only when both are.

    Args:
        a: the outer transforms (applied last to points).
        b: the inner transforms, as many as ``a``.
        shape: (Y, X) of the result's field grid when ``b`` has no fields.
    """
    if len(a) != len(b):
        raise InputError(f"cannot compose {len(a)} transforms with {len(b)}")
    matrices = a.matrices @ b.matrices
    if a.fields is None and b.fields is None:
        return Transforms(matrices)
    grid = b.shape or (tuple(shape) if shape is not None else a.shape)
    points = np.indices(grid, dtype=np.float64).reshape(2, -1).T
    inner = map_points(b, points)  # (Z, N, 2), in a's output frame
    fields = np.zeros((len(a), *grid, 2), np.float32)
    for z in range(len(a)):
        d = np.zeros_like(points) if b.fields is None else b.fields[z].reshape(-1, 2)
        d = d @ a.matrices[z, :2, :2].T
        if a.fields is not None:
            d = d + _sample_field(a.fields[z], inner[z].T).T
        fields[z] = d.reshape(*grid, 2)
    return Transforms(matrices, fields)


def invert(transforms: Transforms, *, shape=None, iterations: int = 50, tol: float = 1e-4):
    """The inverse transforms: exact for matrices, by fixed-point iteration with fields.

    With fields, ``S(q) = M^-1 (q - d(S(q)))`` is iterated from ``S(q) = M^-1 q`` on the
    grid ``shape`` (the inverse's output grid: the input frame of ``transforms``; default
    the fields' grid). It converges when the fields are smooth (|grad d| < 1).

    Args:
        transforms: the transforms to invert.
        shape: (Y, X) of the inverse's field grid (only with fields).
        iterations: the most fixed-point steps per section.
        tol: convergence: the largest step in pixels below which the iteration stops.

    Returns:
        :class:`Transforms` mapping raw to aligned coordinates.

    Raises:
        InputError: the matrices are singular, or the iteration does not converge.
    """
    try:
        inverse = np.linalg.inv(transforms.matrices)
    except np.linalg.LinAlgError as exc:
        raise InputError("cannot invert a singular transform matrix") from exc
    if transforms.fields is None:
        return Transforms(inverse)
    grid = tuple(shape) if shape is not None else transforms.shape
    q = np.indices(grid, dtype=np.float64).reshape(2, -1).T
    fields = np.zeros((len(transforms), *grid, 2), np.float32)
    for z in range(len(transforms)):
        lin, shift = inverse[z, :2, :2], inverse[z, :2, 2]
        start = q @ lin.T + shift
        p = start
        for _ in range(iterations):
            d = _sample_field(transforms.fields[z], p.T).T
            new = (q - d) @ lin.T + shift
            step = np.abs(new - p).max()
            p = new
            if step < tol:
                break
        else:
            raise InputError(
                f"inverting the field of section {z} did not converge in {iterations} steps "
                "(is it smooth, with |gradient| < 1?)"
            )
        fields[z] = (p - start).reshape(*grid, 2)
    return Transforms(inverse, fields)


def apply_transforms(stack, transforms: Transforms, *, order: int = 1, output_shape=None,
                     cval=0, progress: bool = False) -> np.ndarray:
    """Warps each section: ``out[z][p] = stack[z][T_z(p)]``.

    Args:
        stack: ndarray of shape (Z, Y, X), any numeric dtype.
        transforms: Z transforms.
        order: 1 (bilinear) for images, 0 (nearest, exact for any dtype) for labels;
            2-5 are splines (``scipy.ndimage.map_coordinates``).
        output_shape: (Y', X'); default the fields' grid, else the input's (Y, X).
        cval: the value of output pixels that sample outside the section.
        progress: show a progress bar over sections on stderr.

    Returns:
        ndarray of shape (Z, Y', X') and the dtype of ``stack`` (integers rounded and
        clipped to their range).
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError(f"expected a (z, y, x) stack, got shape {stack.shape}")
    if len(stack) != len(transforms):
        raise InputError(f"the stack has {len(stack)} sections but {len(transforms)} transforms")
    if order not in range(6):
        raise InputError(f"interpolation order must be 0 to 5, got {order!r}")
    out_shape = tuple(output_shape or transforms.shape or stack.shape[1:])
    out = np.empty((len(stack), *out_shape), stack.dtype)
    work = np.float64 if stack.dtype in (np.float64, np.int64, np.uint64) else np.float32
    from tqdm import tqdm

    for z in tqdm(range(len(stack)), desc="warp", unit="section", disable=not progress,
                  file=sys.stderr, leave=False):
        coords = _snap_to_edges(sampling_grid(transforms, z, out_shape), stack.shape[1:])
        if order == 0:
            out[z] = _nearest(stack[z], coords, cval)
            continue
        values = ndi.map_coordinates(stack[z].astype(work, copy=False), coords, order=order,
                                     mode="constant", cval=cval, prefilter=order > 1)
        if stack.dtype.kind in "iub":
            info = np.iinfo(stack.dtype) if stack.dtype.kind != "b" else None
            values = np.rint(values)
            values = values if info is None else np.clip(values, info.min, info.max)
        out[z] = values
    return out


def _snap_to_edges(coords, shape, tol=1e-6):
    """Moves coordinates within ``tol`` outside an edge onto it (rounding noise)."""
    limit = np.array(shape, dtype=np.float64)[:, None, None] - 1
    inside = np.clip(coords, 0, limit)
    return np.where(np.abs(coords - inside) < tol, inside, coords)


def _nearest(image, coords, cval):
    index = np.floor(coords + 0.5).astype(np.int64)
    inside = ((index >= 0) & (index < np.array(image.shape)[:, None, None])).all(0)
    out = np.full(coords.shape[1:], cval, image.dtype)
    out[inside] = image[index[0][inside], index[1][inside]]
    return out


def valid_mask(transforms: Transforms, input_shape, *, output_shape=None) -> np.ndarray:
    """Output pixels that sample inside the input: bool ndarray of shape (Z, Y', X').

    Args:
        transforms: Z transforms.
        input_shape: (Y, X) of the input (raw) sections.
        output_shape: (Y', X'); default the fields' grid, else ``input_shape``.
    """
    out_shape = tuple(output_shape or transforms.shape or input_shape)
    limit = np.array(input_shape, dtype=np.float64)[:, None, None] - 1
    mask = np.empty((len(transforms), *out_shape), bool)
    for z in range(len(transforms)):
        coords = sampling_grid(transforms, z, out_shape)
        mask[z] = ((coords >= -1e-6) & (coords <= limit + 1e-6)).all(0)
    return mask
