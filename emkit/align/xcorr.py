"""Hand-crafted alignment: cross-correlation of neighbouring sections, coarse to fine.

Each section ``z`` is registered to its predecessor ``z - 1`` (raw to raw; a blank,
constant section is skipped: the next one is registered to the last section with an
image, and the blank one keeps its neighbour's transform), giving a pairwise transform
``P_z`` with ``raw[z-1](p) ~ raw[z](P_z(p))``:

1. Translation, coarse: both sections are smoothed, block-averaged by ``coarse_factor``
   and cross-correlated (:func:`skimage.registration.phase_cross_correlation` with
   ``normalization=None``, after a Hann window) for the integer shift.
2. Translation, fine: the overlapping parts at full resolution, windowed again, give the
   sub-pixel shift (``upsample_factor``, 1/20 pixel by default). Plain cross-correlation
   is used, not phase correlation: on real EM neighbours, phase correlation of windowed
   images locks onto the window (zero shift) and misses known shifts by pixels.
3. ``refine="affine"``: blocks of ``block_size`` pixels on a grid (half-overlapping) are
   matched by cross-correlation between the reference and the translated section;
   an affine map is fitted to the block correspondences by RANSAC
   (:func:`skimage.measure.ransac`, ``residual_threshold`` pixels), which rejects outliers.
   When fewer than half of the matched blocks are inliers, the blocks do not agree on one
   affine map (on ISBI 2012, 50 nm sections at 4 nm per pixel, they rarely do: the
   tissue changes too much from one section to the next) and the pair keeps its
   translation.
4. ``refine="elastic"``: after 3, the blocks are matched again against the affinely
   aligned section; shifts that differ from the median of their 3 x 3 neighbours by
   more than ``residual_threshold`` are rejected (if more than half are, no field is
   made), the rest are smoothed (normalized Gaussian of ``elastic_sigma`` grid steps,
   which also fills the holes) and interpolated by a cubic spline to a dense field.

The pairwise transforms are chained into the stack frame, ``T_0 = I`` and
``T_z = P_z after T_{z-1}``, and then regularized (:func:`remove_drift`).

Drift: pairwise registration cannot tell a slow misalignment from anatomy that runs
obliquely through the sections, nor from registration errors that add up along the
chain; all three make a slow trend over z. On the medulla FIB-SEM stack, which is
aligned, the chain drifts about 0.5 pixel per section in x from oblique neurites alone.
With ``drift_sigma = S`` (10 by default) the trend over z of the translations, of the
linear parts and of the fields (a Gaussian-weighted local linear fit of width S
sections, unbiased at the stack's ends) is removed: corrections that vary more slowly
than about S sections are not made, and the aligned stack does not drift away from the
raw one. With ``drift_sigma=None`` the full chain is kept and only the mean over z is
removed. Either way the aligned stack is centred on the raw one (the stack frame is
defined only up to a rigid motion of the whole stack).
"""

from __future__ import annotations

import sys
from functools import lru_cache, partial

import numpy as np
from scipy import ndimage as ndi

from emkit.align import transforms as xforms
from emkit.errors import InputError

REFINEMENTS = ("none", "affine", "elastic")
# Smallest fraction of matched blocks that must agree (RANSAC inliers; shifts near their
# neighbours' median) for a refinement to be used.
MIN_AGREEMENT = 0.5


