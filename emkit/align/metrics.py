"""Alignment metrics: neighbour cross-correlation, and residual displacement against truth.

Neighbour NCC (thesis Appendix A.2): the normalized cross-correlation of each pair of
neighbouring sections ``(z, z + 1)``, over the pixels valid in both,

    NCC = sum((a - mean a)(b - mean b)) / sqrt(sum((a - mean a)^2) sum((b - mean b)^2)),

1 for identical sections. Its smoothed version (A.2.1) is the same after a Gaussian
filter of ``sigma`` pixels on each section (2 by default), which weighs the shape of
cells more than noise and membranes one pixel wide; the valid region is then eroded
by ``ceil(2 sigma)`` so that padding does not bleed in. NCC needs no truth, but it
rewards any warp that makes neighbours alike, also a wrong one.

Residual displacement (pixels): estimated and true transforms map the aligned frame to
the raw sections, but an aligned stack is defined only up to one rigid motion of the
whole stack (where the first section sits, how it is turned). So a global rigid motion
``G(p) = R(phi) (p - c) + c + g`` is fitted first, by Gauss-Newton least squares on

    sum over z, p of | T_est,z(G(p)) - T_true,z(p) |^2,

and the residual at ``p`` is ``| T_est,z(G(p)) - T_true,z(p) |``, in raw pixels. The
points ``p`` are a grid (``spacing`` pixels apart, symmetric about the centre) over the
truth frame, kept where every section's true transform lands inside its raw section
(``input_shape``). The truth scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from emkit.align.transforms import Transforms, map_points, rigid_matrix
from emkit.errors import InputError

DEFAULT_SMOOTHING = 2.0


def neighbour_ncc(stack, *, valid=None, sigma: float = 0.0) -> np.ndarray:
    """NCC of each pair of neighbouring sections (see the module docstring).

    Args:
        stack: ndarray of shape (Z, Y, X).
        valid: bool ndarray of shape (Z, Y, X), pixels that hold data (default: all).
        sigma: Gaussian smoothing in pixels before correlating (0: none).

    Returns:
        ndarray of shape (Z - 1,): entry ``z`` compares sections ``z`` and ``z + 1``;
        NaN where fewer than 2 common pixels or a constant section.

    Example:
        >>> section = np.arange(16.0).reshape(4, 4)
        >>> neighbour_ncc(np.stack([section, 2 * section + 1])).tolist()
        [1.0]
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError(f"neighbour_ncc needs a (z, y, x) stack, got shape {stack.shape}")
    valid = np.ones(stack.shape, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != stack.shape:
        raise InputError(f"valid has shape {valid.shape}, the stack {stack.shape}")
    sections = stack.astype(np.float64)
    if sigma > 0:
        sections = np.stack([ndi.gaussian_filter(s, sigma) for s in sections])
        erode = int(np.ceil(2 * sigma))
        valid = np.stack([ndi.binary_erosion(v, iterations=erode, border_value=0) for v in valid])
    scores = np.full(max(len(stack) - 1, 0), np.nan)
    for z in range(len(scores)):
        both = valid[z] & valid[z + 1]
        if both.sum() < 2:
            continue
        a = sections[z][both] - sections[z][both].mean()
        b = sections[z + 1][both] - sections[z + 1][both].mean()
        norm = np.sqrt((a * a).sum() * (b * b).sum())
        if norm > 0:
            scores[z] = float((a * b).sum() / norm)
    return scores


def ncc_scores(stack, *, valid=None, sigma: float = DEFAULT_SMOOTHING) -> dict:
    """Mean neighbour NCC, raw and smoothed: ``{"ncc", "ncc_smoothed", "ncc_min"}``.

    Args:
        stack: ndarray of shape (Z, Y, X).
        valid: bool ndarray of shape (Z, Y, X), pixels that hold data (default: all).
        sigma: Gaussian smoothing in pixels for ``ncc_smoothed``.

    Returns:
        A dict of floats: the mean NCC over neighbour pairs, raw (``ncc``) and smoothed
        (``ncc_smoothed``), and the smallest raw NCC (``ncc_min``); NaN pairs are left
        out (all NaN: NaN). See :func:`neighbour_ncc`.
    """
    raw = neighbour_ncc(stack, valid=valid)
    smooth = neighbour_ncc(stack, valid=valid, sigma=sigma)
    return {"ncc": _nanmean(raw), "ncc_smoothed": _nanmean(smooth), "ncc_min": _nanmin(raw)}


def _nanmean(values):
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _nanmin(values):
    return float(np.nanmin(values)) if np.isfinite(values).any() else float("nan")


@dataclass(frozen=True)
class ResidualError:
    """Residual displacement of estimated transforms against the truth, in raw pixels.

    Attributes:
        mean, rms, p95, max: statistics over every section and grid point.
        per_section: ndarray of shape (Z,), the mean residual of each section.
        offset_rotation_deg, offset_translation: the fitted global rigid motion ``G``.
        points: grid points per section.
    """

    mean: float
    rms: float
    p95: float
    max: float
    per_section: np.ndarray
    offset_rotation_deg: float
    offset_translation: tuple[float, float]
    points: int


def residual_displacement(estimated: Transforms, truth: Transforms, *, shape,
                          input_shape=None, spacing: int = 16,
                          iterations: int = 20) -> ResidualError:
    """Residual displacement of ``estimated`` against ``truth`` (see the module docstring).

    Args:
        estimated: Z transforms, aligned frame -> raw sections.
        truth: the Z true transforms (e.g. from :func:`~emkit.align.misalign_stack`).
        shape: (Y, X) of the truth frame (the grid of the points).
        input_shape: (Y, X) of the raw sections; default ``shape``.
        spacing: grid step in pixels.
        iterations: Gauss-Newton steps for the global rigid motion (at most).

    Returns:
        A :class:`ResidualError`.

    Raises:
        InputError: different numbers of sections, or no grid point is valid.
    """
    if len(estimated) != len(truth):
        raise InputError(f"{len(estimated)} estimated transforms but {len(truth)} true ones")
    shape = tuple(int(n) for n in shape)
    input_shape = tuple(int(n) for n in (input_shape or shape))
    ys, xs = (_centred_grid(n, spacing) for n in shape)
    points = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    target = map_points(truth, points)  # (Z, N, 2)
    inside = ((target >= 0) & (target <= np.array(input_shape) - 1)).all(axis=(0, 2))
    if not inside.any():
        raise InputError(f"no grid point of {shape} maps inside {input_shape} in every section")
    points, target = points[inside], target[:, inside]
    center = np.array([(n - 1) / 2 for n in shape])
    params = np.zeros(3)  # angle (rad), gy, gx
    linear = estimated.matrices[:, :2, :2]
    for _ in range(iterations):
        moved = _rigid(params, center, points)
        residual = (map_points(estimated, moved) - target).reshape(-1)
        a = params[0]
        d_rot = np.array([[-np.sin(a), -np.cos(a)], [np.cos(a), -np.sin(a)]])
        d_angle = (points - center) @ d_rot.T  # d moved / d angle, (N, 2)
        jac = np.concatenate([
            np.einsum("zij,nj->zni", linear, d_angle)[..., None],
            np.broadcast_to(linear[:, None], (len(linear), len(points), 2, 2)),
        ], axis=-1).reshape(-1, 3)
        step, *_ = np.linalg.lstsq(jac, -residual, rcond=None)
        params = params + step
        if np.abs(step).max() < 1e-9:
            break
    error = np.linalg.norm(map_points(estimated, _rigid(params, center, points)) - target,
                           axis=-1)
    return ResidualError(
        mean=float(error.mean()), rms=float(np.sqrt((error ** 2).mean())),
        p95=float(np.percentile(error, 95)), max=float(error.max()),
        per_section=error.mean(axis=1), offset_rotation_deg=float(np.degrees(params[0])),
        offset_translation=(float(params[1]), float(params[2])), points=len(points),
    )


def _centred_grid(n, spacing):
    """Points ``spacing`` apart inside [0, n - 1], symmetric about the centre."""
    count = int((n - 1) // spacing) + 1
    return (n - 1) / 2 + spacing * (np.arange(count) - (count - 1) / 2)


def _rigid(params, center, points):
    matrix = rigid_matrix(rotation_deg=np.degrees(params[0]), translation=params[1:],
                          center=center)
    return points @ matrix[:2, :2].T + matrix[:2, 2]
