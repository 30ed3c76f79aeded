"""Pixel error of a boundary map (thesis Appendix A.3)."""

from __future__ import annotations

import numpy as np

from emkit.errors import InputError


def pixel_error(
    boundaries: np.ndarray,
    gt_boundaries: np.ndarray,
    *,
    threshold: float = 0.5,
    mask: np.ndarray | None = None,
) -> float:
    """Fraction of pixels whose thresholded boundary prediction is wrong.

    A pixel is predicted boundary when ``boundaries >= threshold``. Label 0 plays no part:
    both inputs are boundary maps (1 = boundary), and every pixel counts unless ``mask``
    excludes it.

    Args:
        boundaries: ndarray of shape (Z, Y, X), boundary probabilities in [0, 1].
        gt_boundaries: ndarray of the same shape, 1 on true boundaries, 0 elsewhere.
        threshold: binarization threshold.
        mask: optional boolean ndarray; only pixels where it is True are counted.

    Returns:
        The error in [0, 1].

    >>> pixel_error(np.array([0.9, 0.2, 0.6, 0.1]), np.array([1, 0, 0, 0]))
    0.25
    """
    boundaries = np.asarray(boundaries)
    gt_boundaries = np.asarray(gt_boundaries)
    if boundaries.shape != gt_boundaries.shape:
        raise InputError(
            f"boundary map shape {boundaries.shape} does not match ground truth {gt_boundaries.shape}"
        )
    wrong = (boundaries >= threshold) != (gt_boundaries > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        counted = int(mask.sum())
        return float(np.count_nonzero(wrong & mask)) / counted if counted else 0.0
    return float(np.count_nonzero(wrong)) / wrong.size if wrong.size else 0.0
