"""The ISBI 2012 leaderboard scores: V_rand and V_info after border thinning.

Arganda-Carreras et al. (2015), "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 9:142, Eq. 3 and 6, as the challenge's
Fiji scorer applies them to a boundary probability map:

1. For each threshold t, pixels with boundary probability below t are interior; the
   interior of each section is split into 4-connected components.
2. The borders between components are thinned to one pixel: the components grow into
   the boundary pixels by a seeded watershed on the boundary map, leaving one-pixel
   watershed lines (label 0).
3. The scores are computed per section (pairs of pixels within a section), restricted to
   the ground truth's foreground (ground-truth 0, the membranes, is not counted), with
   each remaining border pixel of the proposal as its own singleton segment.
4. V_rand and V_info are the maxima over the thresholds, each at its own threshold.

The Fiji scorer thresholds the ISBI submission, where 1 means interior, at 0.0, 0.1, ...,
1.0; on an emkit boundary map (1 = boundary) that is the same grid of thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from emkit.errors import InputError
from emkit.metrics.contingency import contingency_table
from emkit.metrics.rand import RandScores, rand_from_table
from emkit.metrics.voi import InfoScores, info_from_table

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class IsbiScores:
    """Best V_rand and V_info over thresholds, with the thresholds that gave them.

    Attributes:
        v_rand: the best Rand F-score (1 is perfect).
        v_rand_threshold: boundary threshold that gave it.
        v_info: the best information-theoretic score.
        v_info_threshold: boundary threshold that gave it.
        per_threshold: ``{threshold: (RandScores, InfoScores)}`` for every threshold.
    """

    v_rand: float
    v_rand_threshold: float
    v_info: float
    v_info_threshold: float
    per_threshold: dict


def thinned_segmentation(boundaries: np.ndarray, threshold: float) -> np.ndarray:
    """Segment a boundary map section by section with one-pixel borders.

    Args:
        boundaries: ndarray of shape (Z, Y, X), boundary probabilities (1 = boundary).
        threshold: pixels with ``boundaries < threshold`` seed the segments.

    Returns:
        ndarray of shape (Z, Y, X), uint32: segments numbered per section from 1, and 0
        on the one-pixel lines between them (and everywhere, if a section has no seed).

    >>> b = np.array([[[0.1, 0.9, 0.9, 0.2, 0.1]]])
    >>> thinned_segmentation(b, 0.5).tolist()
    [[[1, 1, 0, 2, 2]]]
    """
    boundaries = np.asarray(boundaries, dtype=np.float32)
    if boundaries.ndim != 3:
        raise InputError(f"expected a (Z, Y, X) boundary map, got shape {boundaries.shape}")
    seg = np.zeros(boundaries.shape, dtype=np.uint32)
    for z, section in enumerate(boundaries):
        seeds, n = ndimage.label(section < threshold, structure=_FOUR_CONNECTED)
        if n == 0:
            continue
        if n == 1:
            seg[z] = 1
            continue
        seg[z] = watershed(section, markers=seeds, connectivity=1, watershed_line=True)
    return seg


def isbi_scores(
    boundaries: np.ndarray,
    gt: np.ndarray,
    *,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> IsbiScores:
    """ISBI 2012 V_rand and V_info of a boundary map, best over ``thresholds``.

    Args:
        boundaries: ndarray of shape (Z, Y, X), boundary probabilities in [0, 1].
        gt: ndarray of shape (Z, Y, X), ground-truth segmentation with 0 on membranes
            (e.g. :func:`emkit.targets.isbi_labels_to_seg` of the ISBI labels).
        thresholds: boundary thresholds to try.

    Returns:
        :class:`IsbiScores`.
    """
    if np.shape(boundaries) != np.shape(gt):
        raise InputError(
            f"boundary map shape {np.shape(boundaries)} does not match ground truth {np.shape(gt)}"
        )
    if not thresholds:
        raise InputError("thresholds must not be empty")
    per_threshold: dict[float, tuple[RandScores, InfoScores]] = {}
    for t in thresholds:
        seg = thinned_segmentation(boundaries, t)
        table = contingency_table(seg, gt, per_section=True)
        per_threshold[float(t)] = (rand_from_table(table), info_from_table(table))
    best_rand = max(per_threshold, key=lambda t: per_threshold[t][0].fscore)
    best_info = max(per_threshold, key=lambda t: per_threshold[t][1].v_info)
    return IsbiScores(
        v_rand=per_threshold[best_rand][0].fscore,
        v_rand_threshold=best_rand,
        v_info=per_threshold[best_info][1].v_info,
        v_info_threshold=best_info,
        per_threshold=per_threshold,
    )