def align_xcorr(raw, *, refine="none", drift_sigma=10.0, upsample_factor=20, coarse_factor=4,
                smooth_sigma=1.0, block_size=None, residual_threshold=2.0, elastic_sigma=2.0,
                seed=0, progress=False) -> xforms.Transforms:
    """Aligns a stack by cross-correlating neighbouring sections (see the module docstring).

    Args:
        raw: ndarray of shape (Z, Y, X), the stack to align.
        refine: ``"none"`` (translations), ``"affine"`` or ``"elastic"``.
        drift_sigma: width in sections of the trend removed over z (see the module
            docstring); None or 0 keeps the full chain.
        upsample_factor: sub-pixel precision of the shifts is 1 / upsample_factor.
        coarse_factor: block-averaging factor of the coarse pass (1: none).
        smooth_sigma: Gaussian sigma in pixels applied before correlating (noise).
        block_size: block edge in pixels for ``refine`` (default: a quarter of the
            smaller side, at least 32); blocks overlap by half.
        residual_threshold: pixels; RANSAC inlier distance, and the elastic outlier test.
        elastic_sigma: smoothing of the elastic block shifts, in grid steps.
        seed: seed of RANSAC's sampling.
        progress: show a progress bar over sections on stderr.

    Returns:
        :class:`~emkit.align.transforms.Transforms` mapping the aligned stack (same
        shape as ``raw``) to ``raw``; with fields for ``refine="elastic"``.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise InputError(f"align_xcorr needs a (z, y, x) stack, got shape {raw.shape}")
    if refine not in REFINEMENTS:
        raise InputError(f"refine must be one of {REFINEMENTS}, got {refine!r}")
    shape = raw.shape[1:]
    if min(shape) < 32:
        raise InputError(f"sections of {shape} are too small to align (32 x 32 at least)")
    options = {
        "refine": refine,
        "upsample_factor": int(upsample_factor),
        "coarse_factor": max(int(coarse_factor), 1),
        "smooth_sigma": float(smooth_sigma),
        "block_size": int(block_size or max(32, min(shape) // 4)),
        "residual_threshold": float(residual_threshold),
        "elastic_sigma": float(elastic_sigma),
        "seed": seed,
    }
    from tqdm import tqdm

    chain = [xforms.identity_transforms(1)]
    reference = 0  # the last section with an image; blank sections are skipped over
    for z in tqdm(range(1, len(raw)), desc="align", unit="section", disable=not progress,
                  file=sys.stderr):
        pair = register_pair(raw[reference], raw[z], **options)
        chain.append(xforms.compose(pair, chain[reference], shape=shape))
        if np.ptp(raw[z]) > 0:
            reference = z
    return remove_drift(xforms.concatenate(chain), shape=shape, sigma=drift_sigma)


def register_pair(reference, moving, *, refine="none", upsample_factor=20, coarse_factor=4,
                  smooth_sigma=1.0, block_size=64, residual_threshold=2.0, elastic_sigma=2.0,
                  seed=0) -> xforms.Transforms:
    """The transform (one section) with ``reference(p) ~ moving(P(p))``.

    A blank section (constant) gives the identity.

    Args:
        reference: ndarray of shape (Y, X), the fixed section.
        moving: ndarray of shape (Y, X), the section to register to it.
        refine: ``"none"`` (translation), ``"affine"`` or ``"elastic"``.
        upsample_factor: sub-pixel precision of the shifts is 1 / upsample_factor.
        coarse_factor: block-averaging factor of the coarse pass (1: none).
        smooth_sigma: Gaussian sigma in pixels applied before correlating.
        block_size: block edge in pixels for ``refine``.
        residual_threshold: pixels; RANSAC inlier distance, and the elastic outlier test.
        elastic_sigma: smoothing of the elastic block shifts, in grid steps.
        seed: seed of RANSAC's sampling.

    Returns:
        :class:`~emkit.align.transforms.Transforms` of one section, on the grid of
        ``reference`` (with a field for ``refine="elastic"``).
    """
    reference = np.asarray(reference, dtype=np.float32)
    moving = np.asarray(moving, dtype=np.float32)
    if np.ptp(reference) == 0 or np.ptp(moving) == 0:
        return xforms.identity_transforms(1)
    shift = estimate_shift(reference, moving, upsample_factor=upsample_factor,
                           coarse_factor=coarse_factor, smooth_sigma=smooth_sigma)
    pair = xforms.from_translations(-shift[None])
    shifts = partial(_block_shifts, reference, moving, size=block_size,
                     upsample_factor=upsample_factor, smooth_sigma=smooth_sigma)
    if refine != "none":
        pair = _refine_affine(pair, *shifts(pair), residual_threshold, seed)
    if refine == "elastic":
        pair = _refine_elastic(pair, *shifts(pair), reference.shape, block_size,
                               residual_threshold, elastic_sigma)
    return pair


def estimate_shift(reference, moving, *, upsample_factor=20, coarse_factor=4, smooth_sigma=1.0):
    """The shift ``s`` (dy, dx) with ``reference(p) ~ moving(p - s)``, coarse to fine.

    Args:
        reference: ndarray of shape (Y, X).
        moving: ndarray of shape (Y, X).
        upsample_factor: sub-pixel precision of the fine shift is 1 / upsample_factor.
        coarse_factor: block-averaging factor of the coarse pass (1: none; skipped when
            the reduced section would be smaller than 32 pixels).
        smooth_sigma: Gaussian sigma in pixels applied before correlating.

    Returns:
        ndarray of shape (2,), float64, in pixels.
    """
    from skimage.transform import downscale_local_mean

    reference = ndi.gaussian_filter(np.asarray(reference, np.float32), smooth_sigma)
    moving = ndi.gaussian_filter(np.asarray(moving, np.float32), smooth_sigma)
    coarse = np.zeros(2)
    f = coarse_factor
    if f > 1 and min(reference.shape) // f >= 32:
        small = [downscale_local_mean(image, (f, f)) for image in (reference, moving)]
        coarse = np.rint(_xcorr(*small, 1) * f)
    # Fine: the parts that overlap after the coarse shift, at full resolution.
    dy, dx = (int(v) for v in coarse)
    (y0, y1), (x0, x1) = ((max(0, d), min(n, n + d)) for d, n in zip((dy, dx), reference.shape))
    if min(y1 - y0, x1 - x0) < 32:
        return coarse
    fine = _xcorr(reference[y0:y1, x0:x1], moving[y0 - dy:y1 - dy, x0 - dx:x1 - dx],
                  upsample_factor)
    return coarse + fine


def _xcorr(reference, moving, upsample_factor):
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(_windowed(reference), _windowed(moving),
                                          upsample_factor=upsample_factor, normalization=None)
    return np.asarray(shift, dtype=np.float64)


def _windowed(image):
    return (image - image.mean()) * _hann(image.shape)


@lru_cache(maxsize=16)
def _hann(shape):
    from skimage.filters import window

    return window("hann", shape).astype(np.float32)


def _block_shifts(reference, moving, pair, size, upsample_factor, smooth_sigma):
    """Shifts of blocks on a grid (step size / 2): centres (gy, gx, 2), shifts (NaN: none)."""
    warped = xforms.apply_transforms(moving[None], pair, order=1)[0]
    valid = xforms.valid_mask(pair, moving.shape)[0]
    reference = ndi.gaussian_filter(reference, smooth_sigma)
    warped = ndi.gaussian_filter(warped, smooth_sigma)
    step = size // 2
    ys = np.arange(0, reference.shape[0] - size + 1, step)
    xs = np.arange(0, reference.shape[1] - size + 1, step)
    centres = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1) + (size - 1) / 2
    shifts = np.full((len(ys), len(xs), 2), np.nan)
    floor = 1e-3 * max(float(reference.std()), 1e-6)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            box = np.s_[y:y + size, x:x + size]
            a, b = reference[box], warped[box]
            if not valid[box].all() or a.std() < floor or b.std() < floor:
                continue
            s = _xcorr(a, b, upsample_factor)
            if np.abs(s).max() < size / 4:
                shifts[i, j] = s
    return centres, shifts


def _refine_affine(pair, centres, shifts, threshold, seed):
    from skimage.measure import ransac
    from skimage.transform import AffineTransform

    ok = np.isfinite(shifts[..., 0])
    if ok.sum() < 6:
        return pair
    src = centres[ok]
    dst = src - shifts[ok]  # reference(c) ~ warped(c - s)
    model, inliers = ransac((src, dst), AffineTransform, min_samples=3,
                            residual_threshold=threshold, max_trials=200, rng=seed)
    if model is None or inliers is None or inliers.sum() < max(6, MIN_AGREEMENT * len(src)):
        return pair  # the blocks do not agree on one affine map: keep the translation
    return xforms.compose(pair, xforms.Transforms(np.asarray(model.params)[None]))


def _refine_elastic(pair, centres, shifts, shape, size, threshold, sigma):
    ok = np.isfinite(shifts[..., 0])
    if ok.sum() < 4:
        return pair
    matched = ok.sum()
    for k in range(2):  # reject shifts far from the median of their neighbours
        local = ndi.generic_filter(shifts[..., k], np.nanmedian, size=3, mode="nearest")
        ok &= np.abs(shifts[..., k] - local) <= threshold
    if ok.sum() < max(4, MIN_AGREEMENT * matched):
        return pair  # the blocks disagree with their neighbours: no field
    weight = ndi.gaussian_filter(ok.astype(np.float64), sigma, mode="nearest")
    smooth = np.stack([
        ndi.gaussian_filter(np.where(ok, shifts[..., k], 0.0), sigma, mode="nearest")
        for k in range(2)], -1) / np.maximum(weight, 1e-6)[..., None]
    smooth[weight < 1e-3] = 0.0
    # Dense field on the reference grid: correction C(p) = p - s(p).
    origin, step = centres[0, 0], size // 2
    coords = [(np.arange(n) - o) / step for n, o in zip(shape, origin)]
    grid = np.meshgrid(*coords, indexing="ij")
    field = -np.stack([ndi.map_coordinates(smooth[..., k], grid, order=3, mode="nearest")
                       for k in range(2)], -1)
    return xforms.compose(pair, xforms.Transforms(np.eye(3)[None], field[None]))


def remove_drift(transforms: xforms.Transforms, *, shape, sigma=None) -> xforms.Transforms:
    """Removes the mean affine motion and, with ``sigma``, the slow trend over z.

    Two parts of each ``T_z`` are detrended over z: its 2 x 2 linear part ``L_z``
    (rotation, scale, shear), and the displacement of the section centre, ``T_z(c) - c``.
    Each is fitted over z by a Gaussian-weighted local line of width ``sigma`` sections,
    and each section is moved by the inverse of its trend (the linear trend about the
    centre, then the translation: ``T_z(p - g_z)``). Without ``sigma`` the trend is the
    mean over z, so the stack frame is the sections' mean frame.

    Args:
        transforms: chained transforms, aligned stack -> raw.
        shape: (Y, X) of the sections.
        sigma: the trend's width in sections; None or 0: only the mean is removed.
    """
    center = np.array([(n - 1) / 2 for n in shape])
    linear = transforms.matrices[:, :2, :2]
    trend = local_trend(linear, sigma) if sigma else np.broadcast_to(linear.mean(0), linear.shape)
    undo = np.repeat(np.eye(3)[None], len(linear), axis=0)
    undo[:, :2, :2] = np.linalg.inv(trend)
    undo[:, :2, 2] = center - undo[:, :2, :2] @ center
    transforms = xforms.compose(transforms, xforms.Transforms(undo), shape=shape)
    shifts = xforms.map_points(transforms, center[None])[:, 0] - center
    trend = local_trend(shifts, sigma) if sigma else np.zeros_like(shifts)
    trend += (shifts - trend).mean(axis=0)
    transforms = xforms.compose(transforms, xforms.from_translations(-trend), shape=shape)
    if transforms.fields is None:
        return transforms
    fields = transforms.fields
    slow = local_trend(fields, sigma) if sigma else fields.mean(axis=0, keepdims=True)
    return xforms.Transforms(transforms.matrices, fields - slow)


def local_trend(values, sigma) -> np.ndarray:
    """Gaussian-weighted local linear fit of ``values`` (Z, ...) over z, at every z.

    Args:
        values: ndarray of shape (Z, ...); each trailing element is fitted separately.
        sigma: the Gaussian's width in sections.

    Returns:
        ndarray of the shape of ``values``, float64: the fitted line's value at each z.
    """
    values = np.asarray(values, dtype=np.float64)
    z = np.arange(len(values), dtype=np.float64)
    flat = values.reshape(len(values), -1)
    trend = np.empty_like(flat)
    for i in range(len(values)):
        w = np.exp(-0.5 * ((z - i) / float(sigma)) ** 2)
        design = np.stack([np.ones_like(z), z - i], -1) * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(design, flat * np.sqrt(w)[:, None], rcond=None)
        trend[i] = coef[0]
    return trend.reshape(values.shape)
